"""Where dispatch meets Flask: HTTP errors from factories, the contexts
signals run in, the host app's own URL space, evict() from anywhere, error
pages, ProxyFix in either place, and idle expiry without traffic."""

from __future__ import annotations

import gc
import io
import logging
import threading
import time
import typing as t
import weakref

import pytest
from flask import (
    Blueprint,
    Flask,
    Response,
    abort,
    current_app,
    g,
    render_template_string,
    request,
    url_for,
)
from werkzeug.exceptions import Forbidden, Gone, HTTPException, NotFound
from werkzeug.middleware.dispatcher import DispatcherMiddleware
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.test import create_environ
from werkzeug.wsgi import FileWrapper

from flask_dispatch import Dispatch, TenantFactoryError, tenant_created, tenant_evicted

from .conftest import (
    KeptAsApplication,
    NamedApp,
    RecordingFactory,
    call,
    make_host_app,
    run_workers,
    wait_for,
    waiting_herd,
)
from .test_docs_snippets import rst_blocks

if t.TYPE_CHECKING:
    from collections.abc import Iterable, Iterator
    from pathlib import Path

    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment


def raises_abort(name: str) -> WSGIApplication | None:
    abort(404)


def raises_not_found(name: str) -> WSGIApplication | None:
    raise NotFound(f"no tenant {name}")


def returns_forbidden(name: str) -> WSGIApplication | None:
    return Forbidden()


def first_or_404(name: str) -> WSGIApplication | None:
    from flask_sqlalchemy import SQLAlchemy

    directory = Flask("directory")
    directory.config["SQLALCHEMY_DATABASE_URI"] = "sqlite://"
    db = SQLAlchemy(directory)
    with directory.app_context():
        db.first_or_404(db.select(db.literal(1)).where(db.false()))
    return None


# 1. An HTTPException from a factory is that request's answer, and is
# remembered like a miss.
@pytest.mark.parametrize(
    ("factory", "status"),
    [
        pytest.param(raises_abort, 404, id="abort-404"),
        pytest.param(raises_not_found, 404, id="raise-not-found"),
        pytest.param(returns_forbidden, 403, id="return-forbidden"),
        pytest.param(first_or_404, 404, id="flask-sqlalchemy-first-or-404"),
    ],
)
def test_http_error_from_factory_is_the_answer_and_remembered(
    factory: t.Callable[[str], WSGIApplication | None], status: int
) -> None:
    app = make_host_app(DISPATCH_MAX_WAITING=64)
    calls: list[str] = []
    release = threading.Event()

    def slow(name: str) -> WSGIApplication | None:
        calls.append(name)
        assert release.wait(10)
        return factory(name)

    Dispatch(app).subdomain(slow)
    statuses: list[int] = []

    def work(i: int) -> None:
        statuses.append(call(app, host="acme.example.com").status)

    herd = waiting_herd(app, "acme", 8, work)
    release.set()
    herd.join(30)
    # The request that ran it and every request that waited on it.
    assert statuses == [status] * 8
    for _ in range(20):
        assert call(app, host="acme.example.com").status == status
    assert calls == ["acme"]  # remembered for DISPATCH_MISS_TTL


def test_remembered_http_error_does_not_keep_requests_alive() -> None:
    app = make_host_app()
    module_level = NotFound()  # one instance, as a module-level constant would be

    @Dispatch(app).subdomain
    def factory(name: str) -> WSGIApplication | None:
        raise module_level

    class Marker:
        pass

    alive: list[weakref.ref[Marker]] = []

    @app.before_request
    def mark() -> None:
        marker = Marker()
        request.environ["test.marker"] = marker
        alive.append(weakref.ref(marker))

    for _ in range(30):
        assert call(app, host="acme.example.com").status == 404
    gc.collect()
    assert [ref for ref in alive if ref() is not None] == []
    assert module_level.__traceback__ is None or len(_frames(module_level)) < 10


def _page(tmp_path: Path) -> t.IO[bytes]:
    page = tmp_path / "suspended.html"
    page.write_bytes(b"<h1>Suspended</h1>")
    return page.open("rb")


def _slowly() -> Iterator[bytes]:
    """A body that takes a while: requests reading it at once would collide."""
    for part in (b"<h1>", b"Suspended", b"</h1>"):
        time.sleep(0.01)
        yield part


class TemplatePage(Response):
    """A response class whose constructor takes other arguments."""

    def __init__(self, template: str) -> None:
        super().__init__(template.replace("{title}", "Suspended"))


