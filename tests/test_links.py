"""Custom domains, links from the host app into tenants, and the name of the
current tenant."""

from __future__ import annotations

import contextlib
import os
import re
import threading
import time
import typing as t
from urllib.parse import urlsplit

import pytest
from flask import Flask, request, url_for

from flask_dispatch import Dispatch, DispatchConfigError, current_tenant

from .conftest import RecordingFactory, call, in_forked_child, make_host_app, run_workers

if t.TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication


def flask_tenant(name: str) -> WSGIApplication:
    tenant = Flask(f"tenant_{name}")

    @tenant.route("/")
    def home() -> str:
        return f"{current_tenant} {url_for('home', _external=True)}"

    @tenant.route("/notes/<int:note>")
    def note(note: int) -> str:
        return str(note)

    return tenant


class Domains:
    """A resolver over a table, counting its calls."""

    def __init__(self, table: dict[str, str]) -> None:
        self.table = table
        self.calls: list[str] = []
        self._lock = threading.Lock()

    def __call__(self, host: str) -> str | None:
        with self._lock:
            self.calls.append(host)
        return self.table.get(host)


@pytest.fixture
def domains() -> Domains:
    table = {"acme.com": "acme", "www.acme.com": "acme", "bad.com": "Not A Name"}
    # "login" is a path of the host app, and a fine subdomain tenant name.
    return Domains({**table, "login.org": "login"})


@pytest.fixture
def built() -> list[str]:
    return []


@pytest.fixture
def site(domains: Domains, built: list[str]) -> Flask:
    app = make_host_app()
    dispatch = Dispatch(app)

    @dispatch.subdomain
    def factory(name: str) -> WSGIApplication:
        built.append(name)
        return flask_tenant(name)

    dispatch.domain(domains)
    return app


@pytest.mark.parametrize(
    ("host", "body"),
    [
        pytest.param("acme.com", "acme http://acme.com/", id="domain"),
        pytest.param("WWW.Acme.com:8080", "acme http://www.acme.com:8080/", id="www-spelling"),
        pytest.param("acme.example.com", "acme http://acme.example.com/", id="subdomain"),
    ],
)
def test_a_domain_and_the_subdomain_share_one_instance(
    site: Flask, built: list[str], host: str, body: str
) -> None:
    assert call(site, host="acme.example.com").status == 200
    assert call(site, host=host).body == body
    assert built == ["acme"]


def test_a_domain_of_a_tenant_named_like_a_host_app_path(site: Flask, built: list[str]) -> None:
    assert call(site, host="login.org").body == "login http://login.org/"
    assert call(site, host="login.example.com").status == 200
    assert built == ["login"]


@pytest.mark.parametrize(
    ("host", "status", "body", "asked"),
    [
        pytest.param("unknown.org", 200, "host index", True, id="unknown-domain-is-the-host-app"),
        pytest.param("bad.com", 200, "host index", True, id="resolver-gives-no-tenant-name"),
        pytest.param("acme..com", 400, "site 400 page", False, id="malformed"),
        # Never a custom domain: the resolver is not asked.
        pytest.param("10.0.0.1", 200, "host index", False, id="ipv4-address"),
        pytest.param("10.0.0.2:8080", 200, "host index", False, id="ipv4-address-and-port"),
        pytest.param("[2001:db8::1]", 200, "host index", False, id="ipv6-address"),
        pytest.param("0", 200, "host index", False, id="digits-only"),
    ],
)
def test_hosts_the_resolver_does_not_claim(
    site: Flask, domains: Domains, host: str, status: int, body: str, asked: bool
) -> None:
    response = call(site, host=host)
    assert (response.status, response.body) == (status, body)
    assert domains.calls == ([host] if asked else [])


def test_answers_are_remembered_and_evict_forgets_them(
    site: Flask, domains: Domains, built: list[str]
) -> None:
    for _ in range(5):
        call(site, host="acme.com")
        call(site, host="unknown.org")
    assert domains.calls == ["acme.com", "unknown.org"]
    domains.table["acme.com"] = "globex"  # the customer moved the domain
    with site.app_context():
        site.extensions["dispatch"].extension.evict("acme")
    assert call(site, host="acme.com").body.startswith("globex ")
    assert domains.calls == ["acme.com", "unknown.org", "acme.com"]
    assert built == ["acme", "globex"]


