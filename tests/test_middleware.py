"""Routing rules, end to end through the host app's WSGI callable."""

from __future__ import annotations

import gc
import logging
import threading
import typing as t
import weakref

import pytest
from flask import Flask, url_for
from werkzeug.middleware.proxy_fix import ProxyFix

from flask_dispatch import Dispatch, TenantFactoryError, TenantRecursionError

from .conftest import NamedApp, RecordingFactory, call, make_host_app, wait_for

if t.TYPE_CHECKING:
    from collections.abc import Iterable

    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment


# Rule 1: the host is canonicalised; malformed hosts get 400 and cost nothing.
@pytest.mark.parametrize(
    "host",
    [
        pytest.param("acme..example.com", id="empty-label"),
        pytest.param("", id="empty"),
        pytest.param("acme.example.com:http", id="non-numeric-port"),
        pytest.param("a.example.com,b.example.com", id="comma"),
        pytest.param("acme.example.com@evil.tld", id="at"),
        pytest.param("acme.example.com/x", id="slash"),
        pytest.param("acme .example.com", id="space"),
        pytest.param("_acme.example.com", id="underscore"),
        pytest.param("a" * 64 + ".example.com", id="long-label"),
        pytest.param(("a" * 60 + ".") * 4 + "example.com", id="long-name"),
    ],
)
def test_malformed_host_is_400_without_factory_call(
    app: Flask,
    dispatch: Dispatch,
    sub_factory: RecordingFactory,
    path_factory: RecordingFactory,
    host: str,
) -> None:
    response = call(app, "/acme/x", host=host)
    assert (response.status, response.body) == (400, "site 400 page")
    assert sub_factory.calls == [] and path_factory.calls == []
    with app.app_context():
        assert len(dispatch.registry) == 0 and dispatch.registry.stats().misses == 0


@pytest.mark.parametrize(
    "host",
    [
        pytest.param("acme.example.com", id="plain"),
        pytest.param("ACME.Example.com", id="case"),
        pytest.param("acme.example.com.", id="trailing-dot"),
        pytest.param("acme.example.com:8080", id="port"),
    ],
)
def test_host_spellings_reach_one_instance(
    app: Flask, dispatch: Dispatch, sub_factory: RecordingFactory, host: str
) -> None:
    call(app, host="acme.example.com")
    response = call(app, "/x", host=host)
    assert response.body == "acme||/x|acme"
    assert sub_factory.calls == ["acme"]


def test_server_name_used_without_host_header(app: Flask, sub_factory: RecordingFactory) -> None:
    assert call(app, host=None, SERVER_NAME="acme.example.com").body.startswith("acme|")


@pytest.mark.parametrize(
    "server_name",
    [
        pytest.param("::1", id="ipv6"),
        pytest.param("[::1]", id="ipv6-bracketed"),
        pytest.param("127.0.0.1", id="ipv4"),
    ],
)
def test_an_address_without_host_header_is_the_host_app(
    app: Flask, sub_factory: RecordingFactory, server_name: str
) -> None:
    # HTTP/1.0 to a server bound to an address, as Werkzeug reads it.
    assert call(app, host=None, SERVER_NAME=server_name).body == "host index"
    assert sub_factory.calls == []


# Rule 2: TRUSTED_HOSTS is checked before any lookup.
@pytest.mark.parametrize(
    "trusted",
    [pytest.param([".example.com"], id="list"), pytest.param(".example.com", id="one-host")],
)
def test_untrusted_host_is_400_before_lookup(
    app: Flask, sub_factory: RecordingFactory, trusted: str | list[str]
) -> None:
    app.config["TRUSTED_HOSTS"] = trusted
    assert call(app, host="acme.example.com").status == 200
    response = call(app, host="attacker.org")
    assert (response.status, response.body) == (400, "site 400 page")
    assert call(app, host="globex.example.com:443").status == 200
    assert sub_factory.calls == ["acme", "globex"]


@pytest.mark.parametrize(
    ("trusted", "link"),
    [
        pytest.param(["example.com"], "http://example.com/login", id="the-domain"),
        pytest.param(["www.example.com"], "http://www.example.com/login", id="another-host"),
        pytest.param([".example.com"], "http://example.com/login", id="a-pattern"),
    ],
)
def test_untrusted_hosts_400_page_builds_urls_on_a_trusted_host(
    app: Flask, sub_factory: RecordingFactory, trusted: list[str], link: str
) -> None:
    app.config["TRUSTED_HOSTS"] = trusted
    app.register_error_handler(400, lambda e: (url_for("login", _external=True), 400))
    assert (call(app, host="attacker.org").status, call(app, host="attacker.org").body) == (
        400,
        link,
    )


