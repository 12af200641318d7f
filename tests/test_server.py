"""A real WSGI server (gunicorn, gthread workers) on loopback, spoken to with
raw HTTP over sockets, so nothing normalises the requests on the way."""

from __future__ import annotations

import socket
import typing as t
from concurrent.futures import ThreadPoolExecutor

import pytest

from .servers import Gunicorn, gunicorn

pytestmark = pytest.mark.server


@pytest.fixture(scope="module")
def server() -> t.Iterator[Gunicorn]:
    with gunicorn("tests.server_app:create()", workers=1, threads=8) as running:
        yield running


def raw(port: int, request: bytes, timeout: float = 10.0) -> tuple[int, bytes]:
    """Send ``request`` as is to 127.0.0.1:``port``; return the status and
    the body."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(request)
        chunks = []
        while True:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            chunks.append(chunk)
    data = b"".join(chunks)
    assert data.startswith(b"HTTP/1."), data[:200]
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


def get(path: str = "/", *headers: str, version: str = "1.1", target: str | None = None) -> bytes:
    lines = [f"GET {target or path} HTTP/{version}", *headers, "Connection: close", "", ""]
    return "\r\n".join(lines).encode("latin-1")


@pytest.mark.parametrize(
    ("request_bytes", "status", "body"),
    [
        pytest.param(get("/", "Host: acme.example.com"), 200, b"tenant acme |/", id="tenant"),
        pytest.param(
            get("/x", "Host: ACME.Example.com.:8080"), 200, b"tenant acme |/x", id="spelling"
        ),
        pytest.param(get("/acme/x", "Host: example.com"), 200, b"tenant acme /acme|/x", id="path"),
        pytest.param(get("/", "Host: example.com"), 200, b"host index", id="host-app"),
        pytest.param(get("/", "Host: nobody.example.com"), 404, b"site 404 page", id="unknown"),
        pytest.param(get("/", "Host: a.b.example.com"), 404, b"site 404 page", id="two-labels"),
        pytest.param(get("/", "Host: acme..example.com"), 400, b"site 400 page", id="empty-label"),
        pytest.param(get("/", "Host: acme.example.com:http"), 400, b"site 400 page", id="bad-port"),
        pytest.param(get("/", "Host: example.com@evil.tld"), 400, b"site 400 page", id="userinfo"),
        pytest.param(get("/", "Host: b\xc3\xbccher.example.com"), 400, None, id="raw-utf8"),
        pytest.param(
            get("/", "Host: acme.example.com", "Host: globex.example.com"),
            400,
            None,
            id="two-hosts",
        ),
        pytest.param(get("/", "Host: " + "a" * 300 + ".example.com"), 400, None, id="long-host"),
        # Past gunicorn's header field limit: the server answers itself.
        pytest.param(get("/", "Host: " + "a" * 9000), 431, None, id="very-long-host"),
        pytest.param(get("/", "Host:"), 400, None, id="empty-host"),
        # HTTP/1.0 without Host: SERVER_NAME (the bind address) -> host app.
        pytest.param(get("/", version="1.0"), 200, b"host index", id="http10-no-host"),
        pytest.param(
            get("/", version="1.0", target="/acme/y"),
            200,
            b"tenant acme /acme|/y",
            id="http10-path",
        ),
        # Absolute-form: gunicorn keeps the Host header in HTTP_HOST (Werkzeug's
        # server would put the target's authority there). Dispatch uses the
        # host the app sees, so both agree: the host app gets /z, a 404.
        pytest.param(
            get("/", "Host: example.com", target="http://acme.example.com/z"),
            404,
            b"site 404 page",
            id="absolute-form",
        ),
        pytest.param(get("/%2e%2e/acme/", "Host: example.com"), 404, None, id="encoded-dots"),
    ],
)
def test_raw_requests(
    server: Gunicorn, request_bytes: bytes, status: int, body: bytes | None
) -> None:
    got_status, got_body = raw(server.port, request_bytes)
    assert got_status == status, (got_status, got_body[:200])
    if body is not None:
        assert got_body == body


@pytest.mark.parametrize(
    ("script_name", "path", "body"),
    [
        pytest.param("/pre/", "/pre/acme/x", b"tenant acme /pre/acme|/x", id="trailing-slash"),
        pytest.param("/pre", "/pre/acme/x", b"tenant acme /pre/acme|/x", id="no-trailing-slash"),
        pytest.param("/", "/acme/x", b"tenant acme /acme|/x", id="root"),
    ],
)
def test_a_site_served_under_a_script_name(script_name: str, path: str, body: bytes) -> None:
    # gunicorn reads SCRIPT_NAME from its environment, and strips it as
    # given: "/pre/" leaves PATH_INFO "acme/x", without its leading slash.
    with gunicorn("tests.server_app:create()", {"SCRIPT_NAME": script_name}, threads=1) as app:
        assert raw(app.port, get(path, "Host: example.com")) == (200, body)


def test_still_serving_after_hostile_requests(server: Gunicorn) -> None:
    hostile = [
        get("/", "Host: acme..example.com"),
        get("/", "Host: " + "a" * 9000),
        get("/", "Host: a", "Host: b"),
        get("/", "Host: acme.example.com\x00"),
        b"GARBAGE\r\n\r\n",
    ]
    for request_bytes in hostile * 5:
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            sock.sendall(request_bytes)
            sock.recv(65536)

    def valid(i: int) -> tuple[int, bytes]:
        name = ("acme", "globex")[i % 2]
        return raw(server.port, get("/", f"Host: {name}.example.com"))

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(valid, range(64)))
    assert results == [(200, f"tenant {('acme', 'globex')[i % 2]} |/".encode()) for i in range(64)]
    assert server.process.poll() is None
    assert not any("Traceback" in line for line in server.log), "".join(server.log)


def test_werkzeug_server_goes_through_dispatch() -> None:
    """What run_simple serves: Werkzeug's own server, in a thread."""
    import threading

    from werkzeug.serving import make_server

    from .server_app import create

    server = make_server("127.0.0.1", 0, create(), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        port = server.port
        assert raw(port, get("/", "Host: acme.example.com")) == (200, b"tenant acme |/")
        assert raw(port, get("/acme/q", "Host: example.com")) == (200, b"tenant acme /acme|/q")
        assert raw(port, get("/", "Host: acme..example.com")) == (400, b"site 400 page")
        # Werkzeug's server puts an absolute-form target's authority in
        # HTTP_HOST, so there the tenant answers.
        status, body = raw(port, get("/", "Host: example.com", target="http://acme.example.com/z"))
        assert (status, body) == (200, b"tenant acme |/z")
    finally:
        server.shutdown()
        thread.join(10)
