"""Hostile and tricky input, as a raw WSGI environ (the Flask test client
would normalise some of it away). For each case: the status, the factory
calls, what the registry holds afterwards, and that bad input leaves nothing
behind in dispatch's memos."""

from __future__ import annotations

import gc
import tracemalloc
import typing as t

import pytest
from werkzeug.middleware.proxy_fix import ProxyFix

from flask_dispatch import Dispatch

from .conftest import RecordingFactory, call, make_host_app

if t.TYPE_CHECKING:
    from flask import Flask

LONG_LABEL = "a" * 64
LONG_NAME = ".".join(["abcdefghi"] * 30)  # 299 characters


class Case(t.NamedTuple):
    status: int
    calls: list[str]
    held: int
    body: str | None = None


@pytest.fixture
def hostile() -> tuple[Flask, RecordingFactory, RecordingFactory]:
    app = make_host_app()
    dispatch = Dispatch(app)
    sub = RecordingFactory(known={"acme", "globex", "xn--bcher-kva"})
    path = RecordingFactory(known={"acme", "beta"}, prefix="path:")
    dispatch.subdomain(sub)
    dispatch.path(path)
    return app, sub, path


def retained(action: t.Callable[[], object]) -> int:
    """Bytes still allocated after ``action`` ran and garbage was collected."""
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        action()
        gc.collect()
        return tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()


HOSTS = [
    # Same tenant, one instance.
    pytest.param("ACME.example.com", Case(200, ["acme"], 1, "acme||/|acme"), id="upper-name"),
    pytest.param("acme.EXAMPLE.com", Case(200, ["acme"], 1, "acme||/|acme"), id="upper-domain"),
    pytest.param("acme.example.com.", Case(200, ["acme"], 1, "acme||/|acme"), id="trailing-dot"),
    pytest.param("acme.example.com:8080", Case(200, ["acme"], 1), id="tenant-port"),
    pytest.param("acme.example.com.:443", Case(200, ["acme"], 1), id="dot-port"),
    # Malformed: 400, nothing called, nothing kept.
    pytest.param("acme.example.com:", Case(400, [], 0), id="empty-port"),
    pytest.param("acme.example.com:0", Case(400, [], 0), id="port-0"),
    pytest.param("acme.example.com:080", Case(400, [], 0), id="port-leading-zero"),
    pytest.param("acme..example.com", Case(400, [], 0), id="empty-label"),
    pytest.param("example.com..", Case(400, [], 0), id="two-trailing-dots"),
    pytest.param(".example.com", Case(400, [], 0), id="leading-dot"),
    pytest.param("example.com:99999999", Case(400, [], 0), id="port-99999999"),
    pytest.param("example.com:65536", Case(400, [], 0), id="port-65536"),
    pytest.param("example.com:+80", Case(400, [], 0), id="port-plus"),
    pytest.param("example.com:0x50", Case(400, [], 0), id="port-hex"),
    pytest.param("example.com:80:80", Case(400, [], 0), id="two-ports"),
    pytest.param("a.test:8080@b.test", Case(400, [], 0), id="userinfo-port"),
    pytest.param("example.com@evil.tld", Case(400, [], 0), id="userinfo"),
    pytest.param("example.com:80/badpath", Case(400, [], 0), id="host-with-path"),
    pytest.param("acme.example.com, globex.example.com", Case(400, [], 0), id="comma"),
    pytest.param("acme.example.com\r\nX-Injected: 1", Case(400, [], 0), id="crlf"),
    pytest.param("acme.example.com\x00", Case(400, [], 0), id="nul"),
    pytest.param(" acme.example.com", Case(400, [], 0), id="leading-space"),
    pytest.param("_acme.example.com", Case(400, [], 0), id="underscore"),
    pytest.param("%61cme.example.com", Case(400, [], 0), id="percent-encoded"),
    pytest.param(f"{LONG_LABEL}.example.com", Case(400, [], 0), id="64-char-label"),
    pytest.param(f"{LONG_NAME}.example.com", Case(400, [], 0), id="300-char-name"),
    pytest.param("x" * 10_000, Case(400, [], 0), id="10k-chars"),
    pytest.param("b\xc3\xbccher.example.com", Case(400, [], 0), id="raw-utf8"),
    pytest.param("\u212aacme.example.com", Case(400, [], 0), id="kelvin-sign"),
    pytest.param("", Case(400, [], 0), id="empty"),
    pytest.param("[::1", Case(400, [], 0), id="ipv6-unclosed"),
    # Well formed, under the domain, no such tenant: 404 without a call.
    pytest.param("a.b.example.com", Case(404, [], 0, "site 404 page"), id="two-labels"),
    pytest.param("-acme.example.com", Case(404, [], 0), id="leading-hyphen"),
    pytest.param("acme-.example.com", Case(404, [], 0), id="trailing-hyphen"),
    # Asked, answered "no": 404, remembered as a miss, nothing held.
    pytest.param("nobody.example.com", Case(404, ["nobody"], 0), id="unknown-tenant"),
    pytest.param(
        "xn--bcher-kva.example.com",
        Case(200, ["xn--bcher-kva"], 1, "xn--bcher-kva||/|xn--bcher-kva"),
        id="punycode",
    ),
    # The host app's side.
    pytest.param("example.com", Case(200, [], 0, "host index"), id="domain"),
    pytest.param("example.com:80", Case(200, [], 0, "host index"), id="domain-port-80"),
    pytest.param("example.com:8080", Case(200, [], 0, "host index"), id="domain-port-8080"),
    pytest.param("www.example.com", Case(200, [], 0, "host index"), id="reserved"),
    pytest.param("attacker.org", Case(200, [], 0, "host index"), id="foreign"),
    pytest.param("evilexample.com", Case(200, [], 0, "host index"), id="suffix-not-label"),
    pytest.param("example.com.evil.org", Case(200, [], 0, "host index"), id="domain-as-prefix"),
    pytest.param("[::1]:8080", Case(200, [], 0, "host index"), id="ipv6"),
    pytest.param("127.0.0.1", Case(200, [], 0, "host index"), id="ipv4"),
    pytest.param(None, Case(200, [], 0, "host index"), id="no-host-header-http10"),
]


