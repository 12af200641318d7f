"""A Flask tenant returned inside WSGI middleware (:mod:`flask_dispatch.tenant_apps`):
found through the layers, and treated like a Flask tenant returned as it is,
by links, signals, logs and the CLI. (Its session: ``test_sessions.py``.)"""

from __future__ import annotations

import logging
import typing as t

import pytest
from flask import Flask, current_app
from werkzeug.middleware.proxy_fix import ProxyFix

from flask_dispatch import Dispatch, tenant_evicted
from flask_dispatch.tenant_apps import flask_app_in, middleware_layers

from .conftest import WRAPPED_FLASK_APPS, KeptAsApplication, NamedApp, call, make_host_app

if t.TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

Wrap = t.Callable[[Flask], "WSGIApplication"]


class Cycle:
    """Middleware whose ``app`` is itself."""

    def __init__(self) -> None:
        self.app = self


class RaisingApp:
    """A plain WSGI app whose ``app`` property raises (an unbound proxy, say)."""

    @property
    def app(self) -> object:
        raise RuntimeError("working outside of context")

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> list[bytes]:
        start_response("200 OK", [])
        return [b"raising"]


class WithTenant:
    """Middleware made per tenant around one shared app."""

    def __init__(self, app: WSGIApplication, name: str) -> None:
        self.app, self.name = app, name

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> t.Any:
        environ["tenant"] = self.name
        return self.app(environ, start_response)


@pytest.mark.parametrize("wrap", [pytest.param(lambda app: app, id="itself"), *WRAPPED_FLASK_APPS])
def test_the_flask_app_is_found_through_the_layers(wrap: Wrap) -> None:
    app = Flask("tenant")
    assert flask_app_in(wrap(app)) is app


@pytest.mark.parametrize(
    "tenant",
    [
        pytest.param(NamedApp("plain"), id="plain-wsgi-app"),
        pytest.param(KeptAsApplication(NamedApp("plain")), id="middleware-around-a-plain-app"),
        pytest.param(NamedApp("plain").__call__, id="method-of-a-plain-app"),
        pytest.param(Cycle(), id="middleware-cycle"),
        pytest.param(RaisingApp(), id="attribute-that-raises"),
        pytest.param(None, id="none"),
    ],
)
def test_no_flask_app_is_found_where_there_is_none(tenant: object) -> None:
    assert flask_app_in(tenant) is None


def proxy_fix_in_middleware() -> tuple[object, list[object]]:
    app = Flask("host")
    inner = ProxyFix(app.wsgi_app)
    outer = KeptAsApplication(inner)
    return outer, [outer, inner, app.wsgi_app]


def plain_app() -> tuple[object, list[object]]:
    plain = NamedApp("plain")
    return plain, [plain]


def middleware_around_another_flask_app() -> tuple[object, list[object]]:
    other = Flask("other")
    around = KeptAsApplication(other)
    return around, [around, other]  # what is inside another app is that app's


@pytest.mark.parametrize(
    "build",
    [
        pytest.param(proxy_fix_in_middleware, id="down-to-the-apps-own-wsgi-app"),
        pytest.param(plain_app, id="a-plain-app-is-one-layer"),
        pytest.param(middleware_around_another_flask_app, id="not-into-a-flask-app"),
    ],
)
def test_middleware_layers(build: t.Callable[[], tuple[object, list[object]]]) -> None:
    top, layers = build()
    assert list(middleware_layers(top)) == layers


def test_middleware_layers_end_in_a_cycle() -> None:
    assert 1 < len(list(middleware_layers(Cycle()))) < 100


def flask_tenant(name: str) -> Flask:
    tenant = Flask(f"wrapped_tenant_{name}")
    tenant.config["TENANT"] = name

    @tenant.get("/notes/<int:note>")
    def note(note: int) -> str:
        current_app.logger.warning("note %d", note)
        return f"{name} note {note}"

    return tenant


def site(wrap: Wrap) -> tuple[Flask, Dispatch]:
    app = make_host_app(SERVER_NAME="example.com")
    dispatch = Dispatch(app)
    dispatch.subdomain(lambda name: wrap(flask_tenant(name)))
    return app, dispatch


