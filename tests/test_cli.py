"""The ``flask dispatch`` commands: through ``app.test_cli_runner()``, with
``evict`` against a real ``redis-server``; and every session on the
"Command line" page (``docs/cli.rst``) run in real ``flask`` processes.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import threading
import time
import typing as t
from pathlib import Path

import click
import pytest
import redis
from flask import Flask, current_app
from werkzeug.exceptions import Gone
from werkzeug.middleware.shared_data import SharedDataMiddleware

from flask_dispatch import Dispatch, tenant_created, tenant_evicted
from flask_dispatch.cli import dispatch_cli
from flask_dispatch.redis_bus import MAX_NAME

from .conftest import NamedApp, RecordingFactory, make_host_app, wait_for
from .redis_server import silent_server

if t.TYPE_CHECKING:
    from collections.abc import Iterator

    from click.testing import Result

    from .redis_server import RedisServer

TENANTS = {"acme", "globex"}


def make_tenant(name: str) -> Flask:
    """A Flask tenant with two routes and commands that succeed and fail in
    every way a command can."""
    tenant = Flask(f"tenant_{name}")

    @tenant.get("/")
    def index() -> str:
        return name

    @tenant.get("/notes/<int:note_id>")
    def note(note_id: int) -> str:
        return str(note_id)

    @tenant.cli.command("whoami")
    @click.option("--loud", is_flag=True)
    def whoami(loud: bool) -> None:
        click.echo(current_app.name + ("!" if loud else ""))

    @tenant.cli.command("fail")
    @click.argument("status", type=int)
    def fail(status: int) -> None:
        click.get_current_context().exit(status)

    @tenant.cli.command("refuse")
    def refuse() -> None:
        raise click.ClickException(f"{name} refuses.")

    @tenant.cli.command("crash")
    def crash() -> None:
        raise RuntimeError(f"{name} crashed")

    @tenant.cli.command("quit")
    def quit_() -> None:
        sys.exit(f"{name} quits")

    @tenant.cli.command("abort")
    def abort() -> None:
        raise click.Abort()

    return tenant


class TenantFactory(RecordingFactory):
    """Records its calls and builds a Flask tenant for each name in
    :data:`TENANTS`; ``broken`` raises, ``gone`` answers 410, ``bare`` is a
    plain WSGI app, ``number`` is 42 (no app), ``slow`` waits for
    :attr:`release`; others do not exist."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()

    def __call__(self, name: str) -> t.Any:
        bare = super().__call__(name)  # records the call
        if name == "broken":
            raise ValueError(f"no database for {name!r}")
        if name == "gone":
            return Gone()
        if name == "number":
            return 42
        if name == "slow":
            self.release.wait(10)
        if name in ("bare", "slow"):
            return bare
        return make_tenant(name) if name in TENANTS else None


def make_site(**config: t.Any) -> Flask:
    """A host app with both factories, a bare and a Flask mount, and a rule
    with a trailing slash."""
    app = make_host_app(**config)

    @app.get("/docs/")
    def docs() -> str:
        return "docs"

    dispatch = Dispatch(app)
    dispatch.subdomain(TenantFactory())
    dispatch.path(TenantFactory())
    dispatch.mount("/backend", NamedApp("backend"))
    dispatch.mount("/shop", make_tenant("shop"))
    return app


@pytest.fixture
def app() -> Flask:
    return make_site()


def factories(app: Flask) -> tuple[TenantFactory, TenantFactory]:
    """The subdomain and the path factory."""
    extension = app.extensions["dispatch"].extension
    return extension.subdomain_factory, extension.path_factory


def calls(app: Flask) -> tuple[list[str], list[str]]:
    """The names the subdomain and the path factory were called with."""
    sub, path = factories(app)
    return sub.calls, path.calls


def invoke(app: Flask, *args: str) -> Result:
    return app.test_cli_runner().invoke(
        args=["dispatch", *args], prog_name="flask", catch_exceptions=False
    )


def lines(*text: str) -> str:
    return "".join(line + "\n" for line in text)


# -- check ----------------------------------------------------------------------------

#: A first path segment the name pattern rejects: the host app's 404.
SEGMENT_NOT_A_NAME = lines(
    "host app",
    "  why:               example.com is a dispatch domain",
    "  not a path tenant: it does not match the tenant name pattern (DISPATCH_NAME_PATTERN)",
    "  endpoint:          none: 404 Not Found",
)

SUBDOMAIN_ACME = lines(
    "subdomain tenant 'acme'",
    "  SCRIPT_NAME: ''",
    "  PATH_INFO:   '/notes/1'",
    "  factory:     not called (--build calls it)",
)


