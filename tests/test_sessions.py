"""Sessions scoped to their tenant (:mod:`flask_dispatch.sessions`).

A login in one tenant, then its cookie replayed to another tenant and to the
host app: as issued, under the other app's cookie name, on another path; by
path and by subdomain, with a shared ``SECRET_KEY`` and one per tenant.
Raw WSGI calls show the ``Set-Cookie`` header the test client would hide; the
test client shows what a browser would send back. Then the tenants and
settings left alone, the switch, and the code on ``docs/sessions.rst``.
"""

from __future__ import annotations

import dataclasses
import re
import textwrap
import time
import types
import typing as t
from pathlib import Path

import pytest
from flask import Flask
from flask.sessions import SecureCookieSessionInterface

from flask_dispatch import Dispatch
from flask_dispatch.sessions import SALT_PREFIX, TenantSessionInterface, scope_session

from .conftest import WRAPPED_FLASK_APPS, NamedApp, call, make_host_app
from .sessions_app import HOST_KEY, add_login, create

if t.TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication
    from flask.testing import FlaskClient
    from werkzeug.test import TestResponse

    from .conftest import Response


@dataclasses.dataclass(frozen=True)
class Case:
    """How the host app of :mod:`.sessions_app` is built, and how tenants are
    addressed (``"path"``: ``example.com/acme/``; ``"subdomain"``:
    ``acme.example.com``, with ``SESSION_COOKIE_DOMAIN=".example.com"``)."""

    by: str = "path"
    own_keys: bool = False
    scope: bool = True
    host_config: t.Mapping[str, t.Any] = dataclasses.field(default_factory=dict)
    setup: t.Mapping[str, t.Callable[[Flask], object]] | None = None
    wrap: t.Callable[[Flask], WSGIApplication] | None = None

    def build(self) -> Flask:
        config = dict(self.host_config)
        if self.by == "subdomain":
            config.setdefault("SESSION_COOKIE_DOMAIN", ".example.com")
        return create(
            scope=self.scope, own_keys=self.own_keys, setup=self.setup, wrap=self.wrap, **config
        )


ADDRESSING = [
    pytest.param(Case("path"), id="path-shared-key"),
    pytest.param(Case("path", own_keys=True), id="path-own-keys"),
    pytest.param(Case("subdomain"), id="subdomain-shared-key"),
    pytest.param(Case("subdomain", own_keys=True), id="subdomain-own-keys"),
]


@pytest.fixture
def case() -> Case:
    return Case()


@pytest.fixture
def app(case: Case) -> Flask:
    return case.build()


class Cookie(t.NamedTuple):
    name: str
    value: str
    #: Attribute names lowercased; flags have the value "".
    attributes: dict[str, str]


def issued(response: Response) -> Cookie:
    """The one cookie ``response`` sets."""
    first, *attributes = response.headers["Set-Cookie"].split("; ")
    name, _, value = first.partition("=")
    pairs = (attribute.partition("=") for attribute in attributes)
    return Cookie(name, value, {key.lower(): value for key, _, value in pairs})


def where(by: str, owner: str) -> tuple[str, str]:
    """Host name and path prefix of ``owner``: a tenant, or ``"host"``."""
    if owner == "host":
        return "example.com", ""
    if by == "path":
        return "example.com", f"/{owner}"
    return f"{owner}.example.com", ""


def visit(app: WSGIApplication, by: str, owner: str, page: str, cookie: str = "") -> Response:
    """A raw WSGI request for ``page`` of ``owner``, sending ``cookie``."""
    host, prefix = where(by, owner)
    extra = {"HTTP_COOKIE": cookie} if cookie else {}
    return call(app, prefix + page, host=host, **extra)


def login(app: WSGIApplication, by: str, owner: str) -> Cookie:
    """Log in at ``owner``; a tenant's cookie must be scoped to it."""
    response = visit(app, by, owner, "/login")
    assert response.body == f"logged in as user-of-{owner}"
    cookie = issued(response)
    if owner != "host":
        assert cookie.name == f"session_{owner}"
        assert cookie.attributes["path"] == (f"/{owner}" if by == "path" else "/")
        assert "domain" not in cookie.attributes
    return cookie


