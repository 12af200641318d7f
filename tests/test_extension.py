"""The extension object: init_app, decorators, registry access, mounts and
signals."""

from __future__ import annotations

import functools
import threading
import time
import typing as t
from contextvars import ContextVar

import pytest
from flask import Flask
from werkzeug.exceptions import NotFound
from werkzeug.local import LocalProxy
from werkzeug.wrappers import Request, Response

from flask_dispatch import Dispatch, DispatchState, tenant_created, tenant_evicted

from .conftest import NamedApp, RecordingFactory, call, make_host_app

if t.TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment


def test_state_in_extensions_and_no_self_app(app: Flask) -> None:
    dispatch = Dispatch(app)
    state = app.extensions["dispatch"]
    assert isinstance(state, DispatchState) and state.extension is dispatch
    assert not hasattr(dispatch, "app")


def test_init_app_puts_the_middleware_in_front_of_wsgi_app(app: Flask) -> None:
    before = app.wsgi_app
    Dispatch(app)
    middleware: t.Any = app.extensions["dispatch"].middleware
    assert middleware.wsgi_app == before
    assert app.wsgi_app is middleware
    assert call(app, host="example.com").body == "host index"


def test_second_init_app_raises(app: Flask) -> None:
    dispatch = Dispatch(app)
    with pytest.raises(RuntimeError, match="already been registered"):
        dispatch.init_app(app)
    with pytest.raises(RuntimeError, match="already been registered"):
        Dispatch(app)


def test_one_instance_serves_two_apps() -> None:
    first, second = make_host_app(), make_host_app(DISPATCH_DOMAIN="other.test")
    dispatch = Dispatch()
    dispatch.init_app(first)
    dispatch.init_app(second)
    factory = RecordingFactory()
    dispatch.subdomain(factory)
    assert call(first, host="acme.example.com").body.startswith("acme|")
    assert call(second, host="acme.example.com").body == "host index"
    assert call(second, host="beta.other.test").body.startswith("beta|")
    with first.app_context():
        assert list(dispatch.registry) == ["acme"]
    with second.app_context():
        assert list(dispatch.registry) == ["beta"]


@pytest.mark.parametrize(
    "kind", [pytest.param("subdomain", id="subdomain"), pytest.param("path", id="path")]
)
def test_decorators_return_function_before_and_after_init_app(kind: str) -> None:
    def factory(name: str) -> WSGIApplication | None:
        return None

    early = Dispatch()
    assert getattr(early, kind)(factory) is factory
    early.init_app(make_host_app())
    late = Dispatch(make_host_app())
    assert getattr(late, kind)(factory) is factory
    assert getattr(late, f"{kind}_factory") is factory


def test_registry_needs_an_app_context() -> None:
    dispatch = Dispatch(make_host_app())
    with pytest.raises(RuntimeError, match="application context"):
        dispatch.registry


def test_registry_of_unregistered_app() -> None:
    dispatch = Dispatch(make_host_app())
    with Flask("other").app_context(), pytest.raises(RuntimeError, match="forget to call"):
        dispatch.registry


def test_evict_makes_signup_live(app: Flask) -> None:
    dispatch = Dispatch(app)
    known: set[str] = set()
    factory = RecordingFactory(known=known)
    dispatch.subdomain(factory)
    assert call(app, host="acme.example.com").status == 404
    known.add("acme")
    assert call(app, host="acme.example.com").status == 404  # miss remembered
    with app.app_context():
        dispatch.evict("acme")
    assert call(app, host="acme.example.com").status == 200
    assert factory.calls == ["acme", "acme"]