@pytest.mark.parametrize(
    ("args", "status", "output"),
    [
        pytest.param(["http://acme.example.com/notes/1"], 0, SUBDOMAIN_ACME, id="subdomain"),
        pytest.param(["acme.example.com/notes/1"], 0, SUBDOMAIN_ACME, id="no scheme"),
        pytest.param(
            ["https://user:secret@ACME.example.com.:8443/notes/1?q=1#top"],
            0,
            SUBDOMAIN_ACME,
            id="user, port, query, fragment",
        ),
        pytest.param(
            ["http://example.com/acme/notes/b%C3%BCcher"],
            0,
            lines(
                "path tenant 'acme'",
                "  SCRIPT_NAME: '/acme'",
                "  PATH_INFO:   '/notes/bücher'",
                "  factory:     not called (--build calls it)",
            ),
            id="path tenant",
        ),
        pytest.param(
            ["http://bücher.example.com/"],
            0,
            lines(
                "subdomain tenant 'xn--bcher-kva'",
                "  Host:        'xn--bcher-kva.example.com' (IDNA)",
                "  SCRIPT_NAME: ''",
                "  PATH_INFO:   '/'",
                "  factory:     not called (--build calls it)",
            ),
            id="IDNA host",
        ),
        pytest.param(
            [f"http://example.com/{'a' * 64}/"],
            0,
            lines(
                "host app",
                "  why:               example.com is a dispatch domain",
                "  not a path tenant: it is longer than 63 characters, a DNS label's limit",
                "  endpoint:          none: 404 Not Found",
            ),
            id="name too long",
        ),
        pytest.param(
            ["http://example.com/about/team"],
            0,
            lines(
                "host app",
                "  why:               example.com is a dispatch domain",
                "  not a path tenant: it is the first segment of one of the host app's URL rules",
                "  endpoint:          'team' (rule '/about/team')",
            ),
            id="host app endpoint",
        ),
        pytest.param(
            ["http://example.com/"],
            0,
            lines(
                "host app",
                "  why:      example.com is a dispatch domain",
                "  endpoint: 'index' (rule '/')",
            ),
            id="host app root",
        ),
        pytest.param(
            ["http://example.com/login/x"],
            0,
            lines(
                "host app",
                "  why:               example.com is a dispatch domain",
                "  not a path tenant: it is the first segment of one of the host app's URL rules",
                "  endpoint:          none: 404 Not Found",
            ),
            id="host app 404",
        ),
        pytest.param(
            ["http://example.com/docs"],
            0,
            lines(
                "host app",
                "  why:               example.com is a dispatch domain",
                "  not a path tenant: it is the first segment of one of the host app's URL rules",
                "  endpoint:          none: 308 redirect to http://example.com/docs/",
            ),
            id="host app redirect",
        ),
        pytest.param(
            ["--method", "post", "http://example.com/"],
            0,
            lines(
                "host app",
                "  why:      example.com is a dispatch domain",
                "  endpoint: none: 405 Method Not Allowed (allowed: GET, HEAD, OPTIONS)",
            ),
            id="host app method",
        ),
        pytest.param(
            ["http://www.example.com/"],
            0,
            lines("host app", "  why:      'www' is reserved", "  endpoint: 'index' (rule '/')"),
            id="reserved subdomain",
        ),
        pytest.param(
            ["http://example.com/www/x"],
            0,
            lines(
                "host app",
                "  why:               example.com is a dispatch domain",
                "  not a path tenant: it is reserved (DISPATCH_RESERVED)",
                "  endpoint:          none: 404 Not Found",
            ),
            id="reserved segment",
        ),
        pytest.param(
            ["http://example.com/ACME/x"],
            0,
            SEGMENT_NOT_A_NAME,
            id="pattern rejects segment",
        ),
        pytest.param(
            ["http://-acme.example.com/"],
            0,
            lines(
                "no tenant: 404 Not Found",
                "  why: '-acme' does not match the tenant name pattern",
            ),
            id="pattern rejects subdomain",
        ),
        pytest.param(
            ["http://other.org/"],
            0,
            lines(
                "host app",
                "  why:      other.org is outside the dispatch domains",
                "  endpoint: 'index' (rule '/')",
            ),
            id="outside the domains",
        ),
        pytest.param(
            ["http://example.com/backend/x/y"],
            0,
            lines(
                "mount '/backend'",
                "  app:         <NamedApp backend>",
                "  SCRIPT_NAME: '/backend'",
                "  PATH_INFO:   '/x/y'",
            ),
            id="mount",
        ),
        pytest.param(
            ["http://example.com/shop/notes/7"],
            0,
            lines(
                "mount '/shop'",
                "  app:         <Flask 'tenant_shop'>",
                "  SCRIPT_NAME: '/shop'",
                "  PATH_INFO:   '/notes/7'",
                "  endpoint:    'note' (rule '/notes/<int:note_id>')",
            ),
            id="Flask mount",
        ),
        pytest.param(
            ["http://acme..example.com/"],
            1,
            lines(
                "bad host: 400 Bad Request",
                "  why: it has an empty label ('..', or a '.' at the start)",
            ),
            id="malformed host",
        ),
        pytest.param(
            ["http://acme.example.com:http/"],
            1,
            lines("bad host: 400 Bad Request", "  why: 'http' is not a port number"),
            id="malformed port",
        ),
        pytest.param(
            ["http://example.com\\@evil.com/acme/"],
            0,
            SEGMENT_NOT_A_NAME,
            id="backslash-is-a-slash-as-in-browsers",
        ),
        pytest.param(
            [" http://acme.exa\tmple.com/no\ntes/1\r\n"],
            0,
            SUBDOMAIN_ACME,
            id="spaces-around-and-tabs-or-newlines-in-it-dropped-as-in-browsers",
        ),
        pytest.param(
            ["HTTP:acme.example.com/notes/1"],
            0,
            SUBDOMAIN_ACME,
            id="http-colon-without-slashes-as-in-browsers",
        ),
        pytest.param(
            ["http:\\\\acme.example.com\\notes\\1"],
            0,
            SUBDOMAIN_ACME,
            id="http-colon-backslashes-as-in-browsers",
        ),
        pytest.param(
            ["http://acme.example.com/notes/./x/%2e%2E/1"],
            0,
            SUBDOMAIN_ACME,
            id="dot-segments-resolved-as-in-browsers",
        ),
        pytest.param(
            ["http://example.com/x/../acme/notes/1"],
            0,
            lines(
                "path tenant 'acme'",
                "  SCRIPT_NAME: '/acme'",
                "  PATH_INFO:   '/notes/1'",
                "  factory:     not called (--build calls it)",
            ),
            id="dot-dot-segment-leaves-a-path-tenant",
        ),
        pytest.param(
            ["http://example.com/acme/.."],
            0,
            lines(
                "host app",
                "  why:      example.com is a dispatch domain",
                "  endpoint: 'index' (rule '/')",
            ),
            id="dot-dot-segment-last-is-a-directory",
        ),
        pytest.param(
            ["http://acme%2Eexample.com/notes/1"],
            0,
            SUBDOMAIN_ACME,
            id="percent-encoded-host-as-browsers-decode-it",
        ),
        pytest.param(
            ["http://acme.example.com:/notes/1"],
            0,
            SUBDOMAIN_ACME,
            id="empty-port-that-browsers-drop",
        ),
        pytest.param(
            ["localhost:5000/acme/notes/1"],
            0,
            lines(
                "path tenant 'acme'",
                "  SCRIPT_NAME: '/acme'",
                "  PATH_INFO:   '/notes/1'",
                "  factory:     not called (--build calls it)",
            ),
            id="no-scheme-a-dotless-host-and-a-port",
        ),
        pytest.param(
            ["user:pw@example.com/acme/notes/1"],
            0,
            lines(
                "path tenant 'acme'",
                "  SCRIPT_NAME: '/acme'",
                "  PATH_INFO:   '/notes/1'",
                "  factory:     not called (--build calls it)",
            ),
            id="no-scheme-a-user-and-password",
        ),
        pytest.param(
            ["localhost:5000\\acme\\notes\\1"],
            0,
            lines(
                "path tenant 'acme'",
                "  SCRIPT_NAME: '/acme'",
                "  PATH_INFO:   '/notes/1'",
                "  factory:     not called (--build calls it)",
            ),
            id="no-scheme-a-port-and-backslashes",
        ),
        pytest.param(
            ["https://acme.example.com:0443/notes/1"],
            0,
            SUBDOMAIN_ACME,
            id="default-port-with-a-leading-zero",
        ),
        pytest.param(
            ["http://example.com/login?q=東京 x"],
            0,
            lines(
                "host app",
                "  why:               example.com is a dispatch domain",
                "  not a path tenant: it is the first segment of one of the host app's URL rules",
                "  endpoint:          'login' (rule '/login')",
            ),
            id="query-that-a-browser-percent-encodes",
        ),
        pytest.param(
            # sys.argv keeps a byte that is not UTF-8 (0xFF) as a lone surrogate.
            ["http://example.com/acme/n\udcffx"],
            0,
            lines(
                "path tenant 'acme'",
                "  SCRIPT_NAME: '/acme'",
                "  PATH_INFO:   '/n\ufffdx'",
                "  factory:     not called (--build calls it)",
            ),
            id="a-byte-not-utf-8-in-the-path-sent-as-it-is",
        ),
        pytest.param(
            ["http://example.com/login?q=\udcff"],
            0,
            lines(
                "host app",
                "  why:               example.com is a dispatch domain",
                "  not a path tenant: it is the first segment of one of the host app's URL rules",
                "  endpoint:          'login' (rule '/login')",
            ),
            id="a-byte-not-utf-8-in-the-query-sent-as-it-is",
        ),
        pytest.param(
            ["http://example.com/docs?q=\"x\"<y>'z'"],
            0,
            lines(
                "host app",
                "  why:               example.com is a dispatch domain",
                "  not a path tenant: it is the first segment of one of the host app's URL rules",
                "  endpoint:          none: 308 redirect to"
                " http://example.com/docs/?q=%22x%22%3Cy%3E%27z%27",
            ),
            id="quotes-and-angle-brackets-that-a-browser-percent-encodes",
        ),
    ],
)
def test_check(app: Flask, args: list[str], status: int, output: str) -> None:
    result = invoke(app, "check", *args)
    assert (result.exit_code, result.output) == (status, output)
    assert calls(app) == ([], []), "check calls no factory without --build"