def me(app: WSGIApplication, by: str, owner: str, cookie: str) -> str:
    return visit(app, by, owner, "/me", cookie).body


def url(by: str, owner: str, page: str) -> str:
    host, prefix = where(by, owner)
    return f"http://{host}{prefix}{page}"


def browse(client: FlaskClient, by: str, owner: str, page: str) -> TestResponse:
    """What a browser would do: the test client keeps and sends cookies by
    host name and path."""
    return client.get(url(by, owner, page))


# -- A cookie stays with the app that issued it --------------------------------


@pytest.mark.parametrize("case", ADDRESSING)
@pytest.mark.parametrize(
    ("source", "target", "sent_as"),
    [
        pytest.param("acme", "globex", "{issued}", id="acme-to-globex-as-issued"),
        pytest.param("acme", "globex", "session_globex", id="acme-to-globex-renamed"),
        pytest.param("acme", "globex", "session", id="acme-to-globex-as-flask-name"),
        pytest.param("acme", "host", "{issued}", id="acme-to-host-as-issued"),
        pytest.param("acme", "host", "session", id="acme-to-host-renamed"),
        pytest.param("host", "acme", "{issued}", id="host-to-acme-as-issued"),
        pytest.param("host", "acme", "session_acme", id="host-to-acme-renamed"),
    ],
)
def test_replayed_cookie_is_rejected(
    app: Flask, case: Case, source: str, target: str, sent_as: str
) -> None:
    stolen = login(app, case.by, source)
    own = login(app, case.by, target)
    # The target takes its own cookie (so "anonymous" below is a refusal) ...
    assert me(app, case.by, target, f"{own.name}={own.value}") == f"user-of-{target}"
    # ... and not the source's, sent to the target's path under either name.
    name = sent_as.format(issued=stolen.name)
    assert me(app, case.by, target, f"{name}={stolen.value}") == "anonymous"


@pytest.mark.parametrize("by", ["path", "subdomain"])
@pytest.mark.parametrize("wrap", WRAPPED_FLASK_APPS)
def test_a_flask_tenant_behind_middleware_is_scoped(
    by: str, wrap: t.Callable[[Flask], WSGIApplication]
) -> None:
    app = Case(by, wrap=wrap).build()
    stolen = login(app, by, "acme")  # checks the cookie's name and path
    host = login(app, by, "host")
    assert me(app, by, "host", f"{host.name}={host.value}") == "user-of-host"
    for name in (stolen.name, "session"):
        assert me(app, by, "host", f"{name}={stolen.value}") == "anonymous"
        assert me(app, by, "globex", f"{name}={stolen.value}") == "anonymous"


@pytest.mark.parametrize("case", ADDRESSING)
def test_login_round_trips_and_logout_deletes_the_cookie(
    app: Flask, case: Case, client: FlaskClient
) -> None:
    host, prefix = where(case.by, "acme")
    path = prefix or "/"
    assert browse(client, case.by, "acme", "/login").text == "logged in as user-of-acme"
    cookie = client.get_cookie("session_acme", domain=host, path=path)
    assert cookie is not None
    assert browse(client, case.by, "acme", "/me").text == "user-of-acme"
    # Deleted on the path it was set on, or a browser would keep it.
    deleted = issued(visit(app, case.by, "acme", "/logout", f"session_acme={cookie.value}"))
    assert (deleted.name, deleted.value, deleted.attributes["path"]) == ("session_acme", "", path)
    assert browse(client, case.by, "acme", "/logout").text == "logged out"
    assert client.get_cookie("session_acme", domain=host, path=path) is None
    assert browse(client, case.by, "acme", "/me").text == "anonymous"


@pytest.mark.parametrize("case", ADDRESSING)
def test_a_browser_keeps_one_login_per_app(app: Flask, case: Case, client: FlaskClient) -> None:
    # Flask's single "session" cookie on Path=/ made each login replace the
    # previous one (or, with a shared key, carry it into every app).
    browse(client, case.by, "acme", "/login")
    assert browse(client, case.by, "globex", "/me").text == "anonymous"
    assert browse(client, case.by, "host", "/me").text == "anonymous"
    for owner in ("host", "globex"):
        browse(client, case.by, owner, "/login")
    for owner in ("acme", "globex", "host"):
        assert browse(client, case.by, owner, "/me").text == f"user-of-{owner}"