@pytest.mark.parametrize(
    ("configured", "status"),
    [
        pytest.param(True, 400, id="site-page"),
        # A misconfiguration: the request is handed on with another host.
        pytest.param(False, 500, id="misconfigured"),
    ],
)
def test_a_host_werkzeug_cannot_encode_is_refused(
    app: Flask,
    dispatch: Dispatch,
    path_factory: RecordingFactory,
    monkeypatch: pytest.MonkeyPatch,
    configured: bool,
    status: int,
) -> None:
    # Werkzeug 3.0's host_is_trusted encodes the request's host as IDNA and
    # lets the error out for "a..b.com" (3.1 refuses it with a pattern first).
    from werkzeug.sansio import utils

    from flask_dispatch import routing

    def as_werkzeug_3_0(hostname: str, trusted_list: t.Any = None) -> bool:
        hostname.partition(":")[0].encode("idna")
        return utils.host_is_trusted(hostname, trusted_list)

    monkeypatch.setattr(routing, "host_is_trusted", as_werkzeug_3_0)
    app.config["TRUSTED_HOSTS"] = [".example.com"]
    if not configured:
        dispatch.domain(lambda host: None)  # with no subdomain factory
    assert call(app, host="a..b.com").status == status


@pytest.mark.parametrize(
    "trusted",
    [
        pytest.param("", id="empty-string"),
        pytest.param([], id="empty-list"),
        pytest.param(False, id="false"),
        # Set after init_app, unchecked: as Flask, a host an entry before it
        # accepts is served.
        pytest.param(["example.com", "a..b.com"], id="bad-entry-after-a-good-one"),
    ],
)
def test_trusted_hosts_that_flask_serves_with(trusted: t.Any) -> None:
    app = make_host_app()
    Dispatch(app).path(RecordingFactory())
    app.config["TRUSTED_HOSTS"] = trusted
    assert call(app, host="example.com").body == "host index"


# Rule 3: subdomains.
@pytest.mark.parametrize(
    ("host", "status", "body", "calls"),
    [
        pytest.param("acme.example.com", 200, "acme||/p|acme", ["acme"], id="tenant"),
        pytest.param("www.example.com", 200, "host index", [], id="reserved"),
        pytest.param("a.b.example.com", 404, "site 404 page", [], id="pattern-rejects-dot"),
        pytest.param("-acme.example.com", 404, "site 404 page", [], id="pattern-rejects-hyphen"),
        pytest.param("nobody.example.com", 404, "site 404 page", ["nobody"], id="factory-none"),
        pytest.param("evilexample.com", 200, "host index", [], id="not-on-label-boundary"),
        pytest.param("example.com", 200, "host index", [], id="domain-itself"),
        pytest.param("attacker.org", 200, "host index", [], id="foreign-host"),
        pytest.param("127.0.0.1:5000", 200, "host index", [], id="ip"),
        pytest.param("[::1]:8080", 200, "host index", [], id="ipv6"),
        pytest.param("localhost", 200, "host index", [], id="localhost"),
    ],
)
def test_subdomain_routing(
    app: Flask, sub_factory: RecordingFactory, host: str, status: int, body: str, calls: list[str]
) -> None:
    path = "/p" if status == 200 and body != "host index" else "/"
    response = call(app, path, host=host)
    assert (response.status, response.body) == (status, body)
    assert sub_factory.calls == calls


