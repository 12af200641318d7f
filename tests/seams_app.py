"""The app tests/test_server_seams.py serves under gunicorn: tenants that
say which worker answered, ProxyFix before or after dispatch, an idle
timeout, and evictions written to a file."""

from __future__ import annotations

import os
import typing as t

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from flask_dispatch import Dispatch, tenant_evicted

if t.TYPE_CHECKING:
    from collections.abc import Iterable

    from _typeshed.wsgi import StartResponse, WSGIEnvironment


class Tenant:
    def __init__(self, name: str) -> None:
        self.name = name

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        body = f"{self.name} {os.getpid()} {environ['wsgi.url_scheme']}".encode()
        start_response("200 OK", [("Content-Length", str(len(body)))])
        return [body]


def create(proxy_fix: str = "after") -> Flask:
    app = Flask("seams_host")
    app.config.update(DISPATCH_DOMAIN="example.com", DISPATCH_IDLE_TIMEOUT=1.0)
    if proxy_fix == "before":
        app.wsgi_app = ProxyFix(app.wsgi_app, x_host=1, x_proto=1)  # type: ignore[method-assign]
    dispatch = Dispatch(app)
    if proxy_fix == "after":
        app.wsgi_app = ProxyFix(app.wsgi_app, x_host=1, x_proto=1)  # type: ignore[method-assign]
    dispatch.subdomain(Tenant)
    log = os.environ["SEAMS_EVICTIONS"]

    def record(sender: Flask, name: str, tenant_app: Tenant, reason: str) -> None:
        with open(log, "a") as file:
            file.write(f"{os.getpid()} {name} {reason}\n")

    tenant_evicted.connect(record, app, weak=False)

    @app.route("/")
    def index() -> str:
        return f"host {os.getpid()}"

    return app