@pytest.mark.parametrize(
    ("miss_ttl", "first_fails", "calls"),
    [
        pytest.param(5.0, False, 1, id="answer"),
        pytest.param(0.0, False, 1, id="answer-not-remembered"),
        pytest.param(5.0, True, 8, id="failure-then-each-asks"),
    ],
)
def test_concurrent_requests_for_one_domain_share_one_resolver_call(
    miss_ttl: float, first_fails: bool, calls: int
) -> None:
    app = make_host_app(DISPATCH_MISS_TTL=miss_ttl)
    dispatch = Dispatch(app)
    dispatch.subdomain(RecordingFactory())
    asked: list[str] = []
    second_call = threading.Event()

    @dispatch.domain
    def resolve(host: str) -> str | None:
        asked.append(host)
        if len(asked) > 1:
            second_call.set()
            return "acme"
        # The first call waits for a second one, which only a resolver
        # called once per request would see (the requests start together).
        second_call.wait(1.0)
        if first_fails:
            raise LookupError("directory down")
        return "acme"

    statuses: list[int] = []
    errors = run_workers(8, lambda i: statuses.append(call(app, host="acme.com").status))
    assert errors == []
    assert len(asked) == calls
    assert sorted(statuses) == ([200] * 7 + [500] if first_fails else [200] * 8)


def test_malformed_hosts_never_reach_the_resolver(site: Flask, domains: Domains) -> None:
    for i in range(200):
        assert call(site, host=f"x{i}..com").status == 400
    assert domains.calls == []


def test_answers_are_bounded() -> None:
    app = make_host_app(DISPATCH_MAX_MISSES=10)
    dispatch = Dispatch(app)
    dispatch.subdomain(RecordingFactory())
    resolver = Domains({})
    dispatch.domain(resolver)
    for i in range(50):
        call(app, host=f"d{i}.org")
    call(app, host="d0.org")  # long forgotten: asked again
    call(app, host="d49.org")  # still remembered
    assert resolver.calls.count("d0.org") == 2 and resolver.calls.count("d49.org") == 1


def test_no_answer_is_remembered_when_no_miss_is() -> None:
    app = make_host_app(DISPATCH_MAX_MISSES=0)
    dispatch = Dispatch(app)
    dispatch.subdomain(RecordingFactory(known={"acme"}))
    resolver = Domains({"acme.com": "acme"})
    dispatch.domain(resolver)
    for _ in range(3):
        assert call(app, host="acme.com").status == 200
    assert resolver.calls == ["acme.com"] * 3


def test_resolver_runs_in_the_host_app_context() -> None:
    app = make_host_app()
    app.config["CUSTOMER_DOMAINS"] = {"acme.com": "acme"}
    dispatch = Dispatch(app)
    dispatch.subdomain(RecordingFactory())

    @dispatch.domain
    def resolve(host: str) -> str | None:
        from flask import current_app

        return t.cast("str | None", current_app.config["CUSTOMER_DOMAINS"].get(host))

    assert call(app, host="acme.com").body.startswith("acme|")