@pytest.mark.parametrize("case", ADDRESSING)
@pytest.mark.parametrize(
    ("target", "name", "path"),
    [
        pytest.param("globex", "session_acme", "/", id="to-globex-on-path-slash"),
        pytest.param("globex", "session_acme", "/globex", id="to-globex-on-its-path"),
        pytest.param("globex", "session_globex", "/globex", id="to-globex-renamed"),
        pytest.param("globex", "session_globex", "/", id="to-globex-renamed-path-slash"),
        pytest.param("host", "session", "/", id="to-host-renamed"),
        pytest.param("host", "session_acme", "/", id="to-host-as-issued"),
    ],
)
def test_cookie_copied_in_the_client_is_rejected(
    app: Flask, case: Case, client: FlaskClient, target: str, name: str, path: str
) -> None:
    browse(client, case.by, "acme", "/login")
    host, prefix = where(case.by, "acme")
    issued_cookie = client.get_cookie("session_acme", domain=host, path=prefix or "/")
    assert issued_cookie is not None
    # Copied the way add_cookies in a browser would, onto the target's host.
    target_host, _ = where(case.by, target)
    client.set_cookie(name, issued_cookie.value, domain=target_host, path=path)
    assert browse(client, case.by, target, "/me").text == "anonymous"
    assert browse(client, case.by, "acme", "/me").text == "user-of-acme"


# -- Which cookie settings become the tenant's own -----------------------------


@pytest.mark.parametrize(
    ("case", "cookie", "path", "secure"),
    [
        pytest.param(Case(), "session_acme", "/acme", False, id="flask-defaults"),
        pytest.param(
            Case(host_config={"SESSION_COOKIE_NAME": "sid"}),
            "sid_acme",
            "/acme",
            False,
            id="host-name-copied",
        ),
        pytest.param(
            Case(host_config={"SESSION_COOKIE_PATH": "/"}),
            "session_acme",
            "/acme",
            False,
            id="host-path-copied",
        ),
        pytest.param(
            Case(host_config={"SESSION_COOKIE_NAME": "__Host-sid", "SESSION_COOKIE_SECURE": True}),
            "__Host-sid_acme",
            "/",
            True,
            id="host-prefix-keeps-path-slash",
        ),
        pytest.param(
            Case("subdomain", host_config={"SESSION_COOKIE_DOMAIN": "example.com"}),
            "session_acme",
            "/",
            False,
            id="host-domain-copied",
        ),
    ],
)
def test_settings_shared_with_the_host_become_the_tenants(
    app: Flask, case: Case, cookie: str, path: str, secure: bool
) -> None:
    response = visit(app, case.by, "acme", "/login")
    issued_cookie = issued(response)
    assert issued_cookie.name == cookie
    assert issued_cookie.attributes["path"] == path
    assert "domain" not in issued_cookie.attributes
    assert ("secure" in issued_cookie.attributes) is secure
    assert me(app, case.by, "acme", f"{cookie}={issued_cookie.value}") == "user-of-acme"


@pytest.mark.parametrize(
    ("host", "path", "cookie_path"),
    [
        pytest.param("example.com", "/acme/login", "/app/acme", id="path"),
        pytest.param("acme.example.com", "/login", "/app", id="subdomain"),
    ],
)
def test_cookie_path_is_the_script_root_under_a_mounted_site(
    app: Flask, host: str, path: str, cookie_path: str
) -> None:
    # The whole site served under /app (a server's SCRIPT_NAME): one app
    # serves both addresses, so the path is taken from each request.
    cookie = issued(call(app, path, host=host, script_name="/app"))
    assert (cookie.name, cookie.attributes["path"]) == ("session_acme", cookie_path)


class ServerSideSessions(SecureCookieSessionInterface):
    """Stands for a session extension's own interface."""


def _own_interface(tenant: Flask) -> None:
    tenant.session_interface = ServerSideSessions()


def _flask_interface(tenant: Flask) -> None:
    tenant.session_interface = SecureCookieSessionInterface()


