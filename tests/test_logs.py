"""Log records name the tenant they came from (flask_dispatch.logs and the
filter dispatch puts on each Flask tenant app's logger)."""

from __future__ import annotations

import io
import logging
import typing as t

import pytest
from flask import Flask, current_app
from flask.logging import default_handler

from flask_dispatch import Dispatch, TenantFilter

from .conftest import make_host_app

if t.TYPE_CHECKING:
    from collections.abc import Iterator


@pytest.fixture
def tenant_module(request: pytest.FixtureRequest) -> Iterator[str]:
    """An import name for tenant apps whose logger no other test uses; the
    logger is left as it was found."""
    name = f"tenant_logs_{request.node.name}"
    yield name
    logger = logging.getLogger(name)
    logger.handlers.clear()
    logger.filters.clear()


def make_tenant(import_name: str) -> Flask:
    tenant = Flask(import_name)

    @tenant.route("/hello")
    def hello() -> str:
        current_app.logger.warning("hello from %s", "the view")
        return "ok"

    @tenant.post("/notes")
    def notes() -> str:
        raise RuntimeError("boom")

    @tenant.route("/percent")
    def percent() -> str:
        current_app.logger.warning("%d%% done", 50)
        return "ok"

    return tenant


def with_default_handler(tenant: Flask) -> Flask:
    """Make Flask give the tenant's logger its default handler, as it does
    when logging is not configured (pytest's capture handler on the root
    logger would otherwise stop it)."""
    root = logging.getLogger()
    saved = root.handlers[:]
    root.handlers.clear()
    try:
        assert default_handler in tenant.logger.handlers
    finally:
        root.handlers[:] = saved
    return tenant


def site(factory: t.Callable[[str], Flask | None], **config: t.Any) -> Flask:
    host = make_host_app(**config)
    dispatch = Dispatch(host)
    dispatch.subdomain(factory)
    dispatch.path(factory)
    return host


def test_records_carry_the_tenant(tenant_module: str, caplog: pytest.LogCaptureFixture) -> None:
    # Two tenants from one module share a logger, and each record names its own.
    host = site(lambda name: make_tenant(tenant_module))
    client = host.test_client()
    with caplog.at_level(logging.WARNING, logger=tenant_module):
        assert client.get("/hello", headers={"Host": "acme.example.com"}).text == "ok"
        assert client.get("/globex/hello", headers={"Host": "example.com"}).text == "ok"
    records = [r for r in caplog.records if r.name == tenant_module]
    assert [(r.tenant, r.getMessage()) for r in records] == [  # type: ignore[attr-defined]
        ("acme", "hello from the view"),
        ("globex", "hello from the view"),
    ]


def test_flask_default_error_line_names_the_tenant(tenant_module: str) -> None:
    host = site(lambda name: with_default_handler(make_tenant(tenant_module)))
    client = host.test_client()
    lines = {}
    for name in ("acme", "globex"):
        errors = io.StringIO()
        response = client.post(
            "/notes", headers={"Host": f"{name}.example.com"}, errors_stream=errors
        )
        assert response.status_code == 500
        lines[name] = errors.getvalue().splitlines()[0]
    # Flask's format, "[time] ERROR in app: message", with the tenant named once.
    assert lines["acme"].endswith("ERROR in app: [tenant acme] Exception on /notes [POST]")
    assert lines["globex"].endswith("ERROR in app: [tenant globex] Exception on /notes [POST]")


@pytest.mark.parametrize(
    ("pattern", "url", "host", "message"),
    [
        pytest.param(None, "/percent", "acme.example.com", "[tenant acme] 50% done", id="args"),
        pytest.param(
            r"[a-z0-9%]+",
            "/50%25off/percent",
            "example.com",
            "[tenant 50%off] 50% done",
            id="percent",
        ),
    ],
)
def test_default_line_keeps_a_format_message(
    tenant_module: str, pattern: str | None, url: str, host: str, message: str
) -> None:
    config = {} if pattern is None else {"DISPATCH_NAME_PATTERN": pattern}
    app = site(lambda name: with_default_handler(make_tenant(tenant_module)), **config)
    errors = io.StringIO()
    response = app.test_client().get(url, headers={"Host": host}, errors_stream=errors)
    assert response.text == "ok"
    assert errors.getvalue().rstrip("\n").endswith(f"WARNING in test_logs: {message}")


def test_own_logging_gets_the_message_unchanged(
    tenant_module: str, caplog: pytest.LogCaptureFixture
) -> None:
    """With Flask's default handler removed, as Flask's docs show for your
    own logging setup, the message is left alone and ``%(tenant)s`` names
    the tenant."""

    def factory(name: str) -> Flask:
        tenant = with_default_handler(make_tenant(tenant_module))
        tenant.logger.removeHandler(default_handler)
        return tenant

    client = site(factory).test_client()
    with caplog.at_level(logging.WARNING, logger=tenant_module):
        client.get("/hello", headers={"Host": "acme.example.com"})
    (record,) = [r for r in caplog.records if r.name == tenant_module]
    assert logging.Formatter("%(tenant)s: %(message)s").format(record) == (
        "acme: hello from the view"
    )


def test_filter_on_a_handler_names_the_tenant_of_any_logger() -> None:
    """``%(tenant)s`` in a format of your own, on records from loggers other
    than the tenant app's, and ``-`` outside a tenant's request."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(TenantFilter())
    handler.setFormatter(logging.Formatter("%(tenant)s %(name)s %(message)s"))
    library = logging.getLogger("tenant_logs_library")
    library.addHandler(handler)
    library.propagate = False
    try:
        tenant = Flask("tenant_logs_plain")

        @tenant.route("/")
        def index() -> str:
            library.warning("from a library")
            return "ok"

        host = site(lambda name: tenant)

        @host.route("/host")
        def host_page() -> str:
            library.warning("from the host app")
            return "ok"

        client = host.test_client()
        client.get("/", headers={"Host": "acme.example.com"})
        client.get("/host", headers={"Host": "example.com"})
        library.warning("outside a request")
    finally:
        library.removeHandler(handler)
        library.propagate = True
    assert stream.getvalue().splitlines() == [
        "acme tenant_logs_library from a library",
        "- tenant_logs_library from the host app",
        "- tenant_logs_library outside a request",
    ]


@pytest.mark.parametrize(
    ("host", "path"),
    [
        pytest.param("acme.example.com", "/", id="subdomain"),
        pytest.param("example.com", "/acme/", id="path"),
    ],
)
def test_a_factory_failure_logged_by_the_host_app_names_the_tenant(host: str, path: str) -> None:
    """Flask's "Exception on ..." record for a factory that raised is the
    host app's, and ``%(tenant)s`` names the tenant whose creation failed."""

    def broken(name: str) -> Flask:
        raise RuntimeError("directory down")

    app = site(broken)
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(TenantFilter())
    handler.setFormatter(logging.Formatter("%(tenant)s %(message)s"))
    app.logger.addHandler(handler)
    try:
        assert app.test_client().get(path, headers={"Host": host}).status_code == 500
    finally:
        app.logger.removeHandler(handler)
    assert stream.getvalue().splitlines()[0] == f"acme Exception on {path} [GET]"
