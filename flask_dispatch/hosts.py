"""Parse the Host of a request.

A pure function with no Flask import: :func:`canonical_host` turns a raw
``Host`` header into one canonical spelling or rejects it as malformed.
"""

from __future__ import annotations

import ipaddress
import re

# ASCII only and case-insensitive by spelling both cases out: ``re.IGNORECASE``
# without ``re.ASCII`` would let the Kelvin sign (U+212A) match "k".
_NAME = re.compile(r"(?:[A-Za-z0-9-]{1,63}\.)*[A-Za-z0-9-]{1,63}\.?")
_PORT = re.compile(r"[0-9]{0,5}")
_MAX_NAME = 253
# A name, its trailing dot and ":65535": anything longer is malformed, and is
# rejected before any pattern runs over it.
_MAX_RAW = _MAX_NAME + 1 + 6


def canonical_host(raw: str) -> str | None:
    """Return the canonical form of a ``Host`` header value, or ``None`` if
    it is malformed.

    The port is dropped, letters are lowercased and one trailing dot is
    dropped, so ``ACME.Example.com.:8080`` becomes ``acme.example.com``.
    Names may only hold ASCII letters, digits, ``-`` and ``.``, with labels of
    1 to 63 characters and 253 characters in all. A bracketed IPv6 literal is
    returned in its compressed form, e.g. ``[::1]``.

    :param raw: the header value as found in the WSGI environ.
    """
    if len(raw) > _MAX_RAW:
        return None
    if raw.startswith("["):
        end = raw.find("]")
        if end == -1 or not _valid_port_part(raw[end + 1 :]):
            return None
        literal = raw[1:end]
        if "%" in literal:
            return None
        try:
            address = ipaddress.IPv6Address(literal)
        except ValueError:
            return None
        return f"[{address.compressed}]"

    host, colon, port = raw.rpartition(":")
    if not colon:
        host = raw
    elif not _valid_port_part(":" + port):
        return None
    if not _NAME.fullmatch(host):
        return None
    host = host.lower()
    if host.endswith("."):
        host = host[:-1]
    if len(host) > _MAX_NAME:
        return None
    return host


def _valid_port_part(part: str) -> bool:
    """``""`` or ``":"`` followed by a port number from 0 to 65535 (or nothing,
    which RFC 3986 allows)."""
    if not part:
        return True
    if part[0] != ":" or not _PORT.fullmatch(part, 1):
        return False
    return len(part) == 1 or int(part[1:]) <= 65535