@pytest.mark.parametrize(
    ("url", "output"),
    [
        pytest.param(
            "http://example.com/site/acme/notes/1",
            lines(
                "path tenant 'acme'",
                "  SCRIPT_NAME: '/site/acme'",
                "  PATH_INFO:   '/notes/1'",
                "  built:       <Flask 'tenant_acme'>",
                "  endpoint:    'note' (rule '/notes/<int:note_id>')",
            ),
            id="path",
        ),
        pytest.param(
            "http://acme.example.com/site/notes/1",
            lines(
                "subdomain tenant 'acme'",
                "  SCRIPT_NAME: '/site'",
                "  PATH_INFO:   '/notes/1'",
                "  built:       <Flask 'tenant_acme'>",
                "  endpoint:    'note' (rule '/notes/<int:note_id>')",
            ),
            id="subdomain",
        ),
    ],
)
def test_check_reads_a_url_under_application_root_as_the_server_passes_it(
    url: str, output: str
) -> None:
    # The URLs tenant_url builds for a site served at APPLICATION_ROOT.
    app = make_site(APPLICATION_ROOT="/site/", SERVER_NAME="example.com")
    with app.app_context():
        dispatch = app.extensions["dispatch"].extension
        by = "path" if "/acme/" in url else "subdomain"
        assert dispatch.tenant_url("acme", "/notes/1", by=by) == url
    result = invoke(app, "check", "--build", url)
    assert (result.exit_code, result.output) == (0, output)


@pytest.mark.parametrize(
    ("url", "output"),
    [
        pytest.param(
            "http://example.com/acme/notes/1",
            lines(
                "path tenant 'acme'",
                "  APPLICATION_ROOT: the path is outside '/site': read as if the app were"
                " served at '/'",
                "  SCRIPT_NAME:      '/acme'",
                "  PATH_INFO:        '/notes/1'",
                "  factory:          not called (--build calls it)",
            ),
            id="path",
        ),
        pytest.param(
            "http://example.com/login",
            lines(
                "host app",
                "  APPLICATION_ROOT:  the path is outside '/site': read as if the app were"
                " served at '/'",
                "  why:               example.com is a dispatch domain",
                "  not a path tenant: it is the first segment of one of the host app's URL rules",
                "  endpoint:          'login' (rule '/login')",
            ),
            id="host app",
        ),
    ],
)
def test_check_says_when_a_url_is_outside_application_root(url: str, output: str) -> None:
    app = make_site(APPLICATION_ROOT="/site/", SERVER_NAME="example.com")
    result = invoke(app, "check", url)
    assert (result.exit_code, result.output) == (0, output)


def test_check_names_a_mount_by_its_class_when_its_repr_is_an_address() -> None:
    app = make_host_app()
    Dispatch(app).mount("/files", SharedDataMiddleware(NamedApp("files"), {}))
    result = invoke(app, "check", "http://example.com/files/a.txt")
    assert result.output.splitlines()[:2] == [
        "mount '/files'",
        "  app:         a werkzeug.middleware.shared_data.SharedDataMiddleware",
    ]


@pytest.mark.parametrize(
    ("url", "message"),
    [
        pytest.param("ftp://example.com/", "'ftp://example.com/' is not an http://", id="scheme"),
        pytest.param("mailto:a@example.com", "'mailto:a@example.com' is not an", id="mailto"),
        pytest.param("javascript:alert(1)", "'javascript:alert(1)' is not an", id="javascript"),
        pytest.param("data:text/html,x", "'data:text/html,x' is not an http://", id="data"),
        # An "@" in them is no user's.
        pytest.param("sip:alice@example.com", "'sip:alice@example.com' is not an", id="sip"),
        pytest.param("data:,x@example.com", "'data:,x@example.com' is not an", id="data-with-at"),
        pytest.param(
            "javascript:alert('a@b.com')", "\"javascript:alert('a@b.com')\" is not", id="js-with-at"
        ),
        pytest.param("/acme/notes", "'/acme/notes' has no host", id="path only"),
        # "http:///acme" is http://acme/ to a browser.
        pytest.param("http://?q=1", "'http://?q=1' has no host", id="empty host"),
        pytest.param("http://user@/", "'http://user@/' has no host", id="user only"),
    ],
)
def test_check_refuses_a_url_it_cannot_read(app: Flask, url: str, message: str) -> None:
    result = invoke(app, "check", url)
    assert result.exit_code == 2
    assert f"Error: Invalid value for URL: {message}" in result.output