@pytest.mark.parametrize(("host", "case"), HOSTS)
def test_hostile_hosts(
    hostile: tuple[Flask, RecordingFactory, RecordingFactory], host: str | None, case: Case
) -> None:
    app, sub, path = hostile
    response = call(app, "/", host=host)
    assert response.status == case.status, response
    if case.body is not None:
        assert response.body == case.body
    if case.status == 400:
        assert response.body == "site 400 page"
    assert sub.calls == case.calls and path.calls == []
    with app.app_context():
        registry = app.extensions["dispatch"].registry
        assert len(registry) == case.held
        assert registry.stats().misses == (1 if case.status == 404 and case.calls else 0)
    # A second identical request: same answer, no second factory call.
    assert call(app, "/", host=host).status == case.status
    assert sub.calls == case.calls


def test_spellings_share_one_instance(
    hostile: tuple[Flask, RecordingFactory, RecordingFactory],
) -> None:
    app, sub, _ = hostile
    for host in ("ACME.example.com", "acme.EXAMPLE.com", "acme.example.com.", "acme.example.com:1"):
        assert call(app, host=host).status == 200
    assert sub.calls == ["acme"]
    with app.app_context():
        assert len(app.extensions["dispatch"].registry) == 1


@pytest.mark.parametrize(
    ("forwarded", "proxy_fix", "case"),
    [
        pytest.param("evil.com", False, Case(200, ["acme"], 1, "acme||/|acme"), id="ignored"),
        pytest.param("globex.example.com", True, Case(200, ["globex"], 1), id="honoured"),
        pytest.param("evil..com", True, Case(400, [], 0), id="honoured-and-validated"),
        pytest.param("evil.com", True, Case(200, [], 0, "host index"), id="honoured-foreign"),
    ],
)
def test_forwarded_host(
    hostile: tuple[Flask, RecordingFactory, RecordingFactory],
    forwarded: str,
    proxy_fix: bool,
    case: Case,
) -> None:
    app, sub, _ = hostile
    if proxy_fix:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_host=1)  # type: ignore[method-assign]
    response = call(app, host="acme.example.com", HTTP_X_FORWARDED_HOST=forwarded)
    assert response.status == case.status
    if case.body is not None:
        assert response.body == case.body
    assert sub.calls == case.calls


