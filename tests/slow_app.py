"""The app the slow-tenant tests and ``benchmarks/slow_tenant.py`` serve:
tenants ``acme`` and ``globex`` built at once, and ``slow``, whose factory
takes its time, by subdomain of ``example.com``.

Set by environment variables, read when the app is made:

- ``SLOW_MODE``: ``sleep`` (the factory of ``slow`` sleeps
  ``SLOW_SECONDS``), ``hang`` (it never returns) or ``hang-once`` (its first
  call never returns, later ones are instant).
- ``SLOW_SECONDS``: how long it sleeps (default 40).
- ``SLOW_CREATE_TIMEOUT``: ``DISPATCH_CREATE_TIMEOUT`` (default 2).
- ``SLOW_MAX_WAITING``: ``DISPATCH_MAX_WAITING``, if set.

``GET /_debug`` on the host app tells the worker's pid, its thread count,
the names of its threads, how often each factory was called and which ``flask_dispatch`` it runs.

It imports nothing from the tests, so the benchmark can serve it under an
older ``flask_dispatch`` too.
"""

from __future__ import annotations

import collections
import os
import threading
import time
import typing as t

from flask import Flask

import flask_dispatch
from flask_dispatch import Dispatch

if t.TYPE_CHECKING:
    from collections.abc import Iterable

    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

TENANTS = ("acme", "globex", "slow")


class Tenant:
    def __init__(self, name: str) -> None:
        self.name = name

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        body = f"tenant {self.name}".encode()
        start_response(
            "200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))]
        )
        return [body]


def create() -> Flask:
    mode = os.environ.get("SLOW_MODE", "sleep")
    seconds = float(os.environ.get("SLOW_SECONDS", "40"))
    app = Flask("slow_host")
    app.config.update(
        DISPATCH_DOMAIN="example.com",
        DISPATCH_CREATE_TIMEOUT=float(os.environ.get("SLOW_CREATE_TIMEOUT", "2")),
    )
    if "SLOW_MAX_WAITING" in os.environ:
        app.config["DISPATCH_MAX_WAITING"] = int(os.environ["SLOW_MAX_WAITING"])
    dispatch = Dispatch(app)
    calls: collections.Counter[str] = collections.Counter()
    lock = threading.Lock()
    never = threading.Event()

    @app.route("/_debug")
    def debug() -> dict[str, t.Any]:
        return {
            "pid": os.getpid(),
            "threads": [thread.name for thread in threading.enumerate()],
            "calls": dict(calls),
            "flask_dispatch": flask_dispatch.__file__,
        }

    @app.errorhandler(503)
    def unavailable(error: Exception) -> tuple[str, int]:
        return "site 503 page", 503

    @dispatch.subdomain
    def factory(name: str) -> WSGIApplication | None:
        if name not in TENANTS:
            return None
        with lock:
            calls[name] += 1
            first = calls[name] == 1
        if name == "slow":
            if mode == "sleep":
                time.sleep(seconds)
            elif mode == "hang" or (mode == "hang-once" and first):
                never.wait()
        return Tenant(name)

    return app
