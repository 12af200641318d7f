"""Atheris fuzz target: the whole WSGI call with a stub factory.

Run for longer with, e.g.::

    python tests/fuzz/fuzz_wsgi.py -max_total_time=600 tests/fuzz/corpus/wsgi

Each input is a Host header, a SCRIPT_NAME and a PATH_INFO. Checks that no
exception escapes, the status is one dispatch may give, the factory only ever
sees names matching the pattern, the registry stays within its bound, and
each call takes well under a second.
"""

from __future__ import annotations

import re
import sys
import time
import typing as t

import atheris

with atheris.instrument_imports():
    from flask import Flask
    from werkzeug.test import create_environ, run_wsgi_app

    from flask_dispatch import Dispatch
    from flask_dispatch.config import DEFAULT_NAME_PATTERN

PATTERN = re.compile(DEFAULT_NAME_PATTERN)
MAX_INSTANCES = 8
ALLOWED = {200, 308, 400, 404}
seen: list[str] = []


if t.TYPE_CHECKING:
    from collections.abc import Iterable

    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment


def _tenant(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"tenant"]


def factory(name: str) -> WSGIApplication | None:
    assert PATTERN.fullmatch(name), name
    seen.append(name)
    return _tenant if hash(name) % 3 else None


app = Flask("fuzz_host")
app.config.update(DISPATCH_DOMAIN="example.com", DISPATCH_MAX_INSTANCES=MAX_INSTANCES)
dispatch = Dispatch(app)
dispatch.subdomain(factory)
dispatch.path(factory)
dispatch.mount("/backend", _tenant)


@app.route("/")
def index() -> str:
    return "host"


def test_one_input(data: bytes) -> None:
    provider = atheris.FuzzedDataProvider(data)
    host = provider.ConsumeUnicodeNoSurrogates(300)
    script = provider.ConsumeUnicodeNoSurrogates(40)
    path = provider.ConsumeUnicodeNoSurrogates(400)
    environ = create_environ("/", "http://placeholder/")
    # WSGI strings are latin-1: keep what a server could send.
    environ["HTTP_HOST"] = host.encode("utf-8", "replace").decode("latin-1")
    environ["SCRIPT_NAME"] = script.encode("utf-8", "replace").decode("latin-1")
    environ["PATH_INFO"] = path.encode("utf-8", "replace").decode("latin-1")
    start = time.perf_counter()
    _body, status, _ = run_wsgi_app(app, environ, buffered=True)
    elapsed = time.perf_counter() - start
    code = int(status.split()[0])
    assert code in ALLOWED, (code, host, script, path)
    assert elapsed < 1.0, (elapsed, host, path)
    with app.app_context():
        assert len(dispatch.registry) <= MAX_INSTANCES
        assert dispatch.registry.stats().misses <= 1000
    if len(seen) > 10_000:
        seen.clear()


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
