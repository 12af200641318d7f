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
    from flask_dispatch.hosts import BAD_HOST, HOST_APP, NO_TENANT, canonical_host, classify_host
    from flask_dispatch.paths import find_mount, split_first_segment

PATTERN = re.compile(DEFAULT_NAME_PATTERN)
DOMAINS = ("example.com", "example.localhost")
MOUNTS = frozenset({"/backend", "/api/v1"})


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
    route = classify_host(text, DOMAINS, frozenset({"www"}), PATTERN)
    if isinstance(route, str):
        assert PATTERN.fullmatch(route), (text, route)
        assert host is not None and host.startswith(route + ".")
    else:
        assert route in (HOST_APP, NO_TENANT, BAD_HOST)
        assert (route == BAD_HOST) == (host is None)
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