@pytest.mark.parametrize(
    ("url", "output"),
    [
        pytest.param(
            "http://acme.test/notes/1",
            lines(
                "subdomain tenant 'acme'",
                "  custom domain: of tenant 'acme', says the resolver",
                "  SCRIPT_NAME:   ''",
                "  PATH_INFO:     '/notes/1'",
                "  factory:       not called (--build calls it)",
            ),
            id="domain-of-a-tenant",
        ),
        pytest.param(
            "http://other.test/acme/notes/1",
            lines(
                "path tenant 'acme'",
                "  custom domain: the resolver says no tenant",
                "  SCRIPT_NAME:   '/acme'",
                "  PATH_INFO:     '/notes/1'",
                "  factory:       not called (--build calls it)",
            ),
            id="no-tenant-then-by-path",
        ),
        pytest.param(
            "http://bad.test/",
            lines(
                "host app",
                "  custom domain: the resolver says 'Not A Name', not a tenant name",
                "  endpoint:      'index' (rule '/')",
            ),
            id="not-a-tenant-name",
        ),
    ],
)
def test_check_asks_the_custom_domain_resolver(app: Flask, url: str, output: str) -> None:
    app.extensions["dispatch"].extension.domain({"acme.test": "acme", "bad.test": "Not A Name"}.get)
    result = invoke(app, "check", url)
    assert (result.exit_code, result.output) == (0, output)
    built = invoke(app, "check", "--build", "http://acme.test/notes/1")
    assert "built:         <Flask 'tenant_acme'>" in built.output
    assert factories(app)[0].calls == ["acme"]


def test_check_reports_a_resolver_that_raises(app: Flask) -> None:
    def resolve(host: str) -> str | None:
        raise LookupError("directory down")

    app.extensions["dispatch"].extension.domain(resolve)
    result = invoke(app, "check", "http://acme.com/")
    assert result.exit_code == 1
    assert result.output.startswith(
        "custom domain 'acme.com': 500 Internal Server Error\n"
        "  why: the resolver raised LookupError: directory down\n"
        "Traceback (most recent call last):\n"
    )


def test_a_resolver_without_a_subdomain_factory_is_an_error_in_every_command() -> None:
    app = make_host_app()
    dispatch = Dispatch(app)
    dispatch.path(TenantFactory())
    dispatch.domain(lambda host: None)
    for args in (["check", "http://example.com/acme/"], ["routes", "acme"]):
        result = invoke(app, *args)
        assert result.exit_code == 1
        assert result.output == (
            "Error: @dispatch.domain needs a subdomain factory: a custom domain names a"
            " subdomain tenant, built by the @dispatch.subdomain factory.\n"
        )


def test_check_reports_an_untrusted_host(app: Flask) -> None:
    app.config["TRUSTED_HOSTS"] = [".example.com"]
    result = invoke(app, "check", "http://acme.example.org/")
    assert (result.exit_code, result.output) == (
        1,
        lines("bad host: 400 Bad Request", "  why: 'acme.example.org' is not in TRUSTED_HOSTS"),
    )
    assert invoke(app, "check", "http://acme.example.com/").exit_code == 0


@pytest.mark.parametrize(
    ("url", "status", "details", "built_by"),
    [
        pytest.param(
            "http://acme.example.com/notes/1",
            0,
            lines(
                "  built:       <Flask 'tenant_acme'>",
                "  endpoint:    'note' (rule '/notes/<int:note_id>')",
            ),
            "subdomain",
            id="Flask tenant",
        ),
        pytest.param(
            "http://acme.example.com/nowhere",
            0,
            lines("  built:       <Flask 'tenant_acme'>", "  endpoint:    none: 404 Not Found"),
            "subdomain",
            id="Flask tenant, no route",
        ),
        pytest.param(
            "http://bare.example.com/notes/1",
            0,
            lines("  built:       <NamedApp bare>"),
            "subdomain",
            id="WSGI tenant",
        ),
        pytest.param(
            "http://nobody.example.com/notes/1",
            1,
            lines("  not built:   no such tenant: the factory returned None"),
            "subdomain",
            id="no such tenant",
        ),
        pytest.param(
            "http://gone.example.com/notes/1",
            1,
            lines("  not built:   no such tenant: the factory answered 410 Gone"),
            "subdomain",
            id="factory answers an HTTP error",
        ),
        pytest.param(
            "http://broken.example.com/notes/1",
            1,
            lines("  not built:   the factory raised ValueError: no database for 'broken'"),
            "subdomain",
            id="factory raises",
        ),
        pytest.param(
            "http://example.com/nobody/notes/1",
            1,
            lines(
                "  not built:         no such tenant: the factory returned None",
                "  then:              the host app handles the URL unchanged",
                "  host app endpoint: none: 404 Not Found",
            ),
            "path",
            id="no such path tenant",
        ),
    ],
)
def test_check_build(app: Flask, url: str, status: int, details: str, built_by: str) -> None:
    result = invoke(app, "check", "--build", url)
    assert result.exit_code == status
    assert details in result.output
    sub, path = factories(app)
    assert len((sub if built_by == "subdomain" else path).calls) == 1
    assert (path if built_by == "subdomain" else sub).calls == []


@pytest.mark.parametrize(
    ("args", "line"),
    [
        pytest.param(
            ["check", "--build", "http://acme.example.com/"],
            "  not built:   a tenant_created receiver raised ValueError: no quota left\n",
            id="check",
        ),
        pytest.param(
            ["routes", "acme"],
            "Error: Tenant 'acme': a tenant_created receiver raised ValueError: no quota left.\n",
            id="routes",
        ),
    ],
)
def test_a_tenant_created_receiver_that_raises_is_named(
    app: Flask, args: list[str], line: str
) -> None:
    def refuse(sender: Flask, name: str, **extra: t.Any) -> None:
        raise ValueError("no quota left")

    with tenant_created.connected_to(refuse, app):
        result = app.test_cli_runner().invoke(args=["dispatch", *args])
    assert result.exit_code == 1
    assert line in result.output