def _config(**config: t.Any) -> t.Callable[[Flask], object]:
    return lambda tenant: tenant.config.update(config)


_own_domain = _config(SESSION_COOKIE_DOMAIN="globex.example.com")


@pytest.mark.parametrize(
    ("case", "name", "path", "domain", "salted"),
    [
        pytest.param(
            Case(setup={"globex": _own_interface}),
            "session",
            "/",
            None,
            False,
            id="own-interface",
        ),
        pytest.param(
            Case(setup={"globex": _flask_interface}),
            "session",
            "/",
            None,
            False,
            id="flask-interface-assigned",
        ),
        pytest.param(
            Case(setup={"globex": _config(SESSION_COOKIE_NAME="globex_sid")}),
            "globex_sid",
            "/globex",
            None,
            True,
            id="own-cookie-name",
        ),
        pytest.param(
            Case(setup={"globex": _config(SESSION_COOKIE_PATH="/")}),
            "session_globex",
            "/",
            None,
            True,
            id="own-cookie-path",
        ),
        pytest.param(
            Case("subdomain", setup={"globex": _own_domain}),
            "session_globex",
            "/",
            "globex.example.com",
            True,
            id="own-cookie-domain",
        ),
    ],
)
def test_tenant_settings_of_its_own_are_kept(
    app: Flask, case: Case, name: str, path: str, domain: str | None, salted: bool
) -> None:
    login(app, case.by, "acme")  # scoped, beside the tenant that chose
    globex = issued(visit(app, case.by, "globex", "/login"))
    assert (globex.name, globex.attributes["path"], globex.attributes.get("domain")) == (
        name,
        path,
        domain,
    )
    assert me(app, case.by, "globex", f"{globex.name}={globex.value}") == "user-of-globex"
    # A tenant left alone takes the host app's cookie, as Flask does; a
    # scoped one refuses it whatever its cookie is called.
    host = login(app, case.by, "host")
    taken = me(app, case.by, "globex", f"{name}={host.value}")
    assert taken == ("anonymous" if salted else "user-of-host")
    interface = app.extensions["sessions_test.tenants"]["globex"].session_interface
    assert isinstance(interface, TenantSessionInterface) is salted


@pytest.mark.parametrize(
    ("opt_out", "warned"),
    [
        pytest.param(False, True, id="own-interface"),
        pytest.param(True, False, id="flask-interface-assigned"),
    ],
)
def test_a_session_interface_of_its_own_is_named_in_a_warning_once(
    caplog: pytest.LogCaptureFixture, opt_out: bool, warned: bool
) -> None:
    # Left alone, a server-side session store may be shared by tenants: say
    # what to set, once per kind of interface (not per tenant built).
    class StoreSessions(SecureCookieSessionInterface):
        """A new class each run, as warnings are once per class."""

    host = make_host_app()
    for name in ("acme", "globex"):
        tenant = Flask(f"tenant_{name}")
        tenant.session_interface = SecureCookieSessionInterface() if opt_out else StoreSessions()
        scope_session(tenant, name, host, by="path")
    found = [m for r in caplog.records if "session interface of its own" in (m := r.getMessage())]
    assert len(found) == (1 if warned else 0)
    if warned:
        assert "'acme'" in found[0] and "StoreSessions" in found[0]
        assert "SESSION_KEY_PREFIX" in found[0]


