"""Host header parsing (pure functions), and why a malformed host is."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flask_dispatch.config import DEFAULT_NAME_PATTERN
from flask_dispatch.hosts import MalformedHost, canonical_host, parse_host

PATTERN = re.compile(DEFAULT_NAME_PATTERN)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param("example.com", "example.com", id="plain"),
        pytest.param("ACME.Example.COM", "acme.example.com", id="lowercased"),
        pytest.param("acme.example.com.", "acme.example.com", id="trailing-dot"),
        pytest.param("acme.example.com:8080", "acme.example.com", id="port"),
        pytest.param("acme.example.com.:443", "acme.example.com", id="dot-and-port"),
        pytest.param("example.com:1", "example.com", id="port-1"),
        pytest.param("example.com:65535", "example.com", id="port-65535"),
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
        # Werkzeug's request.host would be "" for these.
        pytest.param("example.com:", None, id="empty-port"),
        pytest.param("example.com:0", None, id="port-0"),
        pytest.param("example.com:080", None, id="leading-zero"),
        pytest.param("[::1]:", None, id="ipv6-empty-port"),
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


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        pytest.param("", "the Host header is empty", id="empty"),
        pytest.param("a" * 261, "it is 261 characters long; a host name and port fit in 260"),
        pytest.param("[::1", "an IPv6 literal without its closing ']'", id="unclosed"),
        pytest.param("[::1]80", "'80' after the IPv6 literal is not ':' and a port", id="v6 port"),
        pytest.param("[fe80::1%eth0]", "a zone ID ('%...') is not allowed in a Host header"),
        pytest.param("[::g]", "'::g' is not an IPv6 address", id="not v6"),
        pytest.param("example.com:99999", "'99999' is not a port number", id="big port"),
        pytest.param("a:b:c", "'c' is not a port number", id="colons"),
        pytest.param(":80", "the host name before the port is empty", id="port only"),
        pytest.param("ex_ample.com", "'_' is not allowed in a host name", id="underscore"),
        pytest.param("\u212aelvin.com", "'\u212a' is not allowed in a host name", id="Kelvin"),
        pytest.param(".example.com", "it has an empty label", id="leading dot"),
        pytest.param("example.com..", "it has an empty label", id="two trailing dots"),
        pytest.param("a" * 64 + ".com", "the label 'aaaaaaaaaaaa...' is longer than 63 characters"),
        pytest.param(".".join(["a" * 63] * 4), "the host name is longer than 253 characters"),
    ],
)
def test_parse_host_says_why_a_host_is_malformed(raw: str, why: str) -> None:
    assert canonical_host(raw) is None
    with pytest.raises(MalformedHost, match=f"^{re.escape(why)}"):
        parse_host(raw)


@given(
    st.text(alphabet="aZ09-.:[]%_\u212a", max_size=12)
    | st.text(max_size=300)
    | st.lists(st.text(alphabet="a-", max_size=70), max_size=5).map(".".join)
)
def test_every_malformed_host_is_explained(raw: str) -> None:
    if canonical_host(raw) is None:
        with pytest.raises(MalformedHost, match=r"\w"):
            parse_host(raw)