@pytest.mark.parametrize(
    "segment",
    [
        pytest.param("admin", id="as-configured"),
        pytest.param("Admin", id="capital"),
        pytest.param("ADMIN", id="upper"),
    ],
)
def test_reserved_names_are_reserved_in_any_case(segment: str) -> None:
    # With a pattern that allows capitals, /Admin/ is no more a tenant than
    # Admin.example.com (hosts are lowercased) is.
    app = make_host_app(DISPATCH_NAME_PATTERN=r"[A-Za-z]+", DISPATCH_RESERVED=["Admin"])
    dispatch = Dispatch(app)
    factory = RecordingFactory(known={"admin", "Admin", "ADMIN"})
    dispatch.path(factory)
    assert call(app, f"/{segment}/x").status == 404
    assert factory.calls == []
    with app.app_context():
        assert not dispatch.is_tenant_name(segment)


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("bücher", id="letter-and-fraction-as-latin-1"),  # "bÃ¼cher" in PATH_INFO
        pytest.param("café", id="no-word-character-as-latin-1"),
        pytest.param("日本", id="three-byte-characters"),
    ],
)
def test_a_path_with_other_than_ascii_is_no_tenant_even_if_the_pattern_allows(name: str) -> None:
    # PATH_INFO holds the URL's bytes as latin-1: a factory would get mojibake.
    app = make_host_app(DISPATCH_NAME_PATTERN=r"\w+")
    dispatch = Dispatch(app)
    factory = RecordingFactory()
    dispatch.path(factory)
    as_sent = name.encode().decode("latin-1")
    assert call(app, f"/{as_sent}/x").body == "site 404 page"
    assert factory.calls == []
    with app.app_context():
        assert not dispatch.is_tenant_name(name)
        assert not dispatch.is_tenant_name(as_sent)
        assert dispatch.is_tenant_name("books")


def test_custom_name_pattern(sub_factory: RecordingFactory) -> None:
    app = make_host_app(DISPATCH_NAME_PATTERN=r"[a-z]+")
    dispatch = Dispatch(app)
    dispatch.subdomain(sub_factory)
    assert call(app, host="acme.example.com").status == 200
    assert call(app, host="acme2.example.com").status == 404
    assert sub_factory.calls == ["acme"]


def test_tenant_gets_path_untouched(app: Flask, sub_factory: RecordingFactory) -> None:
    response = call(app, "/notes/1", host="acme.example.com", script_name="/outer")
    assert response.body == "acme|/outer|/notes/1|acme"


def test_several_domains(sub_factory: RecordingFactory) -> None:
    app = make_host_app(DISPATCH_DOMAIN=["example.com", "example.localhost"])
    Dispatch(app).subdomain(sub_factory)
    assert call(app, host="acme.example.localhost:5000").body.startswith("acme|")
    assert call(app, host="acme.example.com").body.startswith("acme|")
    assert sub_factory.calls == ["acme"]


def test_without_subdomain_factory_subdomains_reach_host_app(
    app: Flask, path_factory: RecordingFactory
) -> None:
    assert call(app, host="acme.example.com").body == "host index"
    assert call(app, host="a.b.example.com").body == "host index"


# Rule 4: the host side: mounts, then the path factory, then the host app.
@pytest.mark.parametrize(
    ("path", "body"),
    [
        pytest.param("/backend", "backend|/backend||None", id="mount-exact"),
        pytest.param("/backend/x/y", "backend|/backend|/x/y|None", id="mount-nested"),
        pytest.param("/backendx", "site 404 page", id="mount-whole-segments"),
        pytest.param("/api/v1/x", "v1|/api/v1|/x|None", id="mount-longest"),
        pytest.param("/api/v2", "api|/api|/v2|None", id="mount-shorter"),
        pytest.param("/acme/x", "path:acme|/acme|/x|acme", id="path-tenant"),
        pytest.param("/nobody/x", "site 404 page", id="path-factory-none"),
        pytest.param("/login", "host login", id="host-rule"),
        pytest.param("/", "host index", id="root"),
    ],
)
def test_host_side_order(
    app: Flask, dispatch: Dispatch, path_factory: RecordingFactory, path: str, body: str
) -> None:
    dispatch.mount("/backend", NamedApp("backend"))
    dispatch.mount("/api", NamedApp("api"))
    dispatch.mount("/api/v1", NamedApp("v1"))
    assert call(app, path, host="example.com").body == body


@pytest.mark.parametrize(
    ("script_name", "path"),
    [
        pytest.param("/", "/backend/x", id="root"),
        pytest.param("/pre/", "/backend/x", id="pre"),
        # What gunicorn passes when given SCRIPT_NAME "/pre/".
        pytest.param("/pre/", "backend/x", id="pre-and-no-leading-slash"),
    ],
)
def test_a_mount_under_a_script_name_with_a_trailing_slash(
    app: Flask, dispatch: Dispatch, script_name: str, path: str
) -> None:
    dispatch.mount("/backend", NamedApp("backend"))
    body = call(app, path, script_name=script_name).body
    assert body == f"backend|{script_name.rstrip('/')}/backend|/x|None"


