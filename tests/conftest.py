"""Shared fixtures and helpers: tiny tenant apps, a recording factory and a
raw WSGI caller that shows exactly what the server would send."""

from __future__ import annotations

import os
import threading
import typing as t

import pytest
from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.middleware.shared_data import SharedDataMiddleware
from werkzeug.test import create_environ, run_wsgi_app

from flask_dispatch import Dispatch

from .redis_server import RedisServer, missing, started

if t.TYPE_CHECKING:
    from collections.abc import Iterable, Iterator
    from pathlib import Path

    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment


class NamedApp:
    """A bare WSGI app that answers with its name and what it was given."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        body = "|".join(
            (
                self.name,
                environ.get("SCRIPT_NAME", ""),
                environ.get("PATH_INFO", ""),
                str(environ.get("flask_dispatch.tenant")),
            )
        ).encode()
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [body]

    def __repr__(self) -> str:
        return f"<NamedApp {self.name}>"


class KeptAsApplication:
    """WSGI middleware that keeps the app it wraps as ``application``, as
    WhiteNoise does."""

    def __init__(self, application: WSGIApplication) -> None:
        self.application = application

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        return self.application(environ, start_response)


#: What a factory may return for a Flask app, made from it.
WRAPPED_FLASK_APPS = [
    pytest.param(lambda app: ProxyFix(app, x_proto=1), id="proxy-fix"),
    pytest.param(lambda app: app.wsgi_app, id="its-wsgi-app"),
    pytest.param(lambda app: SharedDataMiddleware(app, {}), id="shared-data"),
    pytest.param(KeptAsApplication, id="application-attribute"),
    pytest.param(lambda app: ProxyFix(KeptAsApplication(app.wsgi_app)), id="nested"),
]


class RecordingFactory:
    """A tenant factory that records its calls and builds :class:`NamedApp`
    for the names it knows (all names when ``known`` is ``None``)."""

    def __init__(self, known: Iterable[str] | None = None, prefix: str = "") -> None:
        # A set given is kept, not copied, so a test can "sign up" a tenant.
        self.known = known if known is None or isinstance(known, set) else set(known)
        self.prefix = prefix
        self.calls: list[str] = []
        self._lock = threading.Lock()

    def __call__(self, name: str) -> WSGIApplication | None:
        with self._lock:
            self.calls.append(name)
        if self.known is not None and name not in self.known:
            return None
        return NamedApp(self.prefix + name)


def run_workers(n: int, work: t.Callable[[int], None]) -> list[BaseException]:
    """Run ``work(i)`` in ``n`` threads released together; return what they
    raised."""
    errors: list[BaseException] = []
    barrier = threading.Barrier(n)

    def target(i: int) -> None:
        barrier.wait()
        try:
            work(i)
        except BaseException as e:  # collected, then asserted on
            errors.append(e)

    threads = [threading.Thread(target=target, args=(i,)) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
        assert not thread.is_alive(), "a worker hung"
    return errors


def wait_for(condition: t.Callable[[], bool], timeout: float = 10.0) -> None:
    """Wait until ``condition()`` holds, failing after ``timeout`` seconds.
    For states no event announces (e.g. how many threads are waiting)."""
    import time

    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.005)


def waiting_herd(app: Flask, name: str, n: int, work: t.Callable[[int], None]) -> threading.Thread:
    """Run ``work(i)`` on ``n`` threads released together, and return once
    ``n`` requests wait for tenant ``name``'s creation; join the thread
    given back once the creation may end."""
    herd = threading.Thread(target=run_workers, args=(n, work))
    herd.start()
    with app.app_context():
        wait_for(lambda: app.extensions["dispatch"].registry.waiting(name) == n)
    return herd


def in_forked_child(action: t.Callable[[], object]) -> tuple[t.Any, float]:
    """Run ``action`` in a forked child process, as a server forks its
    workers: what it returned there, and how many seconds it took."""
    import multiprocessing
    import time

    context = multiprocessing.get_context("fork")
    results = context.Queue()

    def child() -> None:
        start = time.monotonic()
        value = action()
        results.put((value, time.monotonic() - start))

    process = context.Process(target=child)
    process.start()
    try:
        return t.cast("tuple[t.Any, float]", results.get(timeout=20))
    finally:
        process.join(10)
        results.close()


class Response(t.NamedTuple):
    status: int
    headers: dict[str, str]
    body: str


def call(
    app: WSGIApplication,
    path: str = "/",
    host: str | None = "example.com",
    script_name: str = "",
    **environ: t.Any,
) -> Response:
    """Call ``app`` with a raw environ, with ``HTTP_HOST`` set to ``host``
    exactly (or left out when ``None``)."""
    env = create_environ("/", "http://placeholder/")
    env.pop("HTTP_HOST", None)
    if host is not None:
        env["HTTP_HOST"] = host
    env["SERVER_NAME"] = "server.invalid"
    env["SCRIPT_NAME"] = script_name
    env["PATH_INFO"] = path
    env.update(environ)
    body_iter, status, headers = run_wsgi_app(app, env, buffered=True)
    body = b"".join(body_iter).decode("latin-1")
    return Response(int(status.split()[0]), dict(headers), body)


def make_host_app(**config: t.Any) -> Flask:
    """A host app with a landing page, a login page and its own error pages."""
    app = Flask("host")
    app.config.update({"TESTING": False, "DISPATCH_DOMAIN": "example.com", **config})

    @app.route("/")
    def index() -> str:
        return "host index"

    @app.route("/login")
    def login() -> str:
        return "host login"

    @app.route("/about/team")
    def team() -> str:
        return "host team"

    @app.errorhandler(404)
    def not_found(e: Exception) -> tuple[str, int]:
        return "site 404 page", 404

    @app.errorhandler(400)
    def bad_request(e: Exception) -> tuple[str, int]:
        return "site 400 page", 400

    @app.errorhandler(500)
    def server_error(e: Exception) -> tuple[str, int]:
        return "site 500 page", 500

    @app.errorhandler(503)
    def unavailable(e: Exception) -> tuple[str, int]:
        return "site 503 page", 503

    return app


@pytest.fixture
def app() -> Flask:
    return make_host_app()


@pytest.fixture
def dispatch(app: Flask) -> Dispatch:
    return Dispatch(app)


@pytest.fixture
def sub_factory(dispatch: Dispatch) -> RecordingFactory:
    factory = RecordingFactory(known={"acme", "globex", "xn--bcher-kva", "www2"})
    dispatch.subdomain(factory)
    return factory


@pytest.fixture
def path_factory(dispatch: Dispatch) -> RecordingFactory:
    factory = RecordingFactory(known={"acme", "globex"}, prefix="path:")
    dispatch.path(factory)
    return factory


def available(reason: str | None, required_by: str) -> None:
    """Skip the test because ``reason``, unless the environment variable
    ``required_by`` is ``1`` (as CI sets it): then fail it."""
    if reason is None:
        return
    if os.environ.get(required_by) == "1":
        pytest.fail(f"{required_by}=1, but these tests cannot run: {reason}")
    pytest.skip(reason)


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A real ``redis-server`` on a free loopback port, stopped after the
    test. Skipped when it is missing, unless ``DISPATCH_TEST_REQUIRE_REDIS=1``
    (CI) makes that a failure."""
    reason = missing()
    available(reason, "DISPATCH_TEST_REQUIRE_REDIS")
    server = started(tmp_path)
    yield server
    server.stop()