# Links from the host app, and the current tenant.
@pytest.mark.parametrize(
    ("register", "base_url", "kwargs", "expected"),
    [
        pytest.param(
            "both", "http://example.com", {}, "http://acme.example.com/notes", id="subdomain"
        ),
        pytest.param(
            "both",
            "https://example.com:8443",
            {},
            "https://acme.example.com:8443/notes",
            id="scheme-and-port",
        ),
        pytest.param(
            "both", "http://example.com", {"by": "path"}, "http://example.com/acme/notes", id="by"
        ),
        pytest.param("path", "http://example.com", {}, "http://example.com/acme/notes", id="path"),
        pytest.param(
            "path", "http://example.com/site", {}, "http://example.com/site/acme/notes", id="root"
        ),
        pytest.param("path", "http://example.com", {"_external": False}, "/acme/notes", id="rel"),
        pytest.param(
            "both",
            "http://example.com/site",
            {},
            "http://acme.example.com/site/notes",
            id="subdomain-under-a-script-root",
        ),
        pytest.param(
            "both",
            "http://x.example.com",
            {},
            "http://acme.example.com/notes",
            id="from-a-tenant-subdomain",
        ),
        pytest.param(
            "both",
            "http://example.com",
            {"name": "login"},
            "http://login.example.com/notes",
            id="host-path-segment-is-a-subdomain-name",
        ),
        # A stranger's Host header never reaches a link (a reset email's, say).
        pytest.param(
            "both",
            "http://evil.test",
            {},
            "http://acme.example.com/notes",
            id="subdomain-from-another-host",
        ),
        pytest.param(
            "both",
            "http://evil.test:8443",
            {"by": "path"},
            "http://example.com:8443/acme/notes",
            id="path-from-another-host",
        ),
        pytest.param(
            "both",
            "http://EXAMPLE.com.",
            {"by": "path"},
            "http://example.com/acme/notes",
            id="path-from-another-spelling",
        ),
        # Only a configured domain: the Host header may be anyone's.
        pytest.param(
            "both",
            "http://WWW.Example.com.:8443",
            {"by": "path"},
            "http://example.com:8443/acme/notes",
            id="path-from-a-host-app-subdomain",
        ),
        # Under x.example.com, /acme/notes is subdomain tenant x's page.
        pytest.param(
            "both",
            "http://x.example.com",
            {"by": "path"},
            "http://example.com/acme/notes",
            id="path-from-a-tenant-subdomain",
        ),
    ],
)
def test_tenant_url(register: str, base_url: str, kwargs: dict[str, t.Any], expected: str) -> None:
    app = make_host_app()
    dispatch = Dispatch(app)
    if register == "both":
        dispatch.subdomain(flask_tenant)
    dispatch.path(flask_tenant)
    name = kwargs.pop("name", "acme")
    with app.test_request_context("/", base_url=base_url):
        assert dispatch.tenant_url(name, "/notes", **kwargs) == expected
    # And the link leads there: the tenant answers its root.
    link = urlsplit(expected)
    if link.netloc and not link.path.startswith("/site/"):
        root = link.path.removesuffix("notes")
        assert call(app, host=link.hostname, path=root).body.startswith(f"{name} ")


def test_a_site_served_on_www_makes_it_its_dispatch_domain() -> None:
    app = make_host_app(DISPATCH_DOMAIN="www.example.com")
    dispatch = Dispatch(app)
    dispatch.path(flask_tenant)
    with app.test_request_context("/", base_url="http://www.example.com"):
        link = dispatch.tenant_url("acme", "/")
    assert link == "http://www.example.com/acme/"
    assert call(app, host="www.example.com", path="/acme/").body.startswith("acme ")


def test_a_path_link_on_a_site_without_dispatch_domains_keeps_the_request_host() -> None:
    app = make_host_app(DISPATCH_DOMAIN=None)
    dispatch = Dispatch(app)
    dispatch.path(flask_tenant)
    with app.test_request_context("/", base_url="http://notes.test:5000"):
        assert dispatch.tenant_url("acme", "/notes") == "http://notes.test:5000/acme/notes"


def switcher(
    dispatch: Dispatch, host_app: Flask | None = None
) -> t.Callable[[str], WSGIApplication]:
    """A factory of tenants whose page links to tenant globex, as a
    workspace switcher would: in the tenant's own context, or in
    ``host_app``'s when given."""

    def factory(name: str) -> WSGIApplication:
        tenant = Flask(f"tenant_{name}")

        @tenant.route("/switch")
        def switch() -> str:
            with host_app.app_context() if host_app else contextlib.nullcontext():
                subdomain = dispatch.tenant_url("globex", "/notes", by="subdomain")
                path = dispatch.tenant_url("globex", "/notes", by="path")
                return f"{subdomain} {path} {dispatch.url_for('globex', 'note', note=1)}"

        @tenant.route("/notes/<int:note>")
        def note(note: int) -> str:
            return str(note)

        return tenant

    return factory


@pytest.mark.parametrize(
    "host_context",
    [pytest.param(False, id="tenant-context"), pytest.param(True, id="host-context")],
)
@pytest.mark.parametrize(
    ("script_name", "root"),
    [
        pytest.param("/site", "/site", id="script-root"),
        # WSGI strings carry the URL's bytes: café's é is two characters.
        pytest.param("/caf\xc3\xa9", "/café", id="non-ascii-script-root"),
    ],
)
@pytest.mark.parametrize(
    ("host", "path"),
    [
        pytest.param("example.com", "/acme/switch", id="path-tenant"),
        pytest.param("acme.example.com", "/switch", id="subdomain-tenant"),
    ],
)
def test_links_from_a_tenants_request(
    host: str, path: str, script_name: str, root: str, host_context: bool
) -> None:
    """A tenant's page links to another tenant as the host app's pages do,
    under the site's script root, not the tenant's own."""
    app = make_host_app()
    dispatch = Dispatch(app)
    dispatch.subdomain(switcher(dispatch, app if host_context else None))
    dispatch.path(switcher(dispatch, app if host_context else None))
    response = call(app, host=host, path=path, script_name=script_name)
    assert (response.status, response.body.encode("latin-1").decode().split()) == (
        200,
        [
            f"http://globex.example.com{root}/notes",
            f"http://example.com{root}/globex/notes",
            f"http://globex.example.com{root}/notes/1",
        ],
    )