@pytest.mark.parametrize(
    ("name", "cookie", "host_cookie"),
    [
        pytest.param("acme", "session_acme", "session", id="label"),
        pytest.param("xn--bcher-kva", "session_xn--bcher-kva", "session", id="punycode"),
        pytest.param("a.b_c~d", "session_a.b_c~d", "session", id="token-punctuation"),
        pytest.param("a b", "session_a%20b", "session", id="space"),
        pytest.param("a;b=c", "session_a%3Bb%3Dc", "session", id="separators"),
        pytest.param("50%", "session_50%25", "session", id="percent"),
        pytest.param("bücher", "session_b%C3%BCcher", "session", id="non-ascii"),
        # The host app's cookie is not the tenant's, nor is any other tenant's.
        pytest.param("acme", "session%5Facme", "session_acme", id="host-cookie-taken"),
        pytest.param("5Facme", "session_5Facme", "session_acme", id="no-other-tenants"),
    ],
)
def test_cookie_name_is_a_token_for_any_tenant_name(
    name: str, cookie: str, host_cookie: str
) -> None:
    tenant, host = Flask("tenant"), Flask("host")
    host.config["SESSION_COOKIE_NAME"] = host_cookie
    scope_session(tenant, name, host, by="path")
    assert tenant.config["SESSION_COOKIE_NAME"] == cookie
    # RFC 6265's cookie-name: an RFC 2616 token.
    assert re.fullmatch(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+", cookie)
    assert isinstance(tenant.session_interface, TenantSessionInterface)
    assert tenant.session_interface.salt == f"{SALT_PREFIX}path:{name}"


def test_only_flask_apps_with_flasks_own_sessions_are_scoped() -> None:
    class OwnSessions(Flask):
        session_interface = ServerSideSessions()

    own = OwnSessions("own")
    apps: dict[str, WSGIApplication] = {
        "acme": Flask("acme"),
        "plain": NamedApp("plain"),
        "own": own,
    }
    host = make_host_app(SECRET_KEY="k")
    Dispatch(host).path(apps.get)
    for name in apps:
        call(host, f"/{name}/")  # creates it
    assert type(Flask.session_interface) is SecureCookieSessionInterface  # not changed
    assert isinstance(t.cast(Flask, apps["acme"]).session_interface, TenantSessionInterface)
    assert type(own.session_interface) is ServerSideSessions
    assert own.config["SESSION_COOKIE_NAME"] == "session"
    assert call(host, "/plain/x").body == "plain|/plain|/x|plain"


@pytest.mark.parametrize(
    ("source", "target"),
    [
        pytest.param(("subdomain", "acme"), ("path", "acme"), id="subdomain-to-path"),
        pytest.param(("path", "acme"), ("subdomain", "acme"), id="path-to-subdomain"),
    ],
)
def test_same_named_tenants_of_two_factories_do_not_share_a_session(
    source: tuple[str, str], target: tuple[str, str]
) -> None:
    # Organisations by subdomain, unrelated blogs by path: acme.example.com
    # and example.com/acme/ are two tenants, though with one name and key.
    def factory(kind: str) -> t.Callable[[str], Flask]:
        def build(name: str) -> Flask:
            tenant = Flask(f"{kind}_{name}")
            tenant.config["SECRET_KEY"] = HOST_KEY
            add_login(tenant, f"{kind}-{name}")
            return tenant

        return build

    class Tenants:
        """Factories as bound methods: each attribute access makes a new one."""

        def subdomain(self, name: str) -> Flask:
            return factory("subdomain")(name)

        def path(self, name: str) -> Flask:
            return factory("path")(name)

    tenants = Tenants()
    host = make_host_app(SECRET_KEY=HOST_KEY)
    dispatch = Dispatch(host)
    dispatch.subdomain(tenants.subdomain)
    dispatch.path(tenants.path)
    with host.app_context():  # a warm-up, with a bound method made anew
        dispatch.registry.get("acme", tenants.path)
    stolen = issued(visit(host, *source, "/login"))
    own = issued(visit(host, *target, "/login"))
    assert stolen.name == own.name == "session_acme"  # one name: sent under it as is
    assert me(host, *target, f"{own.name}={own.value}") == f"user-of-{target[0]}-acme"
    assert me(host, *target, f"{stolen.name}={stolen.value}") == "anonymous"


def test_one_app_for_two_tenants_is_refused() -> None:
    shared = Flask("shared")
    shared.config["SECRET_KEY"] = "k"
    add_login(shared, "shared")
    host = make_host_app(SECRET_KEY="k")
    Dispatch(host).path(lambda name: shared)
    assert issued(call(host, "/acme/login")).name == "session_acme"
    # Scoped to acme, it would take acme's cookie at /globex/: refused instead.
    response = call(host, "/globex/me")
    assert (response.status, response.body) == (500, "site 500 page")
    with pytest.raises(RuntimeError, match="already scoped to tenant 'acme'"):
        scope_session(shared, "globex", host, by="path")


def test_an_app_built_again_for_the_same_tenant_is_kept_as_it_is() -> None:
    apps: dict[str, Flask] = {}

    def factory(name: str) -> Flask:
        if name not in apps:
            apps[name] = Flask(name)
            apps[name].config["SECRET_KEY"] = "k"
            add_login(apps[name], name)
        return apps[name]

    host = make_host_app(SECRET_KEY="k")
    dispatch = Dispatch(host)
    dispatch.path(factory)
    cookie = issued(call(host, "/acme/login"))
    interface = apps["acme"].session_interface
    with host.app_context():
        assert dispatch.evict("acme") == 1
    assert (
        call(host, "/acme/me", HTTP_COOKIE=f"{cookie.name}={cookie.value}").body == "user-of-acme"
    )
    assert apps["acme"].session_interface is interface
    assert apps["acme"].config["SESSION_COOKIE_NAME"] == "session_acme"


# -- The switch -----------------------------------------------------------------


def test_scoping_is_on_by_default() -> None:
    tenants: dict[str, Flask] = {}
    host = make_host_app(SECRET_KEY="k")
    Dispatch(host).path(lambda name: tenants.setdefault(name, Flask(name)))
    assert host.config["DISPATCH_SCOPE_SESSIONS"] is True
    call(host, "/acme/")
    assert isinstance(tenants["acme"].session_interface, TenantSessionInterface)


@pytest.mark.parametrize(
    "case",
    [
        pytest.param(Case("path", scope=False), id="path"),
        pytest.param(Case("subdomain", scope=False), id="subdomain"),
    ],
)
def test_switch_off_gives_back_flasks_sessions(app: Flask, case: Case) -> None:
    # The control: the replay that the tests above see refused is accepted
    # with scoping off, so those tests can fail.
    response = visit(app, case.by, "acme", "/login")
    cookie = issued(response)
    assert (cookie.name, cookie.attributes["path"]) == ("session", "/")
    for target in ("globex", "host"):
        assert me(app, case.by, target, f"session={cookie.value}") == "user-of-acme"
    for tenant in app.extensions["sessions_test.tenants"].values():
        assert tenant.session_interface is Flask.session_interface


# -- The code on docs/sessions.rst ---------------------------------------------

DOCS = Path(__file__).resolve().parent.parent / "docs" / "sessions.rst"


def code_blocks() -> list[str]:
    """The ``.. code-block:: python`` blocks of the page, dedented."""
    lines = DOCS.read_text(encoding="utf-8").splitlines()
    blocks = []
    for i, line in enumerate(lines):
        if line.strip() != ".. code-block:: python":
            continue
        indent = len(line) - len(line.lstrip()) + 4
        body = []
        for text in lines[i + 1 :]:
            if text.strip() and len(text) - len(text.lstrip()) < indent:
                break
            body.append(text)
        blocks.append(textwrap.dedent("\n".join(body)).strip() + "\n")
    return blocks


def run_block(index: int) -> dict[str, t.Any]:
    """Execute code block ``index`` of the page; return its namespace."""
    namespace: dict[str, t.Any] = {"__name__": "sessions_docs"}
    exec(compile(code_blocks()[index], f"{DOCS}:block{index}", "exec"), namespace)
    return namespace


def test_every_code_block_on_the_page_is_run() -> None:
    text = DOCS.read_text(encoding="utf-8")
    # Every block is a python code-block: no "::" literal blocks, no others.
    assert not re.search(r"::\s*$", text.replace(".. code-block:: python", ""), re.MULTILINE)
    assert len(code_blocks()) == 4  # one test_docs_block_* each, below


def _host_with(factory: t.Callable[[str], Flask], **config: t.Any) -> tuple[Flask, Dispatch]:
    """A host app with a login, whose path tenants ``factory`` builds, and
    its dispatch."""
    host = Flask("docs_host")
    host.config.update(SECRET_KEY=HOST_KEY, **config)
    add_login(host, "host")

    def tenant(name: str) -> Flask:
        app = factory(name)
        add_login(app, name)
        return app

    dispatch = Dispatch(host)
    dispatch.path(tenant)
    return host, dispatch


@pytest.mark.parametrize("scope", [pytest.param(True, id="scoped"), pytest.param(False, id="off")])
def test_docs_block_0_derived_tenant_keys(scope: bool) -> None:
    block = run_block(0)
    host, dispatch = _host_with(block["create_tenant"], DISPATCH_SCOPE_SESSIONS=scope)
    cookie = issued(call(host, "/acme/login"))
    sent = f"{cookie.name}={cookie.value}"
    assert call(host, "/acme/me", HTTP_COOKIE=sent).body == "user-of-acme"
    # The tenant's own key refuses another's cookie, even with scoping off ...
    assert call(host, "/globex/me", HTTP_COOKIE=f"session_globex={cookie.value}").body == (
        "anonymous"
    )
    # ... and the cookie of a deleted tenant in the next signup of its name.
    block["SIGNED_UP"]["acme"] = "2026-06-01T00:00:00.000000"
    with host.app_context():
        dispatch.evict("acme")
    assert call(host, "/acme/me", HTTP_COOKIE=sent).body == "anonymous"
    assert call(host, "/me", HTTP_COOKIE=f"session={cookie.value}").body == "anonymous"


def test_docs_block_1_switch_off() -> None:
    namespace = run_block(1)
    app: Flask = namespace["app"]
    tenants: dict[str, Flask] = {}

    def factory(name: str) -> Flask:
        tenants[name] = tenant = Flask(name)
        tenant.config["SECRET_KEY"] = app.config.get("SECRET_KEY") or "shared"
        add_login(tenant, name)
        return tenant

    namespace["dispatch"].path(factory)
    cookie = issued(call(app, "/acme/login"))
    assert (cookie.name, cookie.attributes["path"]) == ("session", "/")
    assert call(app, "/globex/me", HTTP_COOKIE=f"session={cookie.value}").body == "user-of-acme"
    assert tenants["acme"].session_interface is Flask.session_interface


def test_docs_block_2_one_tenant_left_alone() -> None:
    create_tenant = run_block(2)["create_tenant"]

    def factory(name: str) -> Flask:
        tenant: Flask = create_tenant(name) if name == "globex" else Flask(name)
        tenant.config["SECRET_KEY"] = HOST_KEY
        return tenant

    host, _ = _host_with(factory)
    assert issued(call(host, "/acme/login")).name == "session_acme"
    cookie = issued(call(host, "/globex/login"))
    assert (cookie.name, cookie.attributes["path"]) == ("session", "/")
    # Left alone, globex takes any cookie signed with the shared key.
    host_cookie = issued(call(host, "/login"))
    assert host_cookie.name == "session"
    assert call(host, "/globex/me", HTTP_COOKIE=f"session={host_cookie.value}").body == (
        "user-of-host"
    )


def test_docs_block_3_single_sign_on(monkeypatch: pytest.MonkeyPatch) -> None:
    app: Flask = run_block(3)["app"]
    client = app.test_client()
    assert client.get("/go/acme").status_code == 401  # signed out
    client.post("/login", data={"user": "alice"})
    assert client.get("/").text == "host: alice"
    assert client.get("/go/nobody").status_code == 404
    go = client.get("/go/acme")
    assert go.status_code == 302 and go.location.startswith("/acme/sso?ticket=")
    ticket = go.location.partition("=")[2]
    landed = client.get(go.location, follow_redirects=True)
    assert landed.request.path == "/acme/" and landed.text == "acme: alice"
    assert client.get_cookie("session_acme", path="/acme") is not None
    assert client.get("/globex/").text == "globex: anonymous"
    # A ticket for acme is no good at globex, forged or late is no good anywhere.
    assert client.get(f"/globex/sso?ticket={ticket}").status_code == 400
    assert client.get(f"/acme/sso?ticket={ticket[:-2]}xx").status_code == 400
    assert client.get("/acme/sso").status_code == 400
    late = time.time() + 61
    monkeypatch.setattr("itsdangerous.timed.time", types.SimpleNamespace(time=lambda: late))
    other = app.test_client()
    assert other.get(f"/acme/sso?ticket={ticket}").status_code == 400
    assert other.get("/acme/").text == "acme: anonymous"
