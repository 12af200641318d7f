"""The pure routing decision: a Host header and a path in, a target out."""

from __future__ import annotations

import dataclasses
import re

import pytest

from flask_dispatch.config import DEFAULT_NAME_PATTERN
from flask_dispatch.routing import Kind, Router, Rules


def subdomain_factory(name: str) -> None:
    return None


def path_factory(name: str) -> None:
    return None


def backend(environ: object, start_response: object) -> list[bytes]:
    return []


RULES = Rules(
    domains=("app.example.com", "example.com", "example.localhost"),
    reserved=frozenset({"www"}),
    name_pattern=re.compile(DEFAULT_NAME_PATTERN),
    mounts={"/backend": backend, "/api": backend, "/api/v1": backend},
    own_segments=frozenset({"login", "static"}),
    own_subdomains=frozenset({"admin"}),
    subdomain_factory=subdomain_factory,
    path_factory=path_factory,
)
S, P, H, M = Kind.SUBDOMAIN, Kind.PATH, Kind.HOST_APP, Kind.MOUNT
PATHS_ONLY = dataclasses.replace(RULES, subdomain_factory=None)


@pytest.mark.parametrize(
    ("host", "path", "kind", "name", "script"),
    [
        pytest.param("acme.example.com", "/x", S, "acme", "", id="subdomain"),
        pytest.param("ACME.Example.com.:8080", "/x", S, "acme", "", id="subdomain-spelling"),
        pytest.param("acme.example.localhost", "/", S, "acme", "", id="second-domain"),
        pytest.param("acme.app.example.com", "/", S, "acme", "", id="longest-domain-first"),
        pytest.param("xn--bcher-kva.example.com", "/", S, "xn--bcher-kva", "", id="punycode"),
        pytest.param("acme.example.com", "/backend/x", S, "acme", "", id="mounts-not-on-tenants"),
        pytest.param("example.com", "/acme/x", P, "acme", "/acme", id="path"),
        pytest.param("example.com", "/acme", P, "acme", "/acme", id="bare-path"),
        pytest.param("example.com", "/backend/x", M, "/backend", "/backend", id="mount"),
        pytest.param("example.com", "/backend", M, "/backend", "/backend", id="bare-mount"),
        pytest.param("example.com", "/api/v1/x", M, "/api/v1", "/api/v1", id="longest-mount"),
        pytest.param("example.com", "/api/v2/x", M, "/api", "/api", id="shorter-mount"),
        pytest.param("example.com", "/backendx/y", P, "backendx", "/backendx", id="whole-segment"),
        pytest.param("example.com", "/login", H, "", "", id="host-rule-segment"),
        pytest.param("example.com", "/www/x", H, "", "", id="reserved-segment"),
        pytest.param("example.com", "/ACME/x", H, "", "", id="pattern-rejects-segment"),
        pytest.param("example.com", "//acme/x", H, "", "", id="empty-segment"),
        pytest.param("example.com", "", H, "", "", id="empty-path"),
        pytest.param("example.com", "/", H, "", "", id="root"),
        pytest.param("app.example.com", "/", H, "", "", id="nested-domain-itself"),
        pytest.param("www.example.com", "/acme/x", P, "acme", "/acme", id="reserved-subdomain"),
        pytest.param("admin.example.com", "/", H, "", "", id="host-rule-subdomain"),
        pytest.param("evilexample.com", "/", H, "", "", id="no-label-boundary"),
        pytest.param("example.com.evil.org", "/", H, "", "", id="domain-as-prefix"),
        pytest.param("127.0.0.1:5000", "/acme/", P, "acme", "/acme", id="ip-host"),
        pytest.param("[::1]", "/", H, "", "", id="ipv6"),
        pytest.param("a.b.example.com", "/", Kind.NO_TENANT, "a.b", "", id="two-labels"),
        pytest.param("-acme.example.com", "/", Kind.NO_TENANT, "-acme", "", id="hyphen"),
        pytest.param("acme..example.com", "/acme/x", Kind.BAD_HOST, "", "", id="empty-label"),
        pytest.param("", "/", Kind.BAD_HOST, "", "", id="empty-host"),
        pytest.param("a" * 300, "/", Kind.BAD_HOST, "", "", id="too-long"),
    ],
)
def test_route(host: str, path: str, kind: Kind, name: str, script: str) -> None:
    target = Router(RULES).route(host, path)
    assert (target.kind, target.name, path[: target.cut]) == (kind, name, script)
    handlers = {S: subdomain_factory, P: path_factory, M: backend}
    assert target.handler is handlers.get(kind)