def test_signals(app: Flask) -> None:
    app.config["DISPATCH_MAX_INSTANCES"] = 1
    app.extensions.clear()
    dispatch = Dispatch(app)
    dispatch.subdomain(RecordingFactory())
    created: list[tuple[Flask, str, str]] = []
    evicted: list[tuple[Flask, str, str, str]] = []

    def on_created(sender: Flask, name: str, tenant_app: NamedApp) -> None:
        created.append((sender, name, tenant_app.name))

    def on_evicted(sender: Flask, name: str, tenant_app: NamedApp, reason: str) -> None:
        evicted.append((sender, name, tenant_app.name, reason))

    with tenant_created.connected_to(on_created, app), tenant_evicted.connected_to(on_evicted, app):
        call(app, host="acme.example.com")
        call(app, host="acme.example.com")
        call(app, host="globex.example.com")
        with app.app_context():
            dispatch.evict("globex")
    assert created == [(app, "acme", "acme"), (app, "globex", "globex")]
    assert evicted == [(app, "acme", "acme", "capacity"), (app, "globex", "globex", "evict")]


def test_factory_runs_in_host_app_context(app: Flask) -> None:
    dispatch = Dispatch(app)
    app.config["TENANTS"] = {"acme"}
    seen = []

    @dispatch.subdomain
    def factory(name: str) -> WSGIApplication | None:
        from flask import current_app

        seen.append(current_app.name)
        return NamedApp(name) if name in current_app.config["TENANTS"] else None

    assert call(app, host="acme.example.com").status == 200
    assert seen == ["host"]


def test_factory_may_return_http_exception(app: Flask) -> None:
    dispatch = Dispatch(app)
    factory_calls = []

    @dispatch.subdomain
    def factory(name: str) -> WSGIApplication | None:
        factory_calls.append(name)
        return NotFound()

    response = call(app, host="ghost.example.com")
    # The site's own 404 page, and nothing held as an instance.
    assert (response.status, response.body) == (404, "site 404 page")
    with app.app_context():
        assert len(dispatch.registry) == 0 and dispatch.registry.stats().misses == 1


@pytest.mark.parametrize(
    ("prefix", "error"),
    [
        pytest.param("backend", ValueError, id="relative"),
        pytest.param("/", ValueError, id="root"),
    ],
)
def test_mount_rejects_bad_prefix(prefix: str, error: type[Exception]) -> None:
    with pytest.raises(error):
        Dispatch().mount(prefix, NamedApp("x"))


class _ClassApp:
    """A class as a WSGI app (PEP 3333): calling it is the request."""

    def __init__(self, environ: WSGIEnvironment, start_response: StartResponse) -> None:
        start_response("200 OK", [])
        self.body = [b"class"]

    def __iter__(self) -> t.Iterator[bytes]:
        return iter(self.body)


@Request.application
def _request_app(request: Request) -> Response:
    return Response("request app")


@pytest.mark.parametrize(
    ("wsgi_app", "body"),
    [
        pytest.param(_ClassApp, "class", id="a-class"),
        # Its wrapper takes (environ, start_response); what it wraps, a request.
        pytest.param(_request_app, "request app", id="request-application"),
        pytest.param(functools.partial(NamedApp("x").__call__), "x|/legacy|/|None", id="a-partial"),
    ],
)
def test_mount_takes_any_wsgi_callable(wsgi_app: WSGIApplication, body: str) -> None:
    app = make_host_app()
    Dispatch(app).mount("/legacy", wsgi_app)
    assert call(app, "/legacy/").body == body


def test_mount_takes_a_proxy_that_cannot_tell_its_signature_yet() -> None:
    app_of_this_context: ContextVar[WSGIApplication] = ContextVar("app")
    Dispatch().mount("/lazy", LocalProxy(app_of_this_context))