def test_links_from_a_nested_host_apps_subdomain_tenant_are_under_its_root() -> None:
    """The outer dispatch's root of a path request is not the inner one's:
    a subdomain tenant of a host app that is itself a path tenant links
    under that host app's root."""
    inner_dispatch = Dispatch()

    def workspace(name: str) -> WSGIApplication:
        inner = Flask(f"workspace_{name}")
        inner.config["DISPATCH_DOMAIN"] = "example.com"
        inner_dispatch.init_app(inner)

        @inner_dispatch.subdomain
        def team(team: str) -> WSGIApplication:
            tenant = Flask(f"team_{team}")
            tenant.route("/")(lambda: inner_dispatch.tenant_url("other", "/y"))
            return tenant

        return inner

    app = make_host_app()
    Dispatch(app).path(workspace)
    body = call(app, host="bob.example.com", path="/acme/", script_name="/site").body
    assert body == "http://other.example.com/site/acme/y"


@pytest.mark.parametrize(
    "where",
    [
        pytest.param("mounted-app", id="mounted-app"),
        pytest.param("tenant-outside-a-request", id="tenant-outside-a-request"),
    ],
)
def test_links_where_no_host_app_handed_the_request_on_say_so(where: str) -> None:
    app = make_host_app()
    dispatch = Dispatch(app)
    dispatch.path(flask_tenant)
    admin = Flask("admin")
    errors: list[str] = []

    @admin.route("/")
    def home() -> str:
        with pytest.raises(RuntimeError) as error:
            dispatch.tenant_url("globex")
        errors.append(str(error.value))
        return "ok"

    dispatch.mount("/admin", admin)
    if where == "mounted-app":
        assert call(app, path="/admin/").body == "ok"
    else:
        with admin.app_context(), pytest.raises(RuntimeError) as error:
            dispatch.tenant_url("globex")
        errors.append(str(error.value))
    assert len(errors) == 1 and "'with host_app.app_context():'" in errors[0]


@pytest.mark.parametrize(
    ("host", "path"),
    [
        pytest.param("example.com", "/acme/switch", id="by-path"),
        pytest.param("acme.example.com", "/switch", id="by-subdomain"),
        # A host the resolver does not claim is the host app's side.
        pytest.param("unclaimed.org", "/acme/switch", id="by-path-on-another-host"),
    ],
)
def test_links_from_a_tenant_of_one_function_for_both_kinds(host: str, path: str) -> None:
    app = make_host_app()
    dispatch = Dispatch(app)
    both = switcher(dispatch)
    dispatch.subdomain(both)
    dispatch.path(both)
    dispatch.domain(lambda host: None)
    body = call(app, host=host, path=path, script_name="/site").body
    assert body.split()[:2] == [
        "http://globex.example.com/site/notes",
        "http://example.com/site/globex/notes",
    ]


def test_links_from_a_path_tenant_on_a_host_the_resolver_does_not_claim() -> None:
    app = make_host_app()
    dispatch = Dispatch(app)
    dispatch.subdomain(flask_tenant)
    dispatch.path(switcher(dispatch))
    dispatch.domain(lambda host: None)
    body = call(app, host="unclaimed.org", path="/acme/switch", script_name="/site").body
    assert body.split()[1] == "http://example.com/site/globex/notes"


def test_a_tenant_app_built_by_two_host_apps_links_for_each() -> None:
    """One tenant app object built by the factories of two host apps links,
    in each request, for the host app that handed the request on."""
    shared = Flask("shared")

    @shared.route("/")
    def home() -> str:
        return dispatch.tenant_url("globex")

    dispatch = Dispatch()
    # One app for two tenants has one session: not scoped to either.
    apps = {
        domain: make_host_app(DISPATCH_DOMAIN=domain, DISPATCH_SCOPE_SESSIONS=False)
        for domain in ("example.com", "test")
    }
    for app in apps.values():
        dispatch.init_app(app)
    dispatch.path(lambda name: shared)
    for _ in range(2):
        for domain, app in apps.items():
            assert call(app, path="/acme/", host=domain).body == f"http://{domain}/globex/"