def test_check_build_shows_the_factory_traceback(app: Flask) -> None:
    result = invoke(app, "check", "--build", "http://broken.example.com/")
    assert "Traceback (most recent call last):" in result.output
    assert "ValueError: no database for 'broken'" in result.output
    assert "raised by the factory of tenant 'broken'" in result.output


@pytest.mark.parametrize(
    "url",
    [
        pytest.param("http://example.com/login", id="host app"),
        pytest.param("http://example.com/backend/x", id="mount"),
        pytest.param("http://-x.example.com/", id="no tenant"),
        pytest.param("http://a..example.com/", id="bad host"),
    ],
)
def test_check_build_calls_no_factory_for_what_is_no_tenant(app: Flask, url: str) -> None:
    plain = invoke(app, "check", url)
    built = invoke(app, "check", "--build", url)
    assert (built.exit_code, built.output) == (plain.exit_code, plain.output)
    assert calls(app) == ([], [])


def test_check_build_of_a_slow_tenant_waits_and_says_requests_would_not() -> None:
    # A command waits for the factory (Ctrl-C stops it); a request would not.
    app = make_site(DISPATCH_CREATE_TIMEOUT=0.2)
    sub, _ = factories(app)
    threading.Timer(0.5, sub.release.set).start()
    result = invoke(app, "check", "--build", "http://slow.example.com/")
    assert result.exit_code == 0
    assert re.search(
        r"  slow:        built in 0\.\d s; a request waits 0\.2 s \(DISPATCH_CREATE_TIMEOUT\),"
        r" then gets a 503 until it is built\n",
        result.output,
    ), result.output
    assert "  built:       <NamedApp" in result.output


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(["routes", "acme"], id="routes"),
        pytest.param(["run", "acme", "--", "whoami"], id="run"),
        pytest.param(["check", "--build", "http://acme.example.com/"], id="check-build"),
    ],
)
def test_commands_build_a_tenant_without_background_work(args: list[str]) -> None:
    # No idle sweeper to evict the tenant while its command runs, and no
    # Redis listener: a command is not a serving process. Once the command
    # is done, the tenant is let go as an eviction, so that receivers that
    # release its resources (a database engine, say) run.
    app = make_site(DISPATCH_IDLE_TIMEOUT=0.05, DISPATCH_REDIS_URL="redis://127.0.0.1:9/0")
    before = set(threading.enumerate())
    evicted: list[tuple[str, str, str]] = []

    def on_evicted(sender: Flask, name: str, tenant_app: t.Any, reason: str) -> None:
        # In the tenant's own app context, as for a request's tenant.
        evicted.append((name, reason, current_app.name))

    with tenant_evicted.connected_to(on_evicted, app):
        result = invoke(app, *args)
        time.sleep(0.2)  # four sweeps, were a sweeper running
    assert result.exit_code == 0, result.output
    assert set(threading.enumerate()) <= before
    assert evicted == [("acme", "evict", "tenant_acme")]


# -- routes ---------------------------------------------------------------------------

ACME_ROUTES = lines(
    "Endpoint  Methods  Rule                   ",
    "--------  -------  -----------------------",
    "index     GET      /                      ",
    "note      GET      /notes/<int:note_id>   ",
    "static    GET      /static/<path:filename>",
)


@pytest.mark.parametrize(
    ("args", "built"),
    [
        pytest.param(["acme"], (["acme"], []), id="subdomain by default"),
        pytest.param(["acme", "--by", "subdomain"], (["acme"], []), id="by subdomain"),
        pytest.param(["acme", "--by", "path"], ([], ["acme"]), id="by path"),
    ],
)
def test_routes(app: Flask, args: list[str], built: tuple[list[str], list[str]]) -> None:
    result = invoke(app, "routes", *args)
    assert (result.exit_code, result.output) == (0, ACME_ROUTES)
    assert calls(app) == built


def test_routes_takes_the_options_of_flask_routes(app: Flask) -> None:
    result = invoke(app, "routes", "acme", "--sort", "rule", "--all-methods")
    assert result.exit_code == 0
    rows = result.output.splitlines()[2:]
    assert [row.split()[0] for row in rows] == ["index", "note", "static"]
    assert "GET, HEAD, OPTIONS" in rows[0]


@pytest.mark.parametrize(
    "config",
    [
        pytest.param({}, id="plain"),
        pytest.param({"TRUSTED_HOSTS": ["notes.test"]}, id="served-on-another-host"),
    ],
)
def test_routes_by_path_without_a_subdomain_factory(config: dict[str, t.Any]) -> None:
    app = make_host_app(**config)
    factory = TenantFactory()
    Dispatch(app).path(factory)
    assert invoke(app, "routes", "acme").output == ACME_ROUTES
    assert factory.calls == ["acme"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(
            ["nobody"], "Tenant 'nobody': no such tenant: the factory returned None.", id="none"
        ),
        pytest.param(
            ["gone"], "Tenant 'gone': no such tenant: the factory answered 410 Gone.", id="410"
        ),
        pytest.param(
            ["broken"],
            "Tenant 'broken': the factory raised ValueError: no database for 'broken'.",
            id="raises",
        ),
        pytest.param(
            ["number"],
            "Tenant 'number': the factory raised TypeError: The factory of tenant 'number'"
            " returned 42, which is not a WSGI app.",
            id="raises-a-message-with-its-own-full-stop",
        ),
        pytest.param(
            ["bare"],
            "Tenant 'bare' is <NamedApp bare>, not a Flask app: it has no routes.",
            id="not Flask",
        ),
        pytest.param(
            ["Acme"],
            "'Acme' cannot be a subdomain tenant: it does not match the tenant name pattern"
            " (DISPATCH_NAME_PATTERN).",
            id="pattern",
        ),
        pytest.param(
            ["www"],
            "'www' cannot be a subdomain tenant: it is reserved (DISPATCH_RESERVED).",
            id="reserved",
        ),
        pytest.param(
            ["login", "--by", "path"],
            "'login' cannot be a path tenant: it is the first segment of one of the host app's"
            " URL rules.",
            id="host app segment",
        ),
        pytest.param(
            ["backend", "--by", "path"],
            "'backend' cannot be a path tenant: mounts take the URLs under '/backend'.",
            id="mount",
        ),
    ],
)
def test_routes_fails_with_a_message(app: Flask, args: list[str], message: str) -> None:
    result = invoke(app, "routes", *args)
    assert result.exit_code == 1
    assert f"Error: {message}\n" in result.output
    assert "Endpoint" not in result.output


