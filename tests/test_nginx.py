"""The deployment that ``docs/deploying.rst`` shows, run for real: nginx with
the page's own site configuration (``docs/nginx/dispatch.conf``, only its
ports and certificate folder replaced) in front of gunicorn serving the
example project, over TLS with a wildcard certificate for ``example.com``
and ``*.example.com``.

Requests go to 127.0.0.1 with the host name in the Host header and in TLS's
SNI; Chromium is told that ``example.com`` and its subdomains are 127.0.0.1.
Skipped when nginx or openssl is missing, unless
``DISPATCH_TEST_REQUIRE_NGINX=1`` (CI) turns the skip into a failure.
"""

from __future__ import annotations

import contextlib
import dataclasses
import http.client
import re
import socket
import ssl
import threading
import typing as t
from dataclasses import dataclass

import pytest

from .conftest import available
from .nginx_server import Nginx, make_certificates, missing, nginx, site_config
from .servers import Gunicorn, free_port, gunicorn
from .test_browser import Steps, add_note, add_note_by_path, sign_up
from .test_browser import chromium as launch_chromium

if t.TYPE_CHECKING:
    from pathlib import Path

    from playwright.sync_api import Browser

pytestmark = [pytest.mark.nginx, pytest.mark.server]

#: Where Chromium finds the site: every name of it is this machine.
RESOLVE = "--host-resolver-rules=MAP example.com 127.0.0.1, MAP *.example.com 127.0.0.1"


@dataclass
class Site:
    """nginx on ``http`` and ``https`` (loopback) in front of ``server``."""

    http: int
    https: int
    ca: Path
    server: Gunicorn
    nginx: Nginx


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> t.Iterator[Site]:
    reason = missing()
    available(reason, "DISPATCH_TEST_REQUIRE_NGINX")
    folder = tmp_path_factory.mktemp("deploy")
    ca = make_certificates(folder / "tls")
    env = {
        "FLASK_DISPATCH_DOMAIN": "example.com",
        "FLASK_TENANT_DIRECTORY": str(folder / "tenants.sqlite3"),
        "FLASK_TENANT_DATA_DIR": str(folder / "tenant-data"),
        "FLASK_SECRET_KEY": "nginx-test",
        # The demo tenants "acme" and "globex".
        "FLASK_SEED_DEMO_TENANTS": "true",
    }
    # As if nginx ran on another machine: gunicorn then leaves
    # X-Forwarded-Proto alone (it trusts it from 127.0.0.1 by default), so
    # what the apps see comes from the page's ProxyFix line alone.
    args = ["--forwarded-allow-ips", "192.0.2.1"]
    with gunicorn("tests.nginx_app:create()", env, workers=2, threads=4, extra_args=args) as server:
        http_port, https_port = free_port(), free_port()
        conf = site_config(
            upstream=server.port, http=http_port, https=https_port, tls=folder / "tls"
        )
        with nginx(folder / "nginx", conf, [http_port, https_port]) as running:
            yield Site(http_port, https_port, ca, server, running)


class Reply(t.NamedTuple):
    status: int
    headers: http.client.HTTPMessage
    body: str


def fetch(
    site: Site,
    host: str,
    path: str = "/",
    *,
    https: bool = True,
    sni: str | None = None,
    source: str = "127.0.0.1",
    verify: bool = True,
    headers: t.Mapping[str, str] | None = None,
) -> Reply:
    """GET ``path`` from nginx with ``Host: host:port`` (``host`` as is if it
    has a port), over TLS with ``host`` (or ``sni``) as the server name,
    verified against the test CA unless ``verify`` is false. The
    connection comes from ``source``."""
    port = site.https if https else site.http
    sock = socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(source, 0))
    if https:
        context = ssl.create_default_context(cafile=str(site.ca))
        if not verify:
            context.check_hostname = False
        sock = context.wrap_socket(sock, server_hostname=sni or host.partition(":")[0])
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.sock = sock
    try:
        host_header = host if ":" in host else f"{host}:{port}"
        connection.request("GET", path, headers={"Host": host_header, **(headers or {})})
        response = connection.getresponse()
        return Reply(response.status, response.headers, response.read().decode())
    finally:
        connection.close()


def heading(body: str) -> str:
    match = re.search(r"<h1><a [^>]*>([^<]*)</a></h1>", body)
    assert match, body[:500]
    return match.group(1)