@pytest.mark.parametrize(
    "page",
    [
        pytest.param(lambda tmp_path: Response(_page(tmp_path)), id="file"),
        pytest.param(
            lambda tmp_path: Response(FileWrapper(_page(tmp_path)), direct_passthrough=True),
            id="file-passed-through",
        ),
        pytest.param(lambda tmp_path: Response(iter([b"<h1>", b"Suspended</h1>"])), id="iterator"),
        pytest.param(lambda tmp_path: Response(_slowly()), id="slow-generator"),
        pytest.param(lambda tmp_path: Response("<h1>Suspended</h1>"), id="text"),
        pytest.param(lambda tmp_path: TemplatePage("<h1>{title}</h1>"), id="own-constructor"),
    ],
)
@pytest.mark.parametrize("how", ["raise", "return"])
def test_remembered_response_is_whole_for_every_request(
    tmp_path: Path, page: t.Callable[[Path], Response], how: str
) -> None:
    """A factory's ``abort(Response(...))`` answers every request waiting
    for the creation, and every later one while it is remembered, though a
    file or iterator body can be read only once."""
    app = make_host_app(DISPATCH_MAX_WAITING=64)
    calls: list[str] = []
    release = threading.Event()

    @Dispatch(app).subdomain
    def factory(name: str) -> WSGIApplication | None:
        calls.append(name)
        assert release.wait(10)
        response = page(tmp_path)
        response.status_code = 410
        error = HTTPException(response=response)
        if how == "return":
            return t.cast("WSGIApplication", error)
        raise error

    answers: list[tuple[int, str]] = []

    def work(i: int) -> None:
        response = call(app, host="acme.example.com")
        answers.append((response.status, response.body))

    herd = waiting_herd(app, "acme", 6, work)
    release.set()
    herd.join(30)
    for _ in range(3):
        work(0)
    assert answers == [(410, "<h1>Suspended</h1>")] * 9
    assert calls == ["acme"]


def test_a_remembered_response_is_closed_once() -> None:
    """Its close callbacks run once, when it is read, as they would for the
    one request of a view that aborts with it; and none that a request adds
    to its copy stays with the remembered one."""
    app = make_host_app()
    closed: list[str] = []

    @Dispatch(app).subdomain
    def factory(name: str) -> WSGIApplication | None:
        response = Response(iter([b"gone"]), status=410)
        response.call_on_close(lambda: closed.append(name))
        raise Gone(response=response)

    @app.errorhandler(410)
    def gone(error: HTTPException) -> Response:
        response = t.cast(Response, error.response)
        response.call_on_close(lambda: closed.append("handler"))
        response.headers.add("X-Handled", "yes")
        return response

    client = app.test_client()
    for _ in range(4):
        with client.get("/", headers={"Host": "acme.example.com"}) as response:
            page, handled = response.get_data(as_text=True), response.headers.getlist("X-Handled")
            assert (page, handled) == ("gone", ["yes"])
    assert closed == ["acme", "handler", "handler", "handler", "handler"]


def _frames(error: BaseException) -> list[t.Any]:
    frames, tb = [], error.__traceback__
    while tb is not None:
        frames.append(tb.tb_frame)
        tb = tb.tb_next
    return frames


@pytest.mark.parametrize(
    ("answer", "logged"),
    [
        pytest.param("not an app", "not a WSGI app", id="not-callable"),
        pytest.param(
            lambda: "hello", "not a WSGI app", id="callable-without-environ-and-start-response"
        ),
        pytest.param(lambda environ: "hello", "not a WSGI app", id="callable-with-one-argument"),
        # Bound to the host app only while the factory runs.
        pytest.param(current_app, "Working outside of application context", id="current-app"),
    ],
)
def test_factory_returning_not_an_app_is_a_logged_500(
    caplog: pytest.LogCaptureFixture, answer: object, logged: str
) -> None:
    app = make_host_app()
    dispatch = Dispatch(app)
    dispatch.subdomain(lambda name: answer)  # type: ignore[type-var]
    assert call(app, host="acme.example.com").body == "site 500 page"
    assert "tenant 'acme'" in caplog.text and logged in caplog.text
    with app.app_context():
        assert len(dispatch.registry) == 0


# 2. Signals run where receivers need them. No context is pushed by the
# test: raw WSGI calls, as a server makes them.
def test_created_receiver_runs_in_the_host_app_context() -> None:
    # Not the ``app`` fixture: pytest-flask pushes a context for tests that
    # use it, which would hide a missing one.
    app = make_host_app()
    Dispatch(app).subdomain(RecordingFactory())
    seen: list[str] = []

    def receiver(sender: Flask, name: str, tenant_app: WSGIApplication) -> None:
        seen.append(current_app.name)

    with tenant_created.connected_to(receiver, app):
        assert call(app, host="acme.example.com").status == 200
    assert seen == ["host"]