def test_routes_refuses_a_name_another_dispatch_domain_takes() -> None:
    app = make_host_app(
        DISPATCH_DOMAIN=["example.com", "eu.example.com"],
        DISPATCH_NAME_PATTERN=r"[a-z]+(?:\.[a-z]+)*",
    )
    factory = TenantFactory()
    Dispatch(app).subdomain(factory)
    result = invoke(app, "routes", "x.eu")
    assert result.exit_code == 1
    assert (
        "Error: 'x.eu' cannot be a subdomain tenant: x.eu.example.com is tenant 'x'"
        " under eu.example.com.\n"
    ) in result.output
    assert factory.calls == []


def test_routes_names_a_subdomain_tenant_under_a_host_rule_segment(app: Flask) -> None:
    # login.example.com is a tenant's: only /login/ belongs to the host app.
    result = invoke(app, "routes", "login")
    assert "no such tenant" in result.output
    assert factories(app)[0].calls == ["login"]


@pytest.mark.parametrize(
    ("register", "by", "message"),
    [
        pytest.param("path", "subdomain", "No subdomain factory is registered", id="no subdomain"),
        pytest.param("subdomain", "path", "No path factory is registered", id="no path"),
        pytest.param(None, None, "No tenant factory is registered", id="none"),
    ],
)
def test_routes_without_the_factory(register: str | None, by: str | None, message: str) -> None:
    app = make_host_app()
    dispatch = Dispatch(app)
    if register is not None:
        getattr(dispatch, register)(TenantFactory())
    result = invoke(app, "routes", "acme", *(["--by", by] if by else []))
    assert result.exit_code == 1
    assert f"Error: {message}" in result.output


@pytest.mark.parametrize(
    "args",
    [
        pytest.param([], id="no name"),
        pytest.param(["acme", "--by", "host"], id="bad --by"),
        pytest.param(["acme", "globex"], id="two names"),
    ],
)
def test_routes_usage_errors(app: Flask, args: list[str]) -> None:
    assert invoke(app, "routes", *args).exit_code == 2
    assert calls(app) == ([], [])


# -- run ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "status", "output"),
    [
        pytest.param(["acme", "--", "whoami"], 0, "tenant_acme\n", id="command"),
        pytest.param(["acme", "whoami"], 0, "tenant_acme\n", id="without --"),
        pytest.param(["acme", "--", "whoami", "--loud"], 0, "tenant_acme!\n", id="options"),
        pytest.param(["--by", "path", "acme", "--", "whoami"], 0, "tenant_acme\n", id="by path"),
        pytest.param(["acme", "--", "routes"], 0, ACME_ROUTES, id="Flask's routes"),
        pytest.param(["acme", "--", "fail", "3"], 3, "", id="exit status"),
        pytest.param(["acme", "--", "fail", "0"], 0, "", id="exit status 0"),
        pytest.param(["acme", "--", "refuse"], 1, "Error: acme refuses.\n", id="ClickException"),
        pytest.param(["acme", "--", "quit"], 1, "acme quits\n", id="sys.exit(message)"),
    ],
)
def test_run(app: Flask, args: list[str], status: int, output: str) -> None:
    result = invoke(app, "run", *args)
    assert (result.exit_code, result.output) == (status, output)


def test_run_a_command_that_raises(app: Flask) -> None:
    result = invoke(app, "run", "acme", "--", "crash")
    assert result.exit_code == 1
    assert "Traceback (most recent call last):" in result.output
    assert result.output.endswith("RuntimeError: acme crashed\n")


def test_run_an_unknown_command(app: Flask) -> None:
    result = invoke(app, "run", "acme", "--", "nosuch")
    assert result.exit_code == 2
    assert "Usage: flask dispatch run acme -- [OPTIONS] COMMAND [ARGS]..." in result.output
    assert "Error: No such command 'nosuch'." in result.output


def test_run_help_lists_the_tenant_commands(app: Flask) -> None:
    result = invoke(app, "run", "acme", "--", "--help")
    assert result.exit_code == 0
    commands = result.output.partition("Commands:\n")[2].split()
    for command in ("whoami", "fail", "routes", "shell", "run"):
        assert command in commands
    assert "--app" not in result.output, "the host's options are not the tenant's"


def test_run_in_the_tenant_context_only(app: Flask) -> None:
    seen = []

    @app.cli.command("host-only")
    def host_only() -> None:
        pass

    result = invoke(app, "run", "acme", "--", "host-only")
    assert "No such command 'host-only'" in result.output
    tenant = make_tenant("acme")

    @tenant.cli.command("where")
    def where() -> None:
        seen.append(current_app._get_current_object())  # type: ignore[attr-defined]

    dispatch = app.extensions["dispatch"].extension
    dispatch.subdomain(lambda name: tenant)
    assert invoke(app, "run", "acme", "--", "where").exit_code == 0
    assert seen == [tenant]


@pytest.mark.parametrize(
    ("args", "status", "message"),
    [
        pytest.param([], 2, "Error: Name a tenant, or give --all.", id="nothing"),
        pytest.param(["acme"], 2, "Error: Give the command to run", id="no command"),
        pytest.param(["--all"], 2, "Error: Give the command to run", id="--all, no command"),
        pytest.param(
            ["nobody", "--", "whoami"],
            1,
            "Error: Tenant 'nobody': no such tenant: the factory returned None.",
            id="no such tenant",
        ),
        pytest.param(
            ["bare", "--", "whoami"],
            1,
            "Error: Tenant 'bare' is <NamedApp bare>, not a Flask app: it has no commands.",
            id="not Flask",
        ),
        pytest.param(
            ["broken", "--", "whoami"],
            1,
            "Error: Tenant 'broken': the factory raised ValueError: no database for 'broken'.",
            id="raises",
        ),
        pytest.param(
            ["Acme", "--", "whoami"],
            1,
            "Error: 'Acme' cannot be a subdomain tenant: it does not match",
            id="pattern",
        ),
    ],
)
def test_run_fails_with_a_message(app: Flask, args: list[str], status: int, message: str) -> None:
    result = invoke(app, "run", *args)
    assert result.exit_code == status
    assert message in result.output


def set_names(app: Flask, names: t.Callable[[], t.Iterable[t.Any]]) -> None:
    app.extensions["dispatch"].extension.tenant_names(names)