def test_mount_wins_over_path_tenant(
    app: Flask, dispatch: Dispatch, path_factory: RecordingFactory
) -> None:
    dispatch.mount("/acme", NamedApp("mounted"))
    assert call(app, "/acme/x").body == "mounted|/acme|/x|None"
    assert path_factory.calls == []


def test_mounts_not_on_tenant_subdomains(
    app: Flask, dispatch: Dispatch, sub_factory: RecordingFactory
) -> None:
    dispatch.mount("/backend", NamedApp("backend"))
    assert call(app, "/backend", host="acme.example.com").body == "acme||/backend|acme"


# Rule 5: path dispatch.
@pytest.mark.parametrize(
    ("path", "script_name", "body", "calls"),
    [
        pytest.param("/acme/x", "", "path:acme|/acme|/x|acme", ["acme"], id="tenant"),
        pytest.param("/acme/", "", "path:acme|/acme|/|acme", ["acme"], id="tenant-root"),
        pytest.param(
            "/acme/x", "/outer", "path:acme|/outer/acme|/x|acme", ["acme"], id="outer-script-name"
        ),
        pytest.param(
            "/acme/x", "/pre/", "path:acme|/pre/acme|/x|acme", ["acme"], id="script-name-slash"
        ),
        pytest.param("/acme/x", "/", "path:acme|/acme|/x|acme", ["acme"], id="script-name-root"),
        # What gunicorn passes for /pre/acme/x when given SCRIPT_NAME "/pre/".
        pytest.param(
            "acme/x", "/pre/", "path:acme|/pre/acme|/x|acme", ["acme"], id="no-leading-slash"
        ),
        pytest.param("acme/x", "/", "path:acme|/acme|/x|acme", ["acme"], id="no-slash-at-root"),
        # What Werkzeug's server passes for the request line "GET acme/x".
        pytest.param("acme/x", "", "path:acme|/acme|/x|acme", ["acme"], id="no-slash-at-all"),
        pytest.param(
            "acme/x", "/pre", "path:acme|/pre/acme|/x|acme", ["acme"], id="no-slash-after"
        ),
        pytest.param("login", "/pre/", "host login", [], id="host-rule-without-leading-slash"),
        pytest.param("/login", "", "host login", [], id="host-rule-never-asked"),
        pytest.param("/static/x.css", "", "site 404 page", [], id="static-never-asked"),
        pytest.param("/about/team", "", "host team", [], id="host-rule-prefix"),
        pytest.param("/www/x", "", "site 404 page", [], id="reserved"),
        pytest.param("/ACME/x", "", "site 404 page", [], id="pattern-rejects-case"),
        pytest.param("//acme/x", "", "site 404 page", [], id="empty-segment"),
        pytest.param("/", "", "host index", [], id="root"),
        pytest.param("/nobody", "", "site 404 page", ["nobody"], id="factory-none"),
        pytest.param(
            "/acme/../globex/x",
            "",
            "path:acme|/acme|/../globex/x|acme",
            ["acme"],
            id="dot-dot-stays",
        ),
        pytest.param("/" + "a" * 64 + "/x", "", "site 404 page", [], id="long-segment"),
    ],
)
def test_path_routing(
    app: Flask,
    path_factory: RecordingFactory,
    path: str,
    script_name: str,
    body: str,
    calls: list[str],
) -> None:
    assert call(app, path, script_name=script_name).body == body
    assert path_factory.calls == calls


def test_none_from_path_factory_leaves_request_unchanged(app: Flask, dispatch: Dispatch) -> None:
    seen: list[tuple[str, str]] = []

    @app.route("/<page>/x")
    def page(page: str) -> str:
        from flask import request

        seen.append((request.script_root, request.path))
        return f"page {page}"

    dispatch.path(RecordingFactory(known=()))
    assert call(app, "/nobody/x", script_name="/outer").body == "page nobody"
    assert seen == [("/outer", "/nobody/x")]


def flask_tenant(name: str) -> Flask:
    tenant = Flask(f"tenant_{name}")

    @tenant.route("/")
    def index() -> str:
        return f"{name} index; notes at {url_for('notes')}"

    @tenant.route("/notes/")
    def notes() -> str:
        return f"{name} notes"

    return tenant


