"""Host header parsing (a pure function)."""

from __future__ import annotations

import re

import pytest

from flask_dispatch.config import DEFAULT_NAME_PATTERN
from flask_dispatch.hosts import canonical_host

PATTERN = re.compile(DEFAULT_NAME_PATTERN)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param("example.com", "example.com", id="plain"),
        pytest.param("ACME.Example.COM", "acme.example.com", id="lowercased"),
        pytest.param("acme.example.com.", "acme.example.com", id="trailing-dot"),
        pytest.param("acme.example.com:8080", "acme.example.com", id="port"),
        pytest.param("acme.example.com.:443", "acme.example.com", id="dot-and-port"),
        pytest.param("example.com:", "example.com", id="empty-port"),
        pytest.param("localhost", "localhost", id="localhost"),
        pytest.param("127.0.0.1:5000", "127.0.0.1", id="ipv4"),
        pytest.param("[::1]:8080", "[::1]", id="ipv6-port"),
        pytest.param("[0:0::1]", "[::1]", id="ipv6-compressed"),
        pytest.param("xn--bcher-kva.example.com", "xn--bcher-kva.example.com", id="punycode"),
        pytest.param("-acme.example.com", "-acme.example.com", id="leading-hyphen-is-well-formed"),
        pytest.param("a" * 63 + ".com", "a" * 63 + ".com", id="63-char-label"),
        pytest.param(
            ".".join(["a" * 63] * 4)[:253], ".".join(["a" * 63] * 4)[:253], id="253-chars"
        ),
        pytest.param("", None, id="empty"),
        pytest.param(".", None, id="only-dot"),
        pytest.param("acme..example.com", None, id="empty-label"),
        pytest.param("example.com..", None, id="two-trailing-dots"),
        pytest.param(".example.com", None, id="leading-dot"),
        pytest.param("a" * 64 + ".com", None, id="64-char-label"),
        pytest.param(".".join(["a" * 63] * 5), None, id="over-253-chars"),
        pytest.param("a" * 300, None, id="300-chars"),
        pytest.param("_acme.example.com", None, id="underscore"),
        pytest.param("acme example.com", None, id="space"),
        pytest.param(" acme.example.com", None, id="leading-space"),
        pytest.param("acme.example.com\t", None, id="tab"),
        pytest.param("a.test:8080@b.test", None, id="userinfo-after-port"),
        pytest.param("example.com@evil.tld", None, id="userinfo"),
        pytest.param("example.com:80/badpath", None, id="path"),
        pytest.param("example.com/x", None, id="slash"),
        pytest.param("a.example.com,b.example.com", None, id="comma-joined"),
        pytest.param("example.com:http", None, id="non-numeric-port"),
        pytest.param("example.com:99999999", None, id="huge-port"),
        pytest.param("example.com:65536", None, id="port-over-65535"),
        pytest.param("example.com:-1", None, id="negative-port"),
        pytest.param("example.com:80:80", None, id="two-ports"),
        pytest.param("b\xc3\xbccher.example.com", None, id="raw-utf8-as-latin1"),
        pytest.param("b\xfccher.example.com", None, id="latin1"),
        pytest.param("\u212aacme.example.com", None, id="kelvin-sign-not-k"),
        pytest.param("[::1", None, id="ipv6-unclosed"),
        pytest.param("[::1]x", None, id="ipv6-junk"),
        pytest.param("[nothex]", None, id="ipv6-invalid"),
        pytest.param("[fe80::1%eth0]", None, id="ipv6-zone"),
        pytest.param("::1", None, id="ipv6-unbracketed"),
    ],
)
def test_canonical_host(raw: str, expected: str | None) -> None:
    assert canonical_host(raw) == expected
