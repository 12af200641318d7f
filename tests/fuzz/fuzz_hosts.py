"""Atheris fuzz target: Host and path parsing.

Run for longer with, e.g.::

    python tests/fuzz/fuzz_hosts.py -max_total_time=600 tests/fuzz/corpus/hosts

Checks that parsing never raises, that a canonical host is canonical
(idempotent, lowercase, no port, no trailing dot, ASCII), that a tenant name
always matches the default pattern, and that path splitting loses nothing.
"""

from __future__ import annotations

import re
import sys

import atheris

with atheris.instrument_imports():
    from flask_dispatch.config import DEFAULT_NAME_PATTERN
    from flask_dispatch.hosts import canonical_host
    from flask_dispatch.paths import find_mount, split_first_segment
    from flask_dispatch.routing import Kind, Router, Rules

PATTERN = re.compile(DEFAULT_NAME_PATTERN)
DOMAINS = ("example.com", "example.localhost")
MOUNTS = frozenset({"/backend", "/api/v1"})
ROUTER = Router(
    Rules(
        domains=DOMAINS,
        reserved=frozenset({"www"}),
        name_pattern=PATTERN,
        mounts=dict.fromkeys(MOUNTS),
        subdomain_factory=object(),
        path_factory=object(),
    )
)


def test_one_input(data: bytes) -> None:
    text = data.decode("latin-1")  # how WSGI servers hand over header bytes
    host = canonical_host(text)
    if host is not None:
        assert canonical_host(host) == host, (text, host)
        assert host == host.lower() and host.isascii(), host
        assert not host.endswith(".") and len(host) <= 253, host
        if not host.startswith("["):
            assert ":" not in host, host
            assert all(0 < len(label) <= 63 for label in host.split(".")), host
    target = ROUTER.route(text, "/")
    if target.kind is Kind.SUBDOMAIN:
        assert PATTERN.fullmatch(target.name), (text, target)
        assert host is not None and host.startswith(target.name + ".")
    else:
        assert target.kind in (Kind.HOST_APP, Kind.NO_TENANT, Kind.BAD_HOST)
        assert (target.kind is Kind.BAD_HOST) == (host is None)
    target = ROUTER.route("example.com", text)
    if target.kind is Kind.PATH:
        assert PATTERN.fullmatch(target.name) and text[: target.cut] == "/" + target.name
        assert text[target.cut :][:1] in ("", "/")
    name, rest = split_first_segment(text)
    if name:
        assert text == f"/{name}{rest}" and "/" not in name
    else:
        assert rest == text
    prefix = find_mount(text, MOUNTS)
    if prefix is not None:
        assert text == prefix or text.startswith(prefix + "/")


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