PATHS = [
    pytest.param("", Case(308, [], 0), id="empty"),
    pytest.param("/", Case(200, [], 0, "host index"), id="root"),
    pytest.param("//acme/x", Case(404, [], 0, "site 404 page"), id="double-slash"),
    pytest.param("/ACME/x", Case(404, [], 0, "site 404 page"), id="upper"),
    pytest.param("/acme/x", Case(200, ["acme"], 1, "path:acme|{s}/acme|/x|acme"), id="tenant"),
    pytest.param("/acme", Case(200, ["acme"], 1, "path:acme|{s}/acme||acme"), id="bare-tenant"),
    pytest.param(
        "/acme/../beta/x",
        Case(200, ["acme"], 1, "path:acme|{s}/acme|/../beta/x|acme"),
        id="dot-dot-stays",
    ),
    pytest.param("/acme%2Fadmin/x", Case(404, [], 0, "site 404 page"), id="undecoded-2f"),
    pytest.param(
        "/acme/admin/x", Case(200, ["acme"], 1, "path:acme|{s}/acme|/admin/x|acme"), id="decoded-2f"
    ),
    pytest.param("/" + "a" * 5000 + "/x", Case(404, [], 0), id="5000-char-segment"),
    pytest.param("/" + "a" * 64 + "/x", Case(404, [], 0), id="64-char-segment"),
    pytest.param("/nobody/x", Case(404, ["nobody"], 0, "site 404 page"), id="unknown-tenant"),
    pytest.param("/login", Case(200, [], 0, "host login"), id="host-route"),
    pytest.param("/static/app.css", Case(404, [], 0), id="static"),
    pytest.param("/www/x", Case(404, [], 0), id="reserved"),
    pytest.param("/a.b/x", Case(404, [], 0), id="dot-in-segment"),
    pytest.param("/%00/x", Case(404, [], 0), id="percent-nul"),
]


@pytest.mark.parametrize(
    "script_name", [pytest.param("", id="root"), pytest.param("/outer", id="mounted")]
)
@pytest.mark.parametrize(("path", "case"), PATHS)
def test_hostile_paths(
    hostile: tuple[Flask, RecordingFactory, RecordingFactory],
    path: str,
    case: Case,
    script_name: str,
) -> None:
    app, sub, factory = hostile
    response = call(app, path, host="example.com", script_name=script_name)
    assert response.status == case.status, response
    if case.body is not None:
        assert response.body == case.body.format(s=script_name)
    assert factory.calls == case.calls and sub.calls == []
    with app.app_context():
        assert len(app.extensions["dispatch"].registry) == case.held


def test_tenant_sees_exactly_what_came_in(
    hostile: tuple[Flask, RecordingFactory, RecordingFactory],
) -> None:
    app, _, _ = hostile
    body = call(app, "/acme/a/b/", host="example.com", script_name="/outer").body
    _, script, path_info, _ = body.split("|")
    assert script + path_info == "/outer/acme/a/b/"


@pytest.mark.parametrize(
    ("requests", "most_bytes"),
    [
        pytest.param(
            lambda app: [call(app, host=f"x{i}..example.com") for i in range(3000)],
            30_000,
            id="malformed-hosts",
        ),
        pytest.param(
            lambda app: [call(app, host=f"-x{i}.example.com") for i in range(3000)],
            30_000,
            id="names-the-pattern-rejects",
        ),
        pytest.param(
            lambda app: [call(app, f"/{'a' * 80}{i}/x") for i in range(3000)],
            30_000,
            id="long-path-segments",
        ),
        pytest.param(
            lambda app: [call(app, f"/acme/{i}") for i in range(3000)],
            30_000,
            id="paths-of-a-held-tenant",
        ),
    ],
)
def test_floods_keep_nothing(
    hostile: tuple[Flask, RecordingFactory, RecordingFactory],
    requests: t.Callable[[Flask], list[t.Any]],
    most_bytes: int,
) -> None:
    # Each of these would cost a few hundred bytes if it were remembered.
    app, sub, path = hostile
    call(app, "/acme/x")  # the tenant is held, and every code path has run once
    call(app, host="x..example.com")
    call(app, "/" + "a" * 80)
    assert retained(lambda: requests(app)) < most_bytes
    assert sub.calls == [] and path.calls == ["acme"]