def test_links_from_a_tenants_request_are_its_host_apps_when_dispatch_has_several() -> None:
    # One Dispatch for apps made by an app factory, as in a test suite.
    dispatch = Dispatch()
    apps = {domain: make_host_app(DISPATCH_DOMAIN=domain) for domain in ("example.com", "test")}
    for app in apps.values():
        dispatch.init_app(app)

    @dispatch.path
    def tenant(name: str) -> WSGIApplication:
        tenant = Flask(name)

        @tenant.route("/")
        def home() -> str:
            return dispatch.tenant_url("globex")

        return tenant

    for domain, app in apps.items():
        assert call(app, path="/acme/", host=domain).body == f"http://{domain}/globex/"


def test_links_from_a_nested_host_apps_pages_are_its_own() -> None:
    """A path tenant that is a host app itself links to its own tenants
    under its own root."""
    inner_dispatch = Dispatch()

    def workspace(name: str) -> WSGIApplication:
        inner = Flask(f"workspace_{name}")
        inner.config["DISPATCH_DOMAIN"] = "example.com"
        inner_dispatch.init_app(inner)
        inner_dispatch.path(flask_tenant)

        @inner.route("/dashboard")
        def dashboard() -> str:
            return inner_dispatch.tenant_url("team1", by="path")

        return inner

    app = make_host_app()
    Dispatch(app).path(workspace)
    body = call(app, path="/acme/dashboard", script_name="/site").body
    assert body == "http://example.com/site/acme/team1/"


def test_tenant_url_outside_a_request_uses_server_name() -> None:
    app = make_host_app(SERVER_NAME="example.com:5000", PREFERRED_URL_SCHEME="https")
    dispatch = Dispatch(app)
    dispatch.subdomain(flask_tenant)
    with app.app_context():
        assert dispatch.tenant_url("acme") == "https://acme.example.com:5000/"
        app.config["APPLICATION_ROOT"] = "/site/"
        assert dispatch.tenant_url("acme") == "https://acme.example.com:5000/site/"


def test_a_subdomain_link_under_a_script_root_is_the_tenants_own_url() -> None:
    # The whole site is served under the script root, subdomain tenants too.
    app = make_host_app()
    dispatch = Dispatch(app)
    dispatch.subdomain(flask_tenant)
    with app.test_request_context("/", base_url="http://example.com/site"):
        link = dispatch.tenant_url("acme")
    assert call(app, host="acme.example.com", script_name="/site").body == f"acme {link}"


@pytest.mark.parametrize(
    ("name", "kwargs", "error"),
    [
        pytest.param(
            "Not A Name",
            {},
            "'Not A Name' cannot be a subdomain tenant: it does not match the tenant name pattern",
            id="bad-name",
        ),
        pytest.param(
            "login",
            {"by": "path"},
            "'login' cannot be a path tenant: it is the first segment of one of the host"
            " app's URL rules",
            id="host-segment",
        ),
        pytest.param(
            "www",
            {"by": "path"},
            "'www' cannot be a path tenant: it is reserved",
            id="reserved",
        ),
        pytest.param("acme", {"_external": False}, "always external", id="relative-subdomain"),
    ],
)
def test_tenant_url_errors(name: str, kwargs: dict[str, t.Any], error: str) -> None:
    app = make_host_app()
    dispatch = Dispatch(app)
    dispatch.subdomain(flask_tenant)
    dispatch.path(flask_tenant)
    with app.test_request_context("/"), pytest.raises(ValueError, match=re.escape(error)):
        dispatch.tenant_url(name, **kwargs)


@pytest.mark.parametrize(
    ("name", "by", "error"),
    [
        pytest.param(
            "WWW",
            "path",
            "'WWW' cannot be a path tenant: it is reserved (DISPATCH_RESERVED).",
            id="reserved-in-capitals",
        ),
        pytest.param(
            "a..b",
            "subdomain",
            "'a..b' cannot be a subdomain tenant: Malformed Host header.",
            id="reason-ending-in-a-full-stop",
        ),
    ],
)
def test_tenant_url_names_the_reason_under_a_wider_pattern(name: str, by: str, error: str) -> None:
    app = make_host_app(DISPATCH_NAME_PATTERN=r"[A-Za-z0-9][A-Za-z0-9.]*")
    dispatch = Dispatch(app)
    dispatch.subdomain(flask_tenant)
    dispatch.path(flask_tenant)
    with app.test_request_context("/"), pytest.raises(ValueError, match=f"^{re.escape(error)}$"):
        dispatch.tenant_url(name, by=by)  # type: ignore[arg-type]