def test_run_all(app: Flask) -> None:
    set_names(app, lambda: iter(["acme", "globex", "acme"]))
    result = invoke(app, "run", "--all", "--", "whoami")
    assert (result.exit_code, result.output) == (
        0,
        lines("== acme ==", "tenant_acme", "== globex ==", "tenant_globex"),
    )


def test_run_all_goes_on_after_failures_and_lists_them(app: Flask) -> None:
    set_names(app, lambda: ["nobody", "acme", "broken", "globex", "bare"])
    result = invoke(app, "run", "--all", "--by", "path", "--", "fail", "4")
    assert result.exit_code == 1
    assert [line for line in result.output.splitlines() if line.startswith("==")] == [
        "== nobody ==",
        "== acme ==",
        "== broken ==",
        "== globex ==",
        "== bare ==",
    ]
    assert result.output.endswith(
        "Error: The command failed for 5 of 5 tenants: nobody (not run), acme (exit status 4),"
        " broken (not run), globex (exit status 4), bare (not run).\n"
    )
    assert factories(app)[1].calls == ["nobody", "acme", "broken", "globex", "bare"]


def test_run_all_stops_at_an_abort(app: Flask) -> None:
    set_names(app, lambda: ["acme", "globex"])
    result = invoke(app, "run", "--all", "--", "abort")
    assert (result.exit_code, result.output) == (1, lines("== acme ==", "Aborted!"))


@pytest.mark.parametrize(
    ("names", "status", "message"),
    [
        pytest.param(None, 1, "Error: --all needs a function that names every tenant", id="none"),
        pytest.param(lambda: [], 0, "No tenants: @dispatch.tenant_names named none.", id="empty"),
        pytest.param(
            lambda: 1 / 0,
            1,
            "Error: The @dispatch.tenant_names function raised ZeroDivisionError",
            id="raises",
        ),
        pytest.param(
            lambda: ["acme", 42],
            1,
            "Error: The @dispatch.tenant_names function named 42, which is not a string.",
            id="not a string",
        ),
        pytest.param(
            lambda: "acme",
            1,
            "Error: The @dispatch.tenant_names function raised TypeError: it returned the"
            " string 'acme', not a list of names.",
            id="one string",
        ),
    ],
)
def test_run_all_needs_tenant_names(
    app: Flask, names: t.Callable[[], t.Iterable[t.Any]] | None, status: int, message: str
) -> None:
    if names is not None:
        set_names(app, names)
    result = invoke(app, "run", "--all", "--", "whoami")
    assert result.exit_code == status
    assert message in result.output
    assert calls(app) == ([], [])


# -- evict, and the group itself ------------------------------------------------------


@pytest.mark.parametrize(
    "args", [pytest.param(["acme"], id="name"), pytest.param(["--all"], id="all")]
)
def test_evict_without_redis_reaches_nothing(app: Flask, args: list[str]) -> None:
    result = invoke(app, "evict", *args)
    assert result.exit_code == 1
    assert "Error: Redis is not configured: app.config['DISPATCH_REDIS_URL']" in result.output
    assert "nothing was evicted" in result.output


@pytest.mark.parametrize(
    ("args", "error"),
    [
        pytest.param([], "Give a tenant name or --all.", id="neither"),
        pytest.param(["acme", "--all"], "Give a tenant name or --all, not both.", id="both"),
        pytest.param(["ACME"], "'ACME' does not match DISPATCH_NAME_PATTERN", id="not-a-name"),
    ],
)
def test_evict_usage_errors(app: Flask, args: list[str], error: str) -> None:
    result = invoke(app, "evict", *args)
    assert result.exit_code == 2
    assert f"Error: {error}" in result.output


def test_an_app_without_dispatch() -> None:
    app = Flask("plain")
    app.cli.add_command(dispatch_cli)
    result = invoke(app, "check", "http://example.com/")
    assert result.exit_code == 1
    assert "flask_dispatch is not registered on the app 'plain'" in result.output


def test_the_group_is_on_every_app(app: Flask) -> None:
    result = invoke(app, "--help")
    assert result.exit_code == 0
    listed = result.output.partition("Commands:\n")[2].splitlines()
    assert [line.split()[0] for line in listed] == ["check", "evict", "routes", "run"]


# -- evict through Redis ----------------------------------------------------------------