@pytest.mark.parametrize(
    ("factories", "requests"),
    [
        pytest.param(
            "subdomain",
            lambda app, n: [call(app, f"/{'%' * 2000}{i}/x") for i in range(n)],
            id="path-segments-without-a-path-factory",
        ),
        pytest.param(
            "path",
            lambda app, n: [call(app, host=f"-x{i}.example.com") for i in range(n)],
            id="rejected-names-without-a-subdomain-factory",
        ),
        pytest.param(
            "path",
            lambda app, n: [call(app, host=f"a.b.c{i}.example.com") for i in range(n)],
            id="deep-subdomains-without-a-subdomain-factory",
        ),
    ],
)
def test_floods_keep_nothing_with_one_kind_of_tenant(
    factories: str, requests: t.Callable[[Flask, int], list[t.Any]]
) -> None:
    # With no factory for them, these go to the host app, and still must
    # not be remembered: a flood would fill the memos and push real hosts
    # and paths out.
    app = make_host_app()
    factory = RecordingFactory()
    getattr(Dispatch(app), factories)(factory)
    requests(app, 1)  # every code path has run
    assert retained(lambda: requests(app, 1000)) < 30_000
    assert factory.calls == []


def test_a_flood_of_segments_other_than_ascii_keeps_nothing() -> None:
    # With a pattern that allows them, such segments are no tenant's (a
    # path carries UTF-8 bytes), and are not remembered either.
    app = make_host_app(DISPATCH_NAME_PATTERN=r"\w+")
    factory = RecordingFactory()
    Dispatch(app).path(factory)
    as_sent = "bücher".encode().decode("latin-1")

    def requests(n: int) -> list[t.Any]:
        return [call(app, f"/{as_sent}{i}/x") for i in range(n)]

    requests(1)  # every code path has run
    assert retained(lambda: requests(1000)) < 30_000
    assert factory.calls == []


def test_a_flood_of_long_segments_keeps_nothing_whatever_the_pattern() -> None:
    # A pattern with no bound on length: names are 63 characters at most
    # all the same, so a stranger's long segments reach no factory, and
    # are not remembered (a memo bounded in entries would keep their bytes).
    app = make_host_app(DISPATCH_NAME_PATTERN=r"[a-z0-9][a-z0-9_-]*")
    factory = RecordingFactory()
    Dispatch(app).path(factory)
    assert call(app, f"/{'a' * 63}/x").status == 200 and factory.calls == ["a" * 63]

    def requests(n: int) -> list[t.Any]:
        return [call(app, f"/{i:08d}{'a' * 4000}/x") for i in range(n)]

    requests(1)  # every code path has run
    assert retained(lambda: requests(200)) < 30_000
    assert factory.calls == ["a" * 63]


def test_a_flood_of_valid_names_is_bounded() -> None:
    # Valid names may be tenants, so they reach the factory; what is kept of
    # them is bounded by DISPATCH_MAX_MISSES and the memo size, not by the
    # number of requests.
    app = make_host_app(DISPATCH_MAX_MISSES=100)
    Dispatch(app).subdomain(lambda name: None)

    def flood(prefix: str) -> None:
        for i in range(3000):
            assert call(app, host=f"{prefix}{i}.example.com").status == 404

    tracemalloc.start()
    try:
        flood("n")  # fills every bound
        gc.collect()
        full = tracemalloc.get_traced_memory()[0]
        flood("m")
        gc.collect()
        assert tracemalloc.get_traced_memory()[0] - full < 30_000
    finally:
        tracemalloc.stop()
    with app.app_context():
        assert app.extensions["dispatch"].registry.stats().misses == 100


def test_a_flood_of_valid_names_rebuilds_no_held_tenant() -> None:
    # The flood pushes the held tenant's host out of the router's memo; its
    # next request decides the host again and finds the app it held.
    app = make_host_app()
    factory = RecordingFactory(known={"acme"})
    Dispatch(app).subdomain(factory)
    assert call(app, host="acme.example.com").status == 200
    for i in range(3000):
        assert call(app, host=f"n{i}.example.com").status == 404
    assert call(app, host="acme.example.com").status == 200
    assert factory.calls.count("acme") == 1