def test_flask_tenant_by_path_builds_prefixed_urls(app: Flask, dispatch: Dispatch) -> None:
    dispatch.path(flask_tenant)
    client = app.test_client()
    assert client.get("/acme/").text == "acme index; notes at /acme/notes/"
    redirect = client.get("/acme")
    assert redirect.status_code == 308 and redirect.location.endswith("/acme/")
    assert client.get("/acme/notes/").text == "acme notes"


def test_flask_tenant_by_subdomain(app: Flask, dispatch: Dispatch) -> None:
    dispatch.subdomain(flask_tenant)
    client = app.test_client()
    response = client.get("/", base_url="http://acme.example.com")
    assert response.text == "acme index; notes at /notes/"


# Rule 6: errors go through the host app.
def test_factory_exception_is_logged_with_tenant_and_rendered(
    app: Flask, dispatch: Dispatch, caplog: pytest.LogCaptureFixture
) -> None:
    calls = []

    @dispatch.subdomain
    def broken(name: str) -> WSGIApplication | None:
        calls.append(name)
        raise LookupError("tenant database unreachable")

    with caplog.at_level(logging.ERROR):
        response = call(app, host="acme.example.com")
    assert (response.status, response.body) == (500, "site 500 page")
    assert "tenant database unreachable" in caplog.text and "tenant 'acme'" in caplog.text
    call(app, host="acme.example.com")
    assert calls == ["acme", "acme"]  # the failure was not remembered


@pytest.mark.parametrize(
    "config",
    [
        pytest.param({"TESTING": True}, id="testing"),
        pytest.param({"PROPAGATE_EXCEPTIONS": True}, id="propagate"),
        pytest.param({"DEBUG": True}, id="debug"),
    ],
)
def test_factory_exception_propagates(config: dict[str, bool]) -> None:
    app = make_host_app(**config)
    dispatch = Dispatch(app)

    @dispatch.path
    def broken(name: str) -> WSGIApplication | None:
        raise LookupError("boom")

    with pytest.raises(TenantFactoryError) as info:
        call(app, "/acme/")
    assert isinstance(info.value.__cause__, LookupError)


def test_dispatch_404_without_handler_is_werkzeug_page(sub_factory: RecordingFactory) -> None:
    app = Flask("bare")
    app.config["DISPATCH_DOMAIN"] = "example.com"
    Dispatch(app).subdomain(sub_factory)
    response = call(app, host="nobody.example.com")
    assert response.status == 404 and "Not Found" in response.body


def test_after_request_runs_on_dispatch_errors(app: Flask, sub_factory: RecordingFactory) -> None:
    @app.after_request
    def mark(response: t.Any) -> t.Any:
        response.headers["X-Site"] = "yes"
        return response

    response = call(app, host="nobody.example.com")
    assert response.status == 404 and response.headers["X-Site"] == "yes"


class SlowFactory:
    """Blocks in the factory until released."""

    def __init__(self) -> None:
        self.entered, self.release = threading.Event(), threading.Event()

    def __call__(self, name: str) -> WSGIApplication | None:
        self.entered.set()
        assert self.release.wait(10)
        return NamedApp(name)


@pytest.mark.parametrize(
    ("handler", "body"),
    [
        pytest.param(True, "site 503 page", id="site-page"),
        pytest.param(False, None, id="werkzeug-page-with-retry-after"),
    ],
)
def test_creation_timeout_is_503_then_recovers(handler: bool, body: str | None) -> None:
    app = make_host_app(DISPATCH_CREATE_TIMEOUT=0.2) if handler else Flask("bare")
    app.config.update(DISPATCH_DOMAIN="example.com", DISPATCH_CREATE_TIMEOUT=0.2)
    slow = SlowFactory()
    Dispatch(app).subdomain(slow)
    first = threading.Thread(target=call, args=(app,), kwargs={"host": "acme.example.com"})
    first.start()
    try:
        assert slow.entered.wait(10)
        response = call(app, host="acme.example.com")
        assert response.status == 503
        if body is not None:
            assert response.body == body
        else:
            assert response.headers["Retry-After"] == "1"
    finally:
        slow.release.set()
        first.join(10)
    # Until the creation lands, requests get a 503 at once; then the app.
    wait_for(lambda: call(app, host="acme.example.com").status == 200)


