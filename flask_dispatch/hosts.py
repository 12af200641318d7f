"""Parse and classify the Host of a request.

Pure functions with no Flask import: :func:`canonical_host` turns a raw
``Host`` header into one canonical spelling or rejects it as malformed, and
:func:`route_host` says whether a canonical host names a tenant.
"""

from __future__ import annotations

import ipaddress
import re
import typing as t

#: :func:`route_host` result: the request belongs to the host app's side.
HOST_APP: t.Final = 0
#: :func:`route_host` result: under a dispatch domain, but not a valid tenant name.
NO_TENANT: t.Final = 1
#: :func:`classify_host` result: the Host header is malformed.
BAD_HOST: t.Final = 2

#: What a host route is: a tenant name, or one of the constants above.
HostRoute = t.Union[str, int]

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


def route_host(
    host: str,
    domains: t.Iterable[str],
    reserved: t.Container[str],
    name_pattern: re.Pattern[str],
) -> HostRoute:
    """Say where a canonical host belongs.

    :param host: a host as returned by :func:`canonical_host`.
    :param domains: parent domains, longest first.
    :param reserved: names that belong to the host app.
    :param name_pattern: what a tenant name must match in full.
    :return: the tenant name for ``<name>.<domain>``; :data:`HOST_APP` for
        a reserved name, a domain itself or any host outside the domains;
        :data:`NO_TENANT` for a name the pattern rejects.
    """
    for domain in domains:
        if host == domain:
            return HOST_APP
        cut = len(host) - len(domain) - 1
        # Only on a label boundary: "evilexample.com" is not under "example.com".
        if cut > 0 and host[cut] == "." and host.endswith(domain):
            name = host[:cut]
            if name in reserved:
                return HOST_APP
            if name_pattern.fullmatch(name):
                return name
            return NO_TENANT
    return HOST_APP


def classify_host(
    raw: str,
    domains: t.Iterable[str],
    reserved: t.Container[str],
    name_pattern: re.Pattern[str],
) -> HostRoute:
    """:func:`canonical_host` then :func:`route_host`, with :data:`BAD_HOST`
    for a malformed host.

    :param raw: the header value as found in the WSGI environ.
    :param domains: parent domains, longest first.
    :param reserved: names that belong to the host app.
    :param name_pattern: what a tenant name must match in full.
    """
    host = canonical_host(raw)
    if host is None:
        return BAD_HOST
    return route_host(host, domains, reserved, name_pattern)