def test_mount_rejects_duplicate_and_non_callable() -> None:
    dispatch = Dispatch()
    dispatch.mount("/backend", NamedApp("x"))
    with pytest.raises(ValueError, match="already mounted"):
        dispatch.mount("/backend/", NamedApp("y"))
    for not_an_app in ("not an app", lambda: "hello"):
        with pytest.raises(TypeError, match="it is not a WSGI app"):
            dispatch.mount("/other", not_an_app)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        pytest.param("acme", True, id="label"),
        pytest.param("Acme", False, id="capital-hosts-are-lowercased"),
        pytest.param("a" * 64, False, id="label-too-long-for-a-host"),
        pytest.param("eu", False, id="makes-another-dispatch-domain"),
        pytest.param("x.eu", False, id="falls-under-another-dispatch-domain"),
        pytest.param("x.us", True, id="dotted"),
    ],
)
def test_is_tenant_name_by_subdomain_agrees_with_routing(name: str, expected: bool) -> None:
    app = make_host_app(
        DISPATCH_DOMAIN=["example.com", "eu.example.com"],
        DISPATCH_NAME_PATTERN=r"[A-Za-z0-9]+(?:\.[A-Za-z0-9]+)*",
    )
    dispatch = Dispatch(app)
    factory = RecordingFactory(known={name})
    dispatch.subdomain(factory)
    with app.app_context():
        assert dispatch.is_tenant_name(name, "subdomain") is expected
    # A request for that name reaches the factory exactly when it may be one
    # (for "Acme", the factory is asked for "acme").
    call(app, host=f"{name}.example.com")
    assert (name in factory.calls) is expected


def test_methods_refuse_another_dispatchs_app() -> None:
    mine, other = Dispatch(make_host_app()), Dispatch()
    app = make_host_app()
    other.init_app(app)
    with app.app_context():
        assert other.registry is not None
        for use in (
            lambda: mine.registry,
            lambda: mine.is_tenant_name("acme"),
            lambda: mine.tenant_url("acme"),
        ):
            with pytest.raises(RuntimeError, match="another 'Dispatch' instance"):
                use()


def test_a_factory_registered_while_the_router_is_built_is_not_lost() -> None:
    # The router is built at the first request; a registration meanwhile must
    # still be seen from the next request on.
    app = make_host_app()
    dispatch = Dispatch(app)
    state = app.extensions["dispatch"]
    building, registered = threading.Event(), threading.Event()
    build = state.current_router

    def slow_build() -> t.Any:
        router = build()  # from what is registered now
        building.set()
        assert registered.wait(10)
        return router

    state.current_router = slow_build
    first = threading.Thread(target=call, args=(app, "/acme/x"))
    first.start()
    assert building.wait(10)
    factory = RecordingFactory(known={"acme"})
    registering = threading.Thread(target=dispatch.path, args=(factory,))
    registering.start()
    time.sleep(0.1)  # the registration now waits for the build, or is lost
    registered.set()
    first.join(10)
    registering.join(10)
    state.current_router = build
    assert call(app, "/acme/x").status == 200
    assert factory.calls == ["acme"]


@pytest.mark.parametrize(
    ("kinds", "name", "by", "expected"),
    [
        pytest.param(("subdomain",), "status", None, True, id="subdomain-only-site-mount-name"),
        pytest.param(("path",), "status", None, False, id="path-only-site-mount-name"),
        pytest.param(("subdomain", "path"), "status", None, False, id="both-must-suit"),
        pytest.param(("subdomain", "path"), "status", "subdomain", True, id="by-subdomain"),
        pytest.param(("subdomain", "path"), "acme", None, True, id="free-name"),
        pytest.param(("subdomain", "path"), "www", "subdomain", False, id="reserved"),
    ],
)
def test_is_tenant_name_checks_the_kinds_registered(
    kinds: tuple[str, ...], name: str, by: t.Any, expected: bool
) -> None:
    # /status is a mount: no path tenant can be called "status".
    app = make_host_app()
    dispatch = Dispatch(app)
    for kind in kinds:
        getattr(dispatch, kind)(RecordingFactory())
    dispatch.mount("/status", NamedApp("status"))
    with app.app_context():
        assert dispatch.is_tenant_name(name, by) is expected
        with pytest.raises(ValueError, match="'subdomain' or 'path', not 'paths'"):
            dispatch.is_tenant_name(name, "paths")  # type: ignore[arg-type]