def test_nested_request_for_own_tenant_is_an_error(app: Flask) -> None:
    app.config["TESTING"] = True
    dispatch = Dispatch(app)

    @dispatch.subdomain
    def recursive(name: str) -> WSGIApplication | None:
        # e.g. a factory that fetches its own tenant's settings page
        app.test_client().get("/", base_url=f"http://{name}.example.com")
        return NamedApp(name)

    with pytest.raises(TenantFactoryError) as info:
        app.test_client().get("/", base_url="http://acme.example.com")
    assert isinstance(info.value.__cause__, TenantRecursionError)


def test_eviction_lets_in_flight_request_finish(app: Flask, dispatch: Dispatch) -> None:
    entered, release = threading.Event(), threading.Event()

    class Blocking:
        def __call__(
            self, environ: WSGIEnvironment, start_response: StartResponse
        ) -> Iterable[bytes]:
            entered.set()
            assert release.wait(10)
            start_response("200 OK", [])
            return [b"finished"]

    dispatch.subdomain(lambda name: Blocking())
    result = []
    worker = threading.Thread(target=lambda: result.append(call(app, host="acme.example.com")))
    worker.start()
    assert entered.wait(10)
    with app.app_context():
        assert dispatch.evict("acme") == 1
        assert "acme" not in dispatch.registry
    release.set()
    worker.join(10)
    assert result[0].status == 200 and result[0].body == "finished"


def test_proxy_fix_applied_after_init_app_is_outside(
    app: Flask, sub_factory: RecordingFactory
) -> None:
    headers = {"HTTP_X_FORWARDED_HOST": "globex.example.com"}
    assert call(app, host="acme.example.com", **headers).body.startswith("acme|")
    app.wsgi_app = ProxyFix(app.wsgi_app, x_host=1)  # type: ignore[method-assign]
    assert call(app, host="acme.example.com", **headers).body.startswith("globex|")
    bad = {"HTTP_X_FORWARDED_HOST": "evil..example.com"}
    assert call(app, host="acme.example.com", **bad).status == 400


def test_tenant_environ_key_only_for_tenants(app: Flask, sub_factory: RecordingFactory) -> None:
    seen = []

    @app.route("/env")
    def env() -> str:
        from flask import request

        seen.append(request.environ.get("flask_dispatch.tenant"))
        return ""

    call(app, "/env", host="example.com")
    assert seen == [None]
    assert call(app, "/env", host="acme.example.com").body.endswith("|acme")


def test_test_client_goes_through_dispatch(app: Flask, sub_factory: RecordingFactory) -> None:
    response = app.test_client().get("/x", base_url="http://acme.example.com")
    assert response.text == "acme||/x|acme"


def test_rules_added_before_the_first_request_are_honoured(
    app: Flask, dispatch: Dispatch, path_factory: RecordingFactory
) -> None:
    # Something reads the URL map before the last rules are added.
    assert list(app.url_map.iter_rules())
    with app.test_request_context():
        url_for("login")
    app.add_url_rule("/acme/<path:rest>", "late", lambda rest: f"host late {rest}")
    app.add_url_rule("/", "admin", lambda: "host admin", subdomain="admin")
    with app.app_context():
        assert not dispatch.is_tenant_name("acme")
    assert call(app, "/acme/x").body == "host late x"
    assert path_factory.calls == []


def _memoise(app: Flask) -> None:
    for _ in range(2):  # created, then held
        assert call(app, "/acme/x").body == "path:acme|/acme|/x|acme"


def test_mount_added_later_takes_memoised_paths(
    app: Flask, dispatch: Dispatch, path_factory: RecordingFactory
) -> None:
    _memoise(app)
    dispatch.mount("/acme", NamedApp("mounted"))
    assert call(app, "/acme/x").body == "mounted|/acme|/x|None"


def test_path_factory_registered_again_is_used(
    app: Flask, dispatch: Dispatch, path_factory: RecordingFactory
) -> None:
    _memoise(app)
    again = RecordingFactory(prefix="again:")
    dispatch.path(again)
    assert call(app, "/acme/x").body == "again:acme|/acme|/x|acme"
    assert again.calls == ["acme"]