@pytest.mark.redis
@pytest.mark.timeout(60)
class TestEvictThroughRedis:
    """``app`` runs ``flask dispatch evict``; ``serving`` stands for another
    process, sharing its Redis, that holds tenants."""

    @pytest.fixture
    def app(self, redis_server: RedisServer) -> Iterator[Flask]:
        app = make_site(DISPATCH_REDIS_URL=redis_server.url)
        yield app
        app.extensions["dispatch"].bus.close()

    @pytest.fixture
    def serving(self, redis_server: RedisServer) -> Iterator[Flask]:
        app = make_site(DISPATCH_REDIS_URL=redis_server.url)
        yield app
        app.extensions["dispatch"].bus.close()

    @pytest.mark.parametrize(
        ("args", "evicted", "kept", "output"),
        [
            pytest.param(
                ["acme"],
                {"acme"},
                {"globex"},
                "Evicted tenant 'acme' in every process that shares this Redis"
                " (127.0.0.1:{port}/0, prefix 'flask_dispatch:example.com').\n",
                id="one tenant",
            ),
            pytest.param(
                ["--all"],
                {"acme", "globex"},
                set(),
                "Evicted every tenant in every process that shares this Redis"
                " (127.0.0.1:{port}/0, prefix 'flask_dispatch:example.com').\n",
                id="every tenant",
            ),
        ],
    )
    def test_the_other_process_drops_the_tenant(
        self,
        app: Flask,
        serving: Flask,
        args: list[str],
        evicted: set[str],
        kept: set[str],
        output: str,
        redis_server: RedisServer,
    ) -> None:
        client = serving.test_client()
        for name in ("acme", "globex"):
            response = client.get("/", base_url=f"http://{name}.example.com/")
            assert response.get_data(as_text=True) == name
        held = serving.extensions["dispatch"].registry
        assert set(held) == {"acme", "globex"}
        result = invoke(app, "evict", *args)
        assert (result.exit_code, result.output) == (0, output.format(port=redis_server.port))
        wait_for(lambda: not evicted & set(held))
        assert set(held) == kept
        assert app.extensions["dispatch"].bus.pending == 0

    def test_the_message_names_the_redis_and_database_used(self, redis_server: RedisServer) -> None:
        # No process may listen on database 3: the message lets that show.
        app = make_site(DISPATCH_REDIS_URL=f"redis://127.0.0.1:{redis_server.port}/3")
        result = invoke(app, "evict", "acme")
        assert result.exit_code == 0
        prefix = "'flask_dispatch:example.com'"  # the site's own, from its domain
        assert f"(127.0.0.1:{redis_server.port}/3, prefix {prefix})" in result.output

    def test_redis_unreachable_is_a_failure(self, app: Flask, redis_server: RedisServer) -> None:
        redis_server.stop()
        result = invoke(app, "evict", "acme")
        assert result.exit_code == 1
        assert re.search(
            rf"Error: The eviction of tenant 'acme' was not sent to Redis"
            rf" \(127\.0\.0\.1:{redis_server.port}/0: Error 111 connecting to [^)]*\), and"
            r" no other process was told\.\n",
            result.output,
        ), result.output

    def test_redis_that_hangs_is_a_failure_that_says_the_eviction_may_have_arrived(
        self,
    ) -> None:
        with silent_server() as port:
            app = make_site(DISPATCH_REDIS_URL=f"redis://127.0.0.1:{port}/0")
            result = invoke(app, "evict", "acme")
        assert result.exit_code == 1
        assert result.output == (
            f"Error: The eviction of tenant 'acme' was perhaps not sent to Redis"
            f" (127.0.0.1:{port}/0: Timeout reading from socket), and perhaps no other"
            " process was told.\n"
        )

    def test_a_write_redis_refuses_is_a_failure_that_says_why(
        self, app: Flask, redis_server: RedisServer
    ) -> None:
        # The stream's key holds a string: Redis is there, and says no.
        redis.Redis.from_url(redis_server.url).set("flask_dispatch:example.com:evictions", "x")
        result = invoke(app, "evict", "acme")
        assert result.exit_code == 1
        assert "was not sent to Redis" in result.output
        assert "WRONGTYPE" in result.output
        assert "unreachable" not in result.output

    def test_a_name_redis_cannot_carry_evicts_every_tenant_and_says_so(
        self, redis_server: RedisServer
    ) -> None:
        config = {"DISPATCH_REDIS_URL": redis_server.url, "DISPATCH_NAME_PATTERN": "[a-z]+"}
        app, serving = make_site(**config), make_site(**config)
        try:
            client = serving.test_client()
            for name in ("acme", "globex"):
                client.get("/", base_url=f"http://{name}.example.com/")
            held = serving.extensions["dispatch"].registry
            assert set(held) == {"acme", "globex"}
            result = invoke(app, "evict", "a" * (MAX_NAME + 1))
            assert result.exit_code == 0
            assert result.output.startswith(
                "Evicted every tenant (a name sent through Redis is UTF-8 of at most 1,024"
                " bytes, and 'aaaa"
            )
            wait_for(lambda: not set(held))
        finally:
            for site in (app, serving):
                site.extensions["dispatch"].bus.close()

    def test_unreachable_redis_fails_every_time(self, redis_server: RedisServer) -> None:
        # The sender thread may be sending when the command closes the bus:
        # the command must still see what was not sent.
        redis_server.stop()
        for _ in range(15):
            app = make_host_app(DISPATCH_REDIS_URL=redis_server.url)
            Dispatch(app).subdomain(RecordingFactory())
            assert app.test_cli_runner().invoke(args=["dispatch", "evict", "acme"]).exit_code == 1


# -- the "Command line" page ------------------------------------------------------------

DOCS_PAGE = Path(__file__).parent.parent / "docs" / "cli.rst"


def code_blocks() -> list[tuple[str, str]]:
    """``(language, text)`` of each code block on the page, in order."""
    blocks = []
    page = DOCS_PAGE.read_text().splitlines()
    for i, line in enumerate(page):
        match = re.fullmatch(r"\.\. code-block:: (\w+)", line)
        if match is None:
            continue
        body: list[str] = []
        for inner in page[i + 1 :]:
            if inner and not inner.startswith("    "):
                break
            if not inner.startswith("    :"):
                body.append(inner[4:])
        blocks.append((match[1], "\n".join(body).strip("\n")))
    return blocks


def sessions() -> list[t.Any]:
    return [
        pytest.param(text, id=text.splitlines()[0].removeprefix("$ "))
        for language, text in code_blocks()
        if language == "console"
    ]


def test_the_page_has_only_blocks_that_are_run() -> None:
    text = DOCS_PAGE.read_text()
    assert [language for language, _ in code_blocks()] == ["python"] + ["console"] * len(sessions())
    assert text.count(".. code-block::") == len(code_blocks())
    assert not re.search(r"(?m)::\n\n", text.replace(".. code-block::", "")), "a literal block"


@pytest.mark.timeout(120)
@pytest.mark.parametrize("session", sessions())
def test_docs_session(session: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """Each ``$ flask ...`` line runs in a new ``flask`` process, in a directory
    holding the page's ``app.py``; ``echo $?`` and ``export`` act as in a shell.
    Output lines are compared without trailing spaces (``flask routes`` pads)."""
    source = "\n\n".join(text for language, text in code_blocks() if language == "python")
    (tmp_path / "app.py").write_text(source + "\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLASK_")}
    env["PYTHONUNBUFFERED"] = "1"  # stdout and stderr interleaved as on a terminal
    steps: list[tuple[str, list[str]]] = []
    for line in session.splitlines():
        if line.startswith("$ "):
            steps.append((line[2:], []))
        else:
            steps[-1][1].append(line)
    status = 0
    named_as: dict[str, str] = {}  # the test server's place -> the page's
    for command, expected in steps:
        if command == "echo $?":
            got = [str(status)]
        elif command.startswith("export "):
            key, _, value = command.removeprefix("export ").partition("=")
            if value.startswith("redis://"):  # the page's Redis is a test server here
                server = request.getfixturevalue("redis_server")
                named_as[f"127.0.0.1:{server.port}/0"] = value.removeprefix("redis://")
                value = server.url
            env[key] = value
            got = []
        else:
            argv = shlex.split(command)
            assert argv[0] == "flask"
            done = subprocess.run(
                [sys.executable, "-m", "flask", *argv[1:]],
                cwd=tmp_path,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                timeout=60,
            )
            status = done.returncode
            got = [line.rstrip() for line in done.stdout.splitlines()]
            for place, name in named_as.items():
                got = [line.replace(place, name) for line in got]
        assert got == expected, f"$ {command}"