def test_url_for_builds_through_the_tenants_url_map() -> None:
    app = make_host_app()
    dispatch = Dispatch(app)
    dispatch.subdomain(flask_tenant)
    dispatch.path(flask_tenant)
    with app.test_request_context("/", base_url="https://example.com"):
        assert dispatch.url_for("acme", "note", note=17) == "https://acme.example.com/notes/17"
        assert dispatch.url_for("acme", "note", by="path", note=3, q="x") == (
            "https://example.com/acme/notes/3?q=x"
        )


def localised_tenant(name: str) -> WSGIApplication:
    """A tenant whose URLs carry a language, filled in by url_defaults."""
    tenant = Flask(f"tenant_{name}")

    @tenant.url_defaults
    def add_language(endpoint: str, values: dict[str, t.Any]) -> None:
        values.setdefault("lang", "en")

    @tenant.route("/<lang>/page", methods=["GET", "POST"])
    def page(lang: str) -> str:
        return lang

    @tenant.post("/<lang>/form")
    def form(lang: str) -> str:
        return lang

    return tenant


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        pytest.param({}, "http://acme.example.com/en/page", id="url-defaults"),
        pytest.param({"lang": "fr"}, "http://acme.example.com/fr/page", id="value-given"),
        pytest.param({"_anchor": "top x"}, "http://acme.example.com/en/page#top%20x", id="anchor"),
        pytest.param(
            {"_scheme": "https", "_external": True}, "https://acme.example.com/en/page", id="scheme"
        ),
        pytest.param({"by": "path", "_external": False}, "/acme/en/page", id="relative-by-path"),
        pytest.param(
            {"endpoint": "form", "_method": "POST"}, "http://acme.example.com/en/form", id="method"
        ),
    ],
)
def test_url_for_is_like_flask_url_for_inside_the_tenant(
    kwargs: dict[str, t.Any], expected: str
) -> None:
    app = make_host_app()
    dispatch = Dispatch(app)
    dispatch.subdomain(localised_tenant)
    dispatch.path(localised_tenant)
    endpoint = kwargs.pop("endpoint", "page")
    with app.test_request_context("/", base_url="http://example.com"):
        assert dispatch.url_for("acme", endpoint, **kwargs) == expected


def test_url_for_of_no_tenant_says_so() -> None:
    app = make_host_app()
    dispatch = Dispatch(app)
    dispatch.subdomain(RecordingFactory(known=()))
    with app.test_request_context("/"), pytest.raises(LookupError, match="No tenant 'initech'"):
        dispatch.url_for("initech", "index")


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        pytest.param({"_external": False}, "always external", id="relative-subdomain"),
        pytest.param(
            {"by": "path", "_scheme": "https", "_external": False}, "_scheme", id="scheme"
        ),
    ],
)
def test_url_for_errors(kwargs: dict[str, t.Any], error: str) -> None:
    app = make_host_app()
    dispatch = Dispatch(app)
    dispatch.subdomain(localised_tenant)
    dispatch.path(localised_tenant)
    with app.test_request_context("/"), pytest.raises(ValueError, match=re.escape(error)):
        dispatch.url_for("acme", "page", **kwargs)