@pytest.mark.parametrize(
    "evict",
    [
        pytest.param(lambda app, d: call(app, host="b.example.com"), id="capacity"),
        pytest.param(lambda app, d: d.evict("a"), id="evict-outside-any-context"),
    ],
)
def test_evicted_receiver_runs_in_host_and_tenant_contexts(
    evict: t.Callable[[Flask, Dispatch], object],
) -> None:
    app = make_host_app(DISPATCH_MAX_INSTANCES=1)
    dispatch = Dispatch(app)

    @dispatch.subdomain
    def factory(name: str) -> WSGIApplication:
        tenant = Flask(f"tenant_{name}")
        tenant.config["OWNER"] = name
        return tenant

    seen: list[tuple[str, str]] = []

    def receiver(sender: Flask, name: str, tenant_app: Flask, reason: str) -> None:
        seen.append((current_app.name, current_app.config["OWNER"]))

    assert call(app, host="a.example.com").status == 404  # the tenant has no routes
    with tenant_evicted.connected_to(receiver, app):
        evict(app, dispatch)
    assert seen == [("tenant_a", "a")]


def test_quickstart_dispose_receiver_with_flask_sqlalchemy(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from flask_sqlalchemy import SQLAlchemy
    from sqlalchemy import event

    app = make_host_app(DISPATCH_MAX_INSTANCES=1)
    dispatch = Dispatch(app)
    closed: list[str] = []  # tenants whose pooled connection was closed

    @dispatch.path
    def tenant_for_prefix(name: str) -> WSGIApplication:
        tenant = Flask(f"tenant_{name}")
        tenant.config["SQLALCHEMY_DATABASE_URI"] = f"sqlite:///{tmp_path / name}.db"
        db = SQLAlchemy(tenant)

        @tenant.route("/count")
        def count() -> str:
            event.listen(db.engine, "close", lambda *args: closed.append(name))
            return str(db.session.execute(db.select(db.literal(1))).scalar())

        return ProxyFix(tenant) if name == "proxied" else tenant

    # The quickstart's receiver, run from the page.
    namespace: dict[str, t.Any] = {}
    exec(compile(rst_blocks("quickstart.rst")[2], "<quickstart>", "exec"), namespace)
    try:
        assert call(app, "/a/count").body == "1"
        assert call(app, "/proxied/count").body == "1"  # evicts a: capacity
        with app.app_context():
            dispatch.evict("proxied")
    finally:
        tenant_evicted.disconnect(namespace["close_tenant"])
    assert closed == ["a", "proxied"]
    assert "receiver failed" not in caplog.text


def test_a_tenant_created_receiver_that_raises_fails_the_creation_and_says_so() -> None:
    app = make_host_app(TESTING=True)
    dispatch = Dispatch(app)
    factory = RecordingFactory()
    dispatch.subdomain(factory)

    def refuse(sender: Flask, name: str, **extra: t.Any) -> None:
        raise ValueError("no quota left")

    with tenant_created.connected_to(refuse, app), pytest.raises(TenantFactoryError) as caught:
        call(app, host="acme.example.com")
    assert str(caught.value) == "Creating tenant 'acme' failed."
    cause = caught.value.__cause__
    assert isinstance(cause, ValueError)
    assert cause.__notes__ == [
        "flask_dispatch: raised by a tenant_created receiver for tenant 'acme'"
    ]
    assert factory.calls == ["acme"]


@pytest.mark.parametrize(
    "through",
    [pytest.param("request", id="request"), pytest.param("command", id="flask-dispatch-command")],
)
def test_a_tenant_created_receiver_that_raises_is_followed_by_tenant_evicted(
    through: str,
) -> None:
    # A receiver opened something for the app, then raised: it must hear
    # that the app is let go, or the app's resources leak. (Not two
    # receivers, one that opens and one that raises: blinker calls them in
    # no set order.)
    app = make_host_app(TESTING=True)
    dispatch = Dispatch(app)
    dispatch.subdomain(RecordingFactory())
    opened: list[object] = []
    released: list[tuple[object, str]] = []

    def open_then_refuse(sender: Flask, name: str, tenant_app: object) -> None:
        opened.append(tenant_app)
        raise ValueError("no quota left")

    def release(sender: Flask, name: str, tenant_app: object, reason: str) -> None:
        released.append((tenant_app, reason))

    with (
        tenant_created.connected_to(open_then_refuse, app),
        tenant_evicted.connected_to(release, app),
    ):
        for _ in range(2):
            if through == "request":
                with pytest.raises(TenantFactoryError):
                    call(app, host="acme.example.com")
            else:
                result = app.test_cli_runner().invoke(args=["dispatch", "routes", "acme"])
                assert result.exit_code == 1
    assert len(opened) == 2
    assert released == [(app_, "evict") for app_ in opened]
    with app.app_context():
        assert len(dispatch.registry) == 0


def test_every_tenant_evicted_receiver_runs_when_one_fails(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = make_host_app()
    dispatch = Dispatch(app)
    dispatch.subdomain(RecordingFactory())
    ran: list[str] = []

    def failing(sender: Flask, name: str, **extra: t.Any) -> None:
        ran.append("failing")
        raise ValueError("a receiver's bug")

    def closing(sender: Flask, name: str, **extra: t.Any) -> None:
        ran.append("closing")

    call(app, host="acme.example.com")
    with (
        tenant_evicted.connected_to(failing, app),
        tenant_evicted.connected_to(closing, app),
        app.app_context(),
    ):
        dispatch.evict("acme")
    assert sorted(ran) == ["closing", "failing"]
    assert "A tenant_evicted receiver failed for tenant 'acme'." in caplog.text
    assert "ValueError: a receiver's bug" in caplog.text


# 3. The host app's own URL space is never handed to a factory.
@pytest.mark.parametrize(
    "config",
    [
        pytest.param({"SERVER_NAME": "example.com"}, id="domain-from-server-name"),
        pytest.param({"SERVER_NAME": "example.com", "DISPATCH_DOMAIN": "example.com"}, id="both"),
    ],
)
def test_host_subdomain_rule_is_never_a_tenant(config: dict[str, t.Any]) -> None:
    app = Flask("host", subdomain_matching=True)
    app.config.update(config)
    factory = RecordingFactory()
    dispatch = Dispatch(app)
    dispatch.subdomain(factory)
    app.add_url_rule("/", "admin", lambda: "host admin", subdomain="admin")
    assert call(app, host="admin.example.com").body == "host admin"
    assert call(app, host="acme.example.com").body.startswith("acme|")
    assert factory.calls == ["acme"]
    with app.app_context():
        assert not dispatch.is_tenant_name("admin") and dispatch.is_tenant_name("acme")


# 4. evict() wherever a user calls it.
def test_a_tenant_evicts_itself_from_its_own_request() -> None:
    app = make_host_app()
    dispatch = Dispatch(app)
    built: list[Flask] = []

    @dispatch.path
    def factory(name: str) -> WSGIApplication:
        tenant = Flask(f"tenant_{name}")

        @tenant.route("/settings", methods=["POST"])
        def save_settings() -> str:
            return f"saved, dropped {dispatch.evict(name)}"

        built.append(tenant)
        return tenant

    assert call(app, "/acme/settings", REQUEST_METHOD="POST").body == "saved, dropped 1"
    assert call(app, "/acme/settings", REQUEST_METHOD="POST").status == 200
    assert len(built) == 2  # built afresh after the eviction


@pytest.mark.parametrize(
    "where",
    [
        pytest.param("view", id="host-view"),
        pytest.param("cli", id="cli-command"),
        pytest.param("thread", id="thread-in-host-context"),
    ],
)
def test_evict_from_the_host_app(where: str) -> None:
    app = make_host_app()
    dispatch = Dispatch(app)
    factory = RecordingFactory()
    dispatch.subdomain(factory)

    @app.route("/evict/<name>")
    def evict_view(name: str) -> str:
        return str(dispatch.evict(name))

    @app.cli.command("evict-acme")
    def evict_command() -> None:
        print(dispatch.evict("acme"))

    call(app, host="acme.example.com")
    if where == "view":
        assert call(app, "/evict/acme").body == "1"
    elif where == "cli":
        assert app.test_cli_runner().invoke(args=["evict-acme"]).output == "1\n"
    else:

        def in_context() -> None:
            with app.app_context():
                assert dispatch.evict("acme") == 1

        assert run_workers(1, lambda i: in_context()) == []
    call(app, host="acme.example.com")
    assert factory.calls == ["acme", "acme"]


# 5. Dispatch's own errors behave like the host app's own.
@pytest.mark.parametrize(
    ("host", "path", "status"),
    [
        pytest.param("nobody.example.com", "/login", 404, id="unknown-tenant"),
        pytest.param("-x.example.com", "/login", 404, id="pattern-rejects"),
        pytest.param("acme..example.com", "/login", 400, id="malformed-host"),
    ],
)
def test_dispatch_errors_run_before_request_with_no_endpoint(
    app: Flask, host: str, path: str, status: int
) -> None:
    Dispatch(app).subdomain(RecordingFactory(known=()))
    seen: list[object] = []

    @app.before_request
    def load_user() -> None:
        g.user = "someone"
        seen.append(request.endpoint)

    @app.errorhandler(404)
    @app.errorhandler(400)
    def page(error: Exception) -> tuple[str, int]:
        return f"{g.user} {request.endpoint}", t.cast(int, getattr(error, "code", 500))

    response = call(app, path, host=host)
    assert (response.status, response.body) == (status, "someone None")
    assert seen == [None]


@pytest.mark.parametrize(
    ("host", "status"),
    [
        pytest.param("nobody.example.com", 404, id="unknown-tenant"),
        pytest.param("acme..example.com", 400, id="malformed-host"),
        pytest.param("broken.example.com", 500, id="factory-raises"),
    ],
)
def test_dispatch_errors_run_no_blueprint_hooks(app: Flask, host: str, status: int) -> None:
    # The path matches a host blueprint's rule (Flask's i18n pattern), but
    # like Flask's own routing 404, the error runs none of its hooks.
    def factory(name: str) -> WSGIApplication | None:
        if name == "broken":
            raise RuntimeError("the tenant's database is gone")
        return None

    Dispatch(app).subdomain(factory)
    seen: list[str] = []
    pages = Blueprint("pages", __name__, url_prefix="/<lang_code>")

    @pages.url_value_preprocessor
    def pull_lang_code(endpoint: str | None, values: dict[str, t.Any] | None) -> None:
        seen.append("preprocessor")
        g.lang_code = values.pop("lang_code")  # type: ignore[union-attr]

    @pages.before_request
    def require_login() -> None:
        seen.append("before_request")

    @pages.get("/about")
    def about() -> str:
        return "about"

    app.register_blueprint(pages)
    assert call(app, "/en/about").body == "about"
    seen.clear()
    assert call(app, "/en/about", host=host).status == status
    assert seen == []


@pytest.mark.parametrize(
    "host",
    [
        pytest.param("acme..localhost", id="empty-label"),
        pytest.param(".localhost", id="leading-dot"),
        pytest.param("localhost..", id="two-trailing-dots"),
        pytest.param("a" * 64 + ".localhost", id="64-character-label"),
    ],
)
def test_error_templates_may_use_url_for_on_malformed_hosts(
    host: str, caplog: pytest.LogCaptureFixture
) -> None:
    app = Flask("host")
    app.config["DISPATCH_DOMAIN"] = ["localhost", "example.localhost"]
    Dispatch(app).subdomain(RecordingFactory())

    @app.route("/")
    def index() -> str:
        return "home"

    @app.errorhandler(400)
    def bad_request(error: Exception) -> tuple[str, int]:
        page = '<a href="{{ url_for("index") }}">home</a> {{ url_for("index", _external=True) }}'
        return render_template_string(page), 400

    response = call(app, host=host)
    assert response.status == 400
    assert response.body.startswith('<a href="/">home</a> http://')
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_503_keeps_retry_after_through_the_sites_own_handler() -> None:
    app = make_host_app(DISPATCH_CREATE_TIMEOUT=0.05)
    release = threading.Event()

    @Dispatch(app).subdomain
    def slow(name: str) -> WSGIApplication:
        release.wait(10)
        return NamedApp(name)

    try:
        response = call(app, host="acme.example.com")
    finally:
        release.set()
    assert (response.status, response.body) == (503, "site 503 page")  # the site's handler
    assert response.headers["Retry-After"] == "1"


# 6. ProxyFix in either place.
@pytest.mark.parametrize(
    "order",
    [
        pytest.param("before", id="before-init-app"),
        pytest.param("before, under other middleware", id="before-under-middleware"),
        pytest.param("before, around a function", id="before-around-a-function"),
        pytest.param("before, around a mount", id="before-around-a-mount"),
        pytest.param("after", id="after"),
    ],
)
def test_proxy_fix_in_either_place_routes_by_the_forwarded_host(order: str) -> None:
    app = make_host_app()
    if order == "before, around a function":  # middleware that hides what it wraps
        inner = app.wsgi_app
        app.wsgi_app = lambda environ, start_response: inner(environ, start_response)  # type: ignore[method-assign]
    if order == "before, around a mount":  # and the host app's own ProxyFix inside
        app.wsgi_app = ProxyFix(app.wsgi_app)  # type: ignore[method-assign]
        mounts: dict[str, WSGIApplication] = {"/mounted": NamedApp("mounted")}
        app.wsgi_app = DispatcherMiddleware(app.wsgi_app, mounts)  # type: ignore[method-assign]
    if order.startswith("before"):
        app.wsgi_app = ProxyFix(app.wsgi_app, x_host=1, x_proto=1)  # type: ignore[method-assign]
    if order == "before, under other middleware":
        app.wsgi_app = KeptAsApplication(app.wsgi_app)  # type: ignore[method-assign]
    dispatch = Dispatch(app)
    dispatch.subdomain(RecordingFactory())
    if order == "after":
        app.wsgi_app = ProxyFix(app.wsgi_app, x_host=1, x_proto=1)  # type: ignore[method-assign]
    client = app.test_client()
    forwarded = {"X-Forwarded-Host": "acme.example.com", "X-Forwarded-Proto": "https"}
    response = client.get("/x", headers=forwarded, base_url="http://backend.internal")
    assert response.text == "acme||/x|acme"
    raw = call(app, "/x", host="internal:8000", HTTP_X_FORWARDED_HOST="globex.example.com")
    assert raw.body == "globex||/x|globex"
    if order == "before, around a mount":
        # Dispatch stays outside what the outermost ProxyFix wraps: tenants' URLs are theirs.
        assert call(app, "/mounted/y", host="acme.example.com").body == "acme||/mounted/y|acme"


@pytest.mark.parametrize(
    "proxy_fix",
    [
        pytest.param("inside", id="the-other-apps-own"),
        pytest.param("around", id="around-the-other-app"),
        pytest.param("around wsgi_app", id="around-the-other-apps-wsgi-app"),
    ],
)
def test_a_proxy_fix_of_an_app_served_beside_is_left_to_it(proxy_fix: str) -> None:
    # The Flask docs' way to serve an app beside another: the legacy app's
    # ProxyFix is not around the host app, and dispatch stays in front of it.
    legacy = Flask("legacy")
    legacy.add_url_rule("/<path:rest>", "page", lambda rest: f"legacy {rest}")
    beside: WSGIApplication = legacy
    if proxy_fix == "inside":
        legacy.wsgi_app = ProxyFix(legacy.wsgi_app, x_host=1)  # type: ignore[method-assign]
    else:
        beside = ProxyFix(legacy if proxy_fix == "around" else legacy.wsgi_app, x_host=1)
    app = make_host_app()
    app.wsgi_app = DispatcherMiddleware(beside, {"/v2": app.wsgi_app})  # type: ignore[method-assign]
    Dispatch(app).subdomain(RecordingFactory())
    assert call(app, "/v2/x", host="acme.example.com").body == "acme||/v2/x|acme"
    assert call(beside, "/old", host="acme.example.com").body == "legacy old"


# 7. Idle tenants leave without traffic.
def test_idle_tenants_leave_without_traffic() -> None:
    app = make_host_app(DISPATCH_IDLE_TIMEOUT=0.5)
    Dispatch(app).subdomain(RecordingFactory())
    left = threading.Event()
    reasons: list[str] = []

    def receiver(sender: Flask, name: str, tenant_app: WSGIApplication, reason: str) -> None:
        reasons.append(reason)
        left.set()

    with tenant_evicted.connected_to(receiver, app):
        assert call(app, host="acme.example.com").status == 200
        start = time.monotonic()
        assert left.wait(5)  # no request arrives meanwhile
    assert time.monotonic() - start < 0.5 + 1
    assert reasons == ["idle"]
    with app.app_context():
        assert len(app.extensions["dispatch"].registry) == 0


@pytest.mark.parametrize(
    "error",
    [
        pytest.param(ValueError("a bug"), id="exception"),
        pytest.param(SystemExit(3), id="system-exit"),
    ],
)
@pytest.mark.parametrize("raised_by", ["receiver", "teardown"])
def test_an_announcement_that_raises_leaves_the_idle_sweep_going(
    error: BaseException, raised_by: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Every idle tenant still gets its ``tenant_evicted``, and tenants made
    later still leave, whether a receiver or the tenant's own teardown (its
    app context ends after the receivers) raises: a ``SystemExit`` would
    end the sweeping thread without a word (Python's thread hook ignores
    it)."""
    app = make_host_app(DISPATCH_IDLE_TIMEOUT=0.3)
    evicted: list[str] = []

    @Dispatch(app).subdomain
    def factory(name: str) -> WSGIApplication:
        tenant = Flask(f"tenant_{name}")

        @tenant.teardown_appcontext
        def teardown(exception: BaseException | None) -> None:
            if raised_by == "teardown" and name == "acme" and evicted:
                raise error

        return tenant

    def receiver(sender: Flask, name: str, **extra: t.Any) -> None:
        evicted.append(name)
        if raised_by == "receiver" and name == "acme":
            raise error

    with tenant_evicted.connected_to(receiver, app):
        for name in ("acme", "globex", "initech"):
            assert call(app, host=f"{name}.example.com").status == 404  # no views
        wait_for(lambda: len(evicted) == 3)
        assert call(app, host="umbrella.example.com").status == 404
        wait_for(lambda: "umbrella" in evicted)
    assert sorted(evicted) == ["acme", "globex", "initech", "umbrella"]
    assert "tenant 'acme'" in caplog.text


def test_ctrl_c_in_a_receiver_stops_an_eviction() -> None:
    """As it stops ``flask dispatch run --all``: it is not logged and
    passed over like a receiver's failure."""
    app = make_host_app()
    dispatch = Dispatch(app)
    dispatch.subdomain(RecordingFactory())

    def receiver(sender: Flask, name: str, **extra: t.Any) -> None:
        raise KeyboardInterrupt

    call(app, host="acme.example.com")
    with (
        tenant_evicted.connected_to(receiver, app),
        app.app_context(),
        pytest.raises(KeyboardInterrupt),
    ):
        dispatch.evict("acme")


def _streaming(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    start_response("200 OK", [])
    yield b"first"
    yield b"last"


def _file(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    start_response("200 OK", [])
    return t.cast("Iterable[bytes]", FileWrapper(io.BytesIO(b"a file")))


def _raising(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    raise ValueError("the tenant failed")


@pytest.mark.parametrize(
    ("tenant", "in_use_until_closed"),
    [
        pytest.param(_streaming, True, id="streaming-response"),
        # The server sends the file itself: the app's part is over.
        pytest.param(_file, False, id="file-wrapper-passed-on-unwrapped"),
        pytest.param(_raising, False, id="tenant-raises"),
    ],
)
def test_a_tenant_is_not_idle_while_a_request_is_under_way(
    tenant: WSGIApplication, in_use_until_closed: bool
) -> None:
    app = make_host_app(DISPATCH_IDLE_TIMEOUT=0.5)
    dispatch = Dispatch(app)
    dispatch.subdomain(lambda name: tenant)
    environ = create_environ("/", "http://acme.example.com/")
    environ["wsgi.file_wrapper"] = FileWrapper
    try:
        response = app.wsgi_app(environ, no_start_response)
    except ValueError:
        response = None
    else:
        assert isinstance(response, FileWrapper) is (tenant is _file)
    with app.app_context():
        registry = dispatch.registry
    time.sleep(0.7)  # past the timeout, with the response not closed yet
    registry.expire()  # as the background sweeps do
    assert ("acme" in registry) is in_use_until_closed
    if response is not None:
        t.cast(t.Any, response).close()
    if in_use_until_closed:
        registry.expire()
        assert "acme" in registry  # idle from the close on
        time.sleep(0.7)
        registry.expire()
        assert "acme" not in registry


class ClosingTwice:
    """A tenant's response with a ``close`` of its own, which may raise."""

    def __init__(self, raises: bool) -> None:
        self.raises = raises

    def __iter__(self) -> Iterator[bytes]:
        return iter([b"body"])

    def close(self) -> None:
        if self.raises:
            raise OSError("the response's own close failed")


@pytest.mark.parametrize(
    "finish",
    [
        pytest.param("close-twice", id="closed-twice"),
        pytest.param("close-raises", id="its-own-close-raises"),
        pytest.param("drop", id="never-closed-then-collected"),
    ],
)
def test_a_request_ends_its_use_once_however_its_response_ends(finish: str) -> None:
    # A count off by one would keep the tenant in use for ever, or let it go
    # under the next request.
    app = make_host_app(DISPATCH_IDLE_TIMEOUT=0.3)
    dispatch = Dispatch(app)
    dispatch.subdomain(lambda name: lambda environ, sr: ClosingTwice(finish == "close-raises"))
    with app.app_context():
        registry = dispatch.registry
    environ = create_environ("/", "http://acme.example.com/")
    response: t.Any = app.wsgi_app(environ, no_start_response)
    assert b"".join(response) == b"body"
    if finish == "close-twice":
        response.close()
        response.close()
    elif finish == "close-raises":
        with pytest.raises(OSError, match="own close failed"):
            response.close()
    del response
    gc.collect()
    # A second request under way: the first one's end must not end it too.
    second: t.Any = app.wsgi_app(create_environ("/", "http://acme.example.com/"), no_start_response)
    time.sleep(0.5)
    registry.expire()
    assert "acme" in registry
    try:
        second.close()
    except OSError:
        assert finish == "close-raises"
    time.sleep(0.5)
    registry.expire()
    assert "acme" not in registry


def test_a_list_response_keeps_its_length_and_is_over_at_once() -> None:
    # A server may send Content-Length from len() of a list.
    app = make_host_app(DISPATCH_IDLE_TIMEOUT=0.3)
    dispatch = Dispatch(app)
    dispatch.subdomain(lambda name: lambda environ, start_response: [b"hello"])
    response = app.wsgi_app(create_environ("/", "http://acme.example.com/"), no_start_response)
    assert response == [b"hello"]
    time.sleep(0.5)
    with app.app_context():
        dispatch.registry.expire()
        assert "acme" not in dispatch.registry


def no_start_response(
    status: str, headers: list[tuple[str, str]], exc_info: object = None
) -> t.Callable[[bytes], object]:
    return lambda data: None


def test_a_tiny_idle_timeout_does_not_keep_a_core_busy() -> None:
    app = make_host_app(DISPATCH_IDLE_TIMEOUT=1e-6)
    Dispatch(app).subdomain(RecordingFactory())
    assert call(app, host="acme.example.com").status == 200  # starts the sweeps
    cpu = time.process_time()
    time.sleep(1.0)
    # A sweep every half microsecond would take most of a core.
    assert time.process_time() - cpu < 0.1


@pytest.mark.parametrize(
    "forwarded",
    [pytest.param("acme.example.com", id="subdomain"), pytest.param("example.com", id="host")],
)
def test_url_for_in_a_tenant_uses_the_forwarded_host(forwarded: str) -> None:
    app = make_host_app()
    app.wsgi_app = ProxyFix(app.wsgi_app, x_host=1, x_proto=1)  # type: ignore[method-assign]
    dispatch = Dispatch(app)

    @dispatch.subdomain
    def factory(name: str) -> WSGIApplication:
        tenant = Flask(f"tenant_{name}")
        tenant.add_url_rule("/", "home", lambda: url_for("home", _external=True))
        return tenant

    headers = {"X-Forwarded-Host": forwarded, "X-Forwarded-Proto": "https"}
    response = app.test_client().get("/", headers=headers, base_url="http://internal")
    if forwarded == "acme.example.com":
        assert response.text == "https://acme.example.com/"
    else:
        assert response.text == "host index"


@pytest.mark.parametrize(
    ("serves", "held_after"),
    [
        # A --preload warm-up: the tenant is built in the parent; a worker
        # holds it and must drop it when idle, though it never calls a
        # factory itself.
        pytest.param(True, 0, id="worker-that-serves"),
        # A process that a tenant's code forked (multiprocessing, say): its
        # copies are the parent's; it sweeps and announces nothing.
        pytest.param(False, 1, id="child-that-serves-no-request"),
    ],
)
def test_tenants_built_before_a_fork_expire_in_a_child_that_serves(
    serves: bool, held_after: int
) -> None:
    import multiprocessing

    app = make_host_app(DISPATCH_IDLE_TIMEOUT=0.3)
    dispatch = Dispatch(app)
    dispatch.subdomain(RecordingFactory())
    assert call(app, host="acme.example.com").status == 200
    with app.app_context():
        registry = dispatch.registry

    def child(results: t.Any) -> None:
        evicted: list[str] = []
        tenant_evicted.connect(lambda sender, name, **extra: evicted.append(name), app, weak=False)
        if serves:
            call(app, "/")  # the host app's page: no tenant of its own
        deadline = time.monotonic() + (3 if serves else 1)
        while len(registry) and time.monotonic() < deadline:
            time.sleep(0.05)
        results.put((len(registry), evicted))

    context = multiprocessing.get_context("fork")
    results = context.Queue()
    process = context.Process(target=child, args=(results,))
    process.start()
    try:
        held, evicted = results.get(timeout=10)
    finally:
        process.join(10)
        results.close()
    assert (held, evicted) == (held_after, ["acme"] if serves else [])