@pytest.mark.parametrize(
    ("host", "path", "status", "expected"),
    [
        pytest.param("acme.example.com", "/", 200, "Acme Corporation", id="subdomain"),
        pytest.param("globex.example.com", "/", 200, "Globex", id="other-subdomain"),
        pytest.param("example.com", "/acme/", 200, "Acme Corporation", id="path"),
        pytest.param("example.com", "/", 200, "Notes for teams", id="host-app"),
        pytest.param("nobody.example.com", "/", 404, None, id="unknown-subdomain"),
        pytest.param("example.com", "/nobody/", 404, None, id="unknown-path"),
    ],
)
def test_tenants_through_nginx(
    site: Site, host: str, path: str, status: int, expected: str | None
) -> None:
    reply = fetch(site, host, path)
    assert reply.status == status, reply.body[:500]
    if expected is None:
        assert 'id="site-404"' in reply.body  # the host app's own 404 page
    else:
        assert heading(reply.body) == expected


def test_wildcard_certificate_covers_one_label(site: Site) -> None:
    # nginx's *.example.com matches any depth, the certificate one label.
    with pytest.raises(ssl.SSLCertVerificationError, match=r"not valid for 'a\.b\.example\.com'"):
        fetch(site, "a.b.example.com")
    # Past the certificate, dispatch takes one label too: the site's 404.
    reply = fetch(site, "a.b.example.com", verify=False)
    assert reply.status == 404 and 'id="site-404"' in reply.body


@pytest.mark.parametrize(
    ("host", "path", "script_root"),
    [
        pytest.param("example.com", "/_seen", "", id="host-app"),
        pytest.param("acme.example.com", "/_seen", "", id="subdomain"),
        pytest.param("example.com", "/acme/_seen", "/acme", id="path"),
    ],
)
def test_apps_see_the_client_not_the_proxy(
    site: Site, host: str, path: str, script_root: str
) -> None:
    # The client's own forwarded headers are not believed: nginx replaces
    # X-Forwarded-Proto and -Host, and ProxyFix takes the one address nginx
    # appended to X-Forwarded-For. 127.0.0.2 is the client, 127.0.0.1 nginx.
    spoofed = {
        "X-Forwarded-For": "203.0.113.9",
        "X-Forwarded-Proto": "http",
        "X-Forwarded-Host": "globex.example.com",
    }
    reply = fetch(site, host, path, source="127.0.0.2", headers=spoofed)
    assert reply.status == 200, reply.body[:500]
    assert reply.body == f"127.0.0.2 https {host}:{site.https} {script_root}"


@pytest.mark.parametrize(
    ("url", "seen"),
    [
        pytest.param("https://acme.example.com:{port}/_seen", "acme.example.com", id="subdomain"),
        pytest.param("https://example.com:{port}/acme/_seen", "example.com", id="path"),
    ],
)
def test_a_full_url_in_the_request_line_wins_over_the_host_header(
    site: Site, url: str, seen: str
) -> None:
    # nginx picks the server block by the URL; the app must see that host,
    # not the forged Host header, or it would put evil.test in its links.
    reply = fetch(site, "evil.test", url.format(port=site.https), sni=seen)
    assert reply.status == 200, reply.body[:500]
    assert reply.body.split()[2] == f"{seen}:{site.https}"