def test_current_tenant() -> None:
    app = make_host_app()
    dispatch = Dispatch(app)
    dispatch.subdomain(flask_tenant)

    @app.route("/whoami")
    def whoami() -> str:
        return f"{current_tenant!s} {bool(current_tenant)} {current_tenant == None}"  # noqa: E711

    assert call(app, host="acme.example.com").body == "acme http://acme.example.com/"
    assert call(app, "/whoami").body == "None False True"
    with app.app_context():
        assert not current_tenant


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        pytest.param(
            {"SERVER_NAME": "app.example.net:8000", "DISPATCH_DOMAIN": ["example.com", "a.io"]},
            "http://acme.example.com:8000/",
            id="server-name-outside-the-domains",
        ),
        pytest.param(
            {"SERVER_NAME": "[::1]:5000", "DISPATCH_DOMAIN": "example.com"},
            "http://acme.example.com:5000/",
            id="ipv6-server-name",
        ),
        pytest.param(
            {"DISPATCH_DOMAIN": ["example.com", "eu.example.com"]},
            "http://acme.example.com/",
            id="the-first-listed",
        ),
        pytest.param(
            {"DISPATCH_DOMAIN": ["Tenants.Example.ORG.", "example.com"]},
            "http://acme.tenants.example.org/",
            id="the-first-listed-canonical",
        ),
        pytest.param(
            {"DISPATCH_DOMAIN": {"B.com", "a.com."}},
            "http://acme.a.com/",
            id="a-sets-shortest-canonical-name",
        ),
    ],
)
def test_tenant_url_outside_a_request_is_under_a_dispatch_domain(
    config: dict[str, t.Any], expected: str
) -> None:
    app = make_host_app(**config)
    dispatch = Dispatch(app)
    dispatch.subdomain(flask_tenant)
    with app.app_context():
        assert dispatch.tenant_url("acme") == expected


def test_links_fall_back_on_one_domain_of_a_set_in_every_process() -> None:
    # A set's order varies with the string hash seed, so with eight domains
    # as short as each other, the first iterated is rarely the first
    # alphabetically: links made in a request on another host and outside
    # one, and the bad host's error page, all name the same domain.
    shortest = {f"site{i}.io" for i in range(8)}
    app = make_host_app(DISPATCH_DOMAIN={"example.com", *shortest})
    app.register_error_handler(400, lambda e: (url_for("login", _external=True), 400))
    dispatch = Dispatch(app)
    dispatch.subdomain(flask_tenant)

    @app.route("/link")
    def link() -> str:
        return dispatch.tenant_url("acme")

    assert call(app, "/link", host="stranger.org").body == "http://acme.site0.io/"
    assert call(app, host="exa mple.com").body == "http://site0.io/login"
    with app.app_context():
        assert dispatch.tenant_url("acme") == "http://acme.site0.io/"


def test_a_resolver_that_raises_is_a_500_of_the_host_app(caplog: pytest.LogCaptureFixture) -> None:
    app = make_host_app()
    dispatch = Dispatch(app)
    dispatch.subdomain(flask_tenant)

    @dispatch.domain
    def broken(host: str) -> str | None:
        raise LookupError("directory down")

    assert call(app, host="acme.com").body == "site 500 page"
    assert "directory down" in caplog.text


def test_evict_forgets_not_ours_answers_for_a_new_tenants_domain(
    site: Flask, domains: Domains
) -> None:
    assert call(site, host="globex.com").body == "host index"  # not ours, remembered
    domains.table["globex.com"] = "globex"  # the signup
    with site.app_context():
        site.extensions["dispatch"].extension.evict("globex")
    assert call(site, host="globex.com").body.startswith("globex ")


def test_evicting_every_tenant_forgets_every_domain_answer(site: Flask, domains: Domains) -> None:
    # What `flask dispatch evict --all` makes every process do.
    assert call(site, host="acme.com").body.startswith("acme ")
    domains.table["acme.com"] = "globex"  # the shop moved
    site.extensions["dispatch"].evict(None, everywhere=False)
    assert call(site, host="acme.com").body.startswith("globex ")


def test_a_resolver_call_under_way_at_an_evict_is_not_shared_or_remembered() -> None:
    app = make_host_app()
    dispatch = Dispatch(app)
    dispatch.subdomain(flask_tenant)
    table = {"shop.com": "acme"}
    asked, release = threading.Event(), threading.Event()

    @dispatch.domain
    def resolve(host: str) -> str | None:
        name = table.get(host)  # reads the directory, then is slow
        if not asked.is_set():
            asked.set()
            assert release.wait(10)
        return name

    first: list[str] = []
    request = threading.Thread(target=lambda: first.append(call(app, host="shop.com").body))
    request.start()
    assert asked.wait(10)
    table["shop.com"] = "globex"  # the domain moves while the answer is on its way
    with app.app_context():
        dispatch.evict("acme")
    assert call(app, host="shop.com").body.startswith("globex ")  # asks again
    release.set()
    request.join(10)
    assert first[0].startswith("acme ")  # asked before the evict ...
    assert call(app, host="shop.com").body.startswith("globex ")  # ... and not kept


