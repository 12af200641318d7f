"""Parse the Host of a request.

Pure functions with no Flask import: :func:`parse_host` turns a raw ``Host``
header into one canonical spelling, or says in words why it is malformed
(``flask dispatch check`` shows it); :func:`canonical_host` is the same
decision with ``None`` for a malformed host; :func:`server_host` stands in
for a missing header.
"""

from __future__ import annotations

import ipaddress
import re
import typing as t

if t.TYPE_CHECKING:
    from _typeshed.wsgi import WSGIEnvironment

# ASCII only and case-insensitive by spelling both cases out: ``re.IGNORECASE``
# without ``re.ASCII`` would let the Kelvin sign (U+212A) match "k".
_NAME = re.compile(r"(?:[A-Za-z0-9-]{1,63}\.)*[A-Za-z0-9-]{1,63}\.?")
# As Werkzeug's request.host accepts one: a port other than this (":", ":0",
# ":080") would give the app an empty host, and links like "http:///acme/".
_PORT = re.compile(r"[1-9][0-9]{0,4}")
_MAX_NAME = 253
# A name, its trailing dot and ":65535": anything longer is malformed, and is
# rejected before any pattern runs over it.
_MAX_RAW = _MAX_NAME + 1 + 6


def server_host(environ: WSGIEnvironment) -> str:
    """What stands in for the ``Host`` header of an HTTP/1.0 request that
    has none: the server's name, an IPv6 address bracketed (unless the
    server did)."""
    server: str = environ.get("SERVER_NAME", "")
    return f"[{server}]" if ":" in server and server[:1] != "[" else server


class MalformedHost(ValueError):
    """A malformed ``Host`` header value; the message says why."""


def canonical_host(raw: str) -> str | None:
    """:func:`parse_host`, with ``None`` for a malformed ``raw``."""
    try:
        return parse_host(raw)
    except MalformedHost:
        return None


def parse_host(raw: str) -> str:
    """Return the canonical form of a ``Host`` header value.

    The port is dropped, letters are lowercased and one trailing dot is
    dropped, so ``ACME.Example.com.:8080`` becomes ``acme.example.com``.
    Names may only hold ASCII letters, digits, ``-`` and ``.``, with labels of
    1 to 63 characters and 253 characters in all. A bracketed IPv6 literal is
    returned in its compressed form, e.g. ``[::1]``.

    :param raw: the header value as found in the WSGI environ.
    :raises MalformedHost: if ``raw`` is malformed, saying why in words.
    """
    if len(raw) > _MAX_RAW:
        raise MalformedHost(
            f"it is {len(raw)} characters long; a host name and port fit in {_MAX_RAW}"
        )
    if raw.startswith("["):
        return _parse_ipv6(raw)
    host, colon, port = raw.rpartition(":")
    if not colon:
        host = raw
    elif not _valid_port_part(":" + port):
        raise MalformedHost(f"{port!r} is not a port number")
    if not _NAME.fullmatch(host):
        raise MalformedHost(_why_not_a_name(host, raw))
    host = host.lower()
    if host.endswith("."):
        host = host[:-1]
    if len(host) > _MAX_NAME:
        raise MalformedHost(f"the host name is longer than {_MAX_NAME} characters")
    return host


def _parse_ipv6(raw: str) -> str:
    """:func:`parse_host` for a bracketed IPv6 literal, with its port if any."""
    end = raw.find("]")
    if end == -1:
        raise MalformedHost("an IPv6 literal without its closing ']'")
    after = raw[end + 1 :]
    if not _valid_port_part(after):
        raise MalformedHost(f"{after!r} after the IPv6 literal is not ':' and a port")
    literal = raw[1:end]
    if "%" in literal:
        raise MalformedHost("a zone ID ('%...') is not allowed in a Host header")
    try:
        address = ipaddress.IPv6Address(literal)
    except ValueError:
        raise MalformedHost(f"{literal!r} is not an IPv6 address") from None
    return f"[{address.compressed}]"


def _valid_port_part(part: str) -> bool:
    """``""``, or ``":"`` and a port number from 1 to 65535 with no leading zero."""
    if not part:
        return True
    return part[0] == ":" and _PORT.fullmatch(part, 1) is not None and int(part[1:]) <= 65535


def _why_not_a_name(name: str, raw: str) -> str:
    """Why ``_NAME`` rejects ``name``, the part of ``raw`` before any port."""
    if not name:
        return "the host name before the port is empty" if raw else "the Host header is empty"
    for c in name:
        if not (c.isascii() and (c.isalnum() or c in "-.")):
            return f"{c!r} is not allowed in a host name (ASCII letters, digits, '-' and '.' are)"
    labels = name.removesuffix(".").split(".")
    if "" in labels:
        return "it has an empty label ('..', or a '.' at the start)"
    # With only such characters and no empty label, a long label is all that is left.
    long = next(label for label in labels if len(label) > 63)
    return f"the label {long[:12] + '...'!r} is longer than 63 characters"