def test_memoised_path_of_an_evicted_tenant_is_forgotten(
    app: Flask, dispatch: Dispatch, path_factory: RecordingFactory
) -> None:
    _memoise(app)
    path_factory.known.discard("acme")  # type: ignore[union-attr]
    with app.app_context():
        assert dispatch.evict("acme") == 1
    assert call(app, "/acme/x").status == 404  # the host app's own 404


@pytest.mark.parametrize(
    ("host", "path"),
    [
        pytest.param("acme.example.com", "/x", id="subdomain"),
        pytest.param("example.com", "/acme/x", id="path"),
    ],
)
def test_an_evicted_app_is_freed_and_built_afresh(
    app: Flask, dispatch: Dispatch, host: str, path: str
) -> None:
    built: list[NamedApp] = []

    def factory(name: str) -> WSGIApplication:
        built.append(NamedApp(name))
        return built[-1]

    dispatch.subdomain(factory)
    dispatch.path(factory)
    for _ in range(3):
        assert call(app, path, host=host).status == 200
    evicted = weakref.ref(built.pop())
    with app.app_context():
        assert dispatch.evict("acme") == 1
    gc.collect()
    assert evicted() is None  # nothing in dispatch keeps the evicted app alive
    for _ in range(2):
        assert call(app, path, host=host).body.endswith("|acme")
    assert len(built) == 1  # built once more, then held


@pytest.mark.parametrize(
    ("kind", "request_to"),
    [
        pytest.param(
            "subdomain",
            lambda app, name: call(app, "/x", host=f"{name}.example.com"),
            id="subdomain",
        ),
        pytest.param("path", lambda app, name: call(app, f"/{name}/x"), id="path"),
    ],
)
def test_memoised_hits_count_as_use_for_eviction(
    kind: str, request_to: t.Callable[[Flask, str], t.Any]
) -> None:
    # Every hit marks the tenant as used: the one that goes when the
    # registry is full is the one used least recently.
    app = make_host_app(DISPATCH_MAX_INSTANCES=2)
    dispatch = Dispatch(app)
    factory = RecordingFactory()
    getattr(dispatch, kind)(factory)
    for name in ("a", "b"):  # created, and their routes remembered
        assert request_to(app, name).status == 200
    for _ in range(3):
        assert request_to(app, "a").status == 200  # hits by remembered routes
    assert request_to(app, "c").status == 200  # evicts b, not a
    with app.app_context():
        assert list(dispatch.registry) == ["a", "c"]
    assert request_to(app, "a").status == 200
    assert factory.calls == ["a", "b", "c"]


class StampingFlask(Flask):
    """A Flask subclass with its own ``__call__``: dispatch must call it."""

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> t.Any:
        environ["stamped"] = "yes"
        return super().__call__(environ, start_response)


def stamp_tenant(name: str) -> Flask:
    tenant = StampingFlask(f"stamped_{name}")

    @tenant.route("/x")
    def x() -> str:
        from flask import request

        return f"{name} stamped={request.environ.get('stamped')}"

    return tenant


@pytest.mark.parametrize(
    ("kind", "host", "path"),
    [
        pytest.param("subdomain", "acme.example.com", "/x", id="subdomain"),
        pytest.param("path", "example.com", "/acme/x", id="path"),
    ],
)
def test_flask_tenant_served_as_flask_would_call_it(
    app: Flask, dispatch: Dispatch, kind: str, host: str, path: str
) -> None:
    """A plain Flask tenant is served through its wsgi_app, looked up on each
    request (so wrapping it later still applies); a subclass that overrides
    __call__ goes through its __call__."""
    tenants: dict[str, Flask] = {}

    def factory(name: str) -> Flask:
        tenants[name] = tenant = stamp_tenant(name) if name == "acme" else flask_tenant(name)
        return tenant

    getattr(dispatch, kind)(factory)
    for _ in range(2):  # created, then a hit
        assert call(app, path, host=host).body == "acme stamped=yes"

    other_host = host.replace("acme", "globex")
    other_path = path.replace("acme", "globex").replace("/x", "/")
    assert call(app, other_path, host=other_host).body.startswith("globex index")
    plain = tenants["globex"]
    inner = plain.wsgi_app

    def tagged(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        return [b"wrapped:", *inner(environ, start_response)]

    plain.wsgi_app = tagged  # type: ignore[method-assign]
    assert call(app, other_path, host=other_host).body.startswith("wrapped:globex index")