@pytest.fixture
def port_in_front(site: Site) -> t.Iterator[int]:
    """Another port in front of nginx's HTTPS port, as ``docker -p`` or a
    load balancer puts one: it relays each connection as it is."""
    listener = socket.create_server(("127.0.0.1", 0))
    opened: list[socket.socket] = []
    relays: list[threading.Thread] = []

    def relay(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
            sink.shutdown(socket.SHUT_WR)

    def accept() -> None:
        with contextlib.suppress(OSError):  # the listener was closed
            while True:
                client, _ = listener.accept()
                opened.append(client)
                opened.append(socket.create_connection(("127.0.0.1", site.https), timeout=10))
                for pair in ((client, opened[-1]), (opened[-1], client)):
                    relays.append(threading.Thread(target=relay, args=pair, daemon=True))
                    relays[-1].start()

    acceptor = threading.Thread(target=accept, daemon=True)
    acceptor.start()
    yield listener.getsockname()[1]
    listener.shutdown(socket.SHUT_RDWR)  # wakes accept()
    listener.close()
    acceptor.join(5)
    for thread in relays:
        thread.join(5)
    for connection in opened:
        connection.close()


def test_links_keep_the_port_the_client_used(site: Site, port_in_front: int) -> None:
    front = dataclasses.replace(site, https=port_in_front)
    seen = fetch(front, "acme.example.com", "/_seen").body
    assert seen.split()[2] == f"acme.example.com:{port_in_front}"
    assert f'href="https://acme.example.com:{port_in_front}/"' in fetch(front, "example.com").body


def test_landing_links_to_subdomains_over_https(site: Site) -> None:
    body = fetch(site, "example.com").body
    assert f'href="https://acme.example.com:{site.https}/"' in body
    assert f'href="https://globex.example.com:{site.https}/"' in body


@pytest.mark.parametrize(
    "host",
    [
        pytest.param("acme.example.com", id="subdomain"),
        pytest.param("example.com", id="domain"),
        pytest.param("nobody.example.com", id="unknown-tenant"),
    ],
)
def test_plain_http_moves_to_https(site: Site, host: str) -> None:
    reply = fetch(site, host, "/acme/notes?x=1", https=False)
    assert reply.status == 301
    # The documented redirect goes to the standard port, 443.
    assert reply.headers["Location"] == f"https://{host}/acme/notes?x=1"


@pytest.mark.parametrize(
    ("host", "https", "sni"),
    [
        pytest.param("evil.test", False, None, id="http-foreign"),
        pytest.param("example.com.evil.test", False, None, id="http-suffix"),
        pytest.param("127.0.0.1", False, None, id="http-ip"),
        pytest.param("acme.example.com", True, "evil.test", id="https-foreign-sni"),
        pytest.param("evil.test", True, "acme.example.com", id="https-foreign-host"),
    ],
)
def test_other_hosts_get_no_answer(site: Site, host: str, https: bool, sni: str | None) -> None:
    with pytest.raises((http.client.RemoteDisconnected, ssl.SSLError, ConnectionResetError)):
        # Not the client's check of the name: the server must refuse.
        fetch(site, host, https=https, sni=sni, verify=False)


@pytest.mark.parametrize("https", [pytest.param(False, id="http"), pytest.param(True, id="https")])
def test_requests_without_a_name_get_no_answer(site: Site, https: bool) -> None:
    # HTTP/1.0 without a Host header; TLS without a server name (SNI).
    port = site.https if https else site.http
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        if https:
            context = ssl.create_default_context(cafile=str(site.ca))
            context.check_hostname = False
            with pytest.raises(ssl.SSLError):
                context.wrap_socket(sock)
        else:
            sock.sendall(b"GET / HTTP/1.0\r\n\r\n")
            assert sock.recv(65536) == b""


@pytest.fixture(scope="module")
def chromium() -> t.Iterator[Browser]:
    with launch_chromium(RESOLVE) as started:
        yield started


@pytest.mark.browser
def test_signup_and_notes_in_chromium(site: Site, chromium: Browser) -> None:
    # The certificate is checked by fetch() above; Chromium does not know
    # the test CA.
    context = chromium.new_context(ignore_https_errors=True)
    page = context.new_page()
    steps = Steps(page, "nginx-signup")
    base = f"https://example.com:{site.https}"
    sub = f"https://initech.example.com:{site.https}/"

    sign_up(page, base, "initech", "Initech", "#7c3aed")
    assert page.locator(".flash.ok").inner_text().startswith("Welcome, Initech")
    steps.shot("signed-up")

    page.click("text=initech subdomain")
    assert page.url == sub
    assert page.locator("header h1").inner_text() == "Initech"
    add_note(page, "Through nginx")
    assert page.url == sub
    assert "Through nginx" in page.locator("#notes").inner_text()
    steps.shot("subdomain-note-added")

    page.goto(f"{base}/initech/")
    assert "Through nginx" in page.locator("#notes").inner_text()
    add_note_by_path(page, f"{base}/initech/", "By path")
    steps.shot("path-note-added")

    response = page.goto(f"https://nobody.example.com:{site.https}/")
    assert response is not None and response.status == 404
    assert page.locator("#site-404").is_visible()
    steps.shot("unknown-tenant")

    sign_up(page, base, "initech", "Another Initech")
    assert "“initech” is taken" in page.locator(".flash.error").inner_text()
    steps.shot("name-taken")
    context.close()


def test_nothing_went_wrong_in_the_servers(site: Site) -> None:
    errors = re.findall(r"^.*\[(?:error|crit|alert|emerg)\].*$", site.nginx.error_log(), re.M)
    assert not errors, errors
    assert not any("Traceback" in line for line in site.server.log), "".join(site.server.log)