def test_a_forked_child_does_not_wait_for_the_parents_resolver_call() -> None:
    parent = os.getpid()
    inside, release = threading.Event(), threading.Event()

    def resolve(host: str) -> str | None:
        if os.getpid() == parent:
            inside.set()
            assert release.wait(10)
        return "acme"

    app = make_host_app(DISPATCH_CREATE_TIMEOUT=5)
    dispatch = Dispatch(app)
    dispatch.subdomain(flask_tenant)
    dispatch.domain(resolve)
    call(app, host="acme.example.com")  # the router is built
    request = threading.Thread(target=call, args=(app,), kwargs={"host": "shop.com"})
    request.start()
    assert inside.wait(10)  # the parent's request is inside the resolver
    try:
        body, seconds = in_forked_child(lambda: call(app, host="shop.com").body)
    finally:
        release.set()
        request.join(10)
    assert body.startswith("acme ") and seconds < 2


@pytest.mark.parametrize(
    "host",
    [
        pytest.param("acme.com", id="custom-domain"),
        pytest.param("example.com", id="site"),
        pytest.param("evil.com", id="untrusted"),
        pytest.param("exa mple.com", id="malformed"),
    ],
)
def test_a_domain_resolver_without_a_subdomain_factory_is_refused(
    host: str, caplog: pytest.LogCaptureFixture
) -> None:
    app = make_host_app(TRUSTED_HOSTS=["example.com", "acme.com"])
    app.register_error_handler(500, lambda e: (f"site 500 page, {url_for('login')}", 500))
    dispatch = Dispatch(app)
    dispatch.path(RecordingFactory())
    dispatch.domain(lambda host: "acme")
    # The site's own 500 page, and the error logged as the host app logs one.
    page = (500, "site 500 page, /login")
    assert (call(app, host=host).status, call(app, host=host).body) == page
    errors = [r.exc_info[1] for r in caplog.records if r.exc_info]
    assert len(errors) == 2 and all(isinstance(e, DispatchConfigError) for e in errors)
    assert "needs a subdomain factory" in str(errors[0])
    app.testing = True  # and raised to a test
    with pytest.raises(DispatchConfigError, match="needs a subdomain factory"):
        call(app, host=host)


@pytest.mark.parametrize(
    ("host", "seen"),
    [
        pytest.param("www.acme.com", "www.acme.com None", id="trusted-kept"),
        pytest.param("example.com:8000", "example.com:8000 None", id="with-a-port-kept"),
        pytest.param("evil.com", "example.com evil.com", id="untrusted-swapped"),
        pytest.param("exa mple.com", "example.com exa mple.com", id="malformed-swapped"),
    ],
)
def test_a_misconfigurations_500_page_sees_the_host_sent_unless_it_is_rejected(
    host: str, seen: str
) -> None:
    app = make_host_app(TRUSTED_HOSTS=[".example.com", ".acme.com"])
    app.register_error_handler(
        500,
        lambda e: (f"{request.host} {request.environ.get('flask_dispatch.original_host')}", 500),
    )
    dispatch = Dispatch(app)
    dispatch.path(RecordingFactory())
    dispatch.domain(lambda host: "acme")
    assert (call(app, host=host).status, call(app, host=host).body) == (500, seen)


def test_an_answer_is_remembered_from_when_it_was_asked() -> None:
    # A request that waited for another's call, which failed, asks itself
    # later: its answer lives miss_ttl from then.
    from flask_dispatch.domains import DomainAnswers

    now = [0.0]
    asked, fail = threading.Event(), threading.Event()
    calls: list[str] = []

    def resolve(host: str) -> str | None:
        calls.append(host)
        if len(calls) == 1:
            asked.set()
            assert fail.wait(10)
            raise LookupError("directory down")
        return "acme"

    answers = DomainAnswers(resolve, lambda name: True, 10, 100, clock=lambda: now[0])

    def ask_quietly() -> None:
        with contextlib.suppress(LookupError):
            answers.name_for("shop.com")

    first = threading.Thread(target=ask_quietly)
    first.start()
    assert asked.wait(10)
    waiter = threading.Thread(target=ask_quietly)
    waiter.start()
    time.sleep(0.1)  # it waits for the first call
    now[0] = 5.0
    fail.set()
    for thread in (first, waiter):
        thread.join(10)
    assert calls == ["shop.com"] * 2
    now[0] = 12.0  # within 10 s of the waiter's own call
    assert answers.name_for("shop.com") == "acme"
    assert len(calls) == 2