@pytest.mark.parametrize(
    ("rules", "host", "path", "kind"),
    [
        pytest.param(Rules(domains=("example.com",)), "acme.example.com", "/", H, id="no-factory"),
        pytest.param(Rules(), "example.com", "/acme/", H, id="no-path-factory"),
        pytest.param(
            Rules(domains=("example.com",), name_pattern=re.compile("[0-9]+"), path_factory=1),
            "example.com",
            "/123/x",
            P,
            id="custom-pattern",
        ),
        pytest.param(
            Rules(domains=("example.com",), name_pattern=re.compile("[0-9]+"), path_factory=1),
            "example.com",
            "/acme/x",
            H,
            id="custom-pattern-rejects",
        ),
        # With no subdomain factory, any subdomain is the host app's side,
        # whose paths still decide: names the pattern rejects too.
        pytest.param(PATHS_ONLY, "eu.shop.example.com", "/acme/x", P, id="path-on-deep-host"),
        pytest.param(PATHS_ONLY, "-x.example.com", "/backend/x", M, id="mount-on-rejected-host"),
        pytest.param(PATHS_ONLY, "shop.example.com", "/acme/x", P, id="path-on-subdomain"),
    ],
)
def test_route_without_everything_registered(
    rules: Rules, host: str, path: str, kind: Kind
) -> None:
    assert Router(rules).route(host, path).kind is kind


@pytest.mark.parametrize(
    ("name", "expected", "by_subdomain"),
    [
        pytest.param("acme", True, True, id="name"),
        pytest.param("www", False, False, id="reserved"),
        pytest.param("login", False, True, id="host-rule-segment"),
        pytest.param("admin", False, False, id="host-rule-subdomain"),
        pytest.param("backend", False, True, id="mount"),
        pytest.param("api", False, True, id="mount-first-segment"),
        pytest.param("Acme", False, False, id="pattern"),
        pytest.param("", False, False, id="empty"),
    ],
)
def test_is_tenant_name(name: str, expected: bool, by_subdomain: bool) -> None:
    router = Router(RULES)
    assert router.is_tenant_name(name) is expected
    assert router.is_tenant_name(name, "subdomain") is by_subdomain
    # A name that may be a path tenant is one that routing makes one.
    path_tenant = router.route("example.com", f"/{name}/x").kind is P
    assert path_tenant is router.is_tenant_name(name, "path")


@pytest.mark.parametrize(
    ("host", "kind"),
    [
        pytest.param("acme.example.com", S, id="trusted"),
        pytest.param("acme.example.com:8080", S, id="trusted-with-port"),
        pytest.param("acme.example.org", Kind.BAD_HOST, id="untrusted"),
        pytest.param("acme..example.org", Kind.BAD_HOST, id="untrusted-and-malformed"),
    ],
)
def test_trusted_hosts(host: str, kind: Kind) -> None:
    router = Router(dataclasses.replace(RULES, trusted_hosts=(".example.com",)))
    for _ in range(2):  # decided, then remembered (or not)
        target = router.route(host, "/")
        assert target.kind is kind
    if kind is Kind.BAD_HOST:
        assert target.reason == "Untrusted Host header."


def test_reasons_say_why() -> None:
    router = Router(RULES)
    assert "reserved" in router.route("www.example.com", "/").reason
    assert "malformed" in router.route("a..example.com", "/").reason.lower()
    assert "pattern" in router.route("-a.example.com", "/").reason
    assert "outside" in router.route("evil.org", "/").reason


def test_memo_is_bounded_and_answers_stay_right() -> None:
    router = Router(RULES, memo_size=8)
    for _ in range(3):
        for i in range(100):  # far more hosts than the memo holds
            target = router.route(f"t{i}.example.com", "/")
            assert (target.kind, target.name) == (S, f"t{i}")