@pytest.mark.parametrize("wrap", WRAPPED_FLASK_APPS)
def test_links_logs_and_signals_treat_it_as_a_flask_tenant(
    wrap: Wrap, caplog: pytest.LogCaptureFixture
) -> None:
    app, dispatch = site(wrap)
    with caplog.at_level(logging.WARNING, logger="wrapped_tenant_acme"):
        response = app.test_client().get("http://acme.example.com/notes/3")
    assert response.text == "acme note 3"
    [record] = [r for r in caplog.records if r.name == "wrapped_tenant_acme"]
    assert record.tenant == "acme"  # type: ignore[attr-defined]

    with app.app_context():
        assert dispatch.url_for("acme", "note", note=5) == "http://acme.example.com/notes/5"
        seen: list[object] = []

        def on_evicted(sender: Flask, **extra: t.Any) -> None:
            seen.append(current_app.config.get("TENANT"))

        with tenant_evicted.connected_to(on_evicted, app):
            dispatch.evict("acme")
    assert seen == ["acme"]  # in the tenant's own app context


@pytest.mark.parametrize("wrap", WRAPPED_FLASK_APPS)
def test_cli_commands_reach_the_flask_app_inside(wrap: Wrap) -> None:
    app, _ = site(wrap)
    runner = app.test_cli_runner()
    routes = runner.invoke(args=["dispatch", "routes", "acme"], catch_exceptions=False)
    assert routes.exit_code == 0, routes.output
    assert "/notes/<int:note>" in routes.output
    check = runner.invoke(
        args=["dispatch", "check", "--build", "http://acme.example.com/notes/3"],
        catch_exceptions=False,
    )
    assert check.exit_code == 0, check.output
    assert "'note' (rule '/notes/<int:note>')" in check.output


@pytest.mark.parametrize(
    "wrap",
    [
        pytest.param(lambda app, name: WithTenant(app.wsgi_app, name), id="middleware"),
        pytest.param(lambda app, name: app.wsgi_app, id="its-wsgi-app"),
    ],
)
def test_one_app_inside_per_tenant_middleware_serves_every_tenant(
    wrap: t.Callable[[Flask, str], WSGIApplication], caplog: pytest.LogCaptureFixture
) -> None:
    # Middleware made per tenant around one shared app: not an error, as a
    # bare app returned for two names is. Its session stays scoped to its
    # first tenant (not the host app's), and a warning says so once.
    shared = Flask("shared")
    shared.secret_key = "k"
    shared.add_url_rule("/", "index", lambda: "shared")
    app = make_host_app(SERVER_NAME="example.com", SECRET_KEY="k")
    Dispatch(app).subdomain(lambda name: wrap(shared, name))
    client = app.test_client()
    for name in ("acme", "globex", "initech"):
        assert client.get(f"http://{name}.example.com/").text == "shared"
    assert caplog.text.count("serves tenants") == 1
    assert "serves tenants 'acme' and 'globex'" in caplog.text
    assert getattr(shared.session_interface, "tenant", None) == "acme"


@pytest.mark.parametrize(
    "wrap",
    [
        pytest.param(lambda app: app, id="the-host-app"),
        pytest.param(lambda app: app.wsgi_app, id="its-wsgi-app"),
        pytest.param(ProxyFix, id="inside-middleware"),
    ],
)
@pytest.mark.parametrize(
    "also_path", [pytest.param(False, id="subdomain"), pytest.param(True, id="both")]
)
@pytest.mark.parametrize(
    "proxy_fix_first", [pytest.param(False, id="dispatch-outside"), pytest.param(True, id="inside")]
)
def test_a_subdomain_factory_that_returns_the_host_app_fails(
    wrap: t.Callable[[Flask], WSGIApplication],
    also_path: bool,
    proxy_fix_first: bool,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Its requests would come back to the same tenant, without end, also
    when the same function is the path factory, and when dispatch went
    inside a ProxyFix already there."""
    app = make_host_app()
    if proxy_fix_first:
        app.wsgi_app = ProxyFix(app.wsgi_app)  # type: ignore[method-assign]
    dispatch = Dispatch(app)

    def factory(name: str) -> WSGIApplication:
        return wrap(app)

    dispatch.subdomain(factory)
    if also_path:
        dispatch.path(factory)
    assert call(app, host="acme.example.com").body == "site 500 page"
    assert "returned the host app" in caplog.text
    with app.app_context():
        assert "acme" not in dispatch.registry


def test_the_host_app_inside_middleware_is_no_tenant() -> None:
    app = make_host_app()
    host_interface = app.session_interface
    Dispatch(app).path(lambda name: ProxyFix(app))
    assert call(app, "/acme/login").body == "host login"  # the host app, one level down
    assert app.session_interface is host_interface
