"""The app the gunicorn tests serve: tenants ``acme`` and ``globex`` by
subdomain of ``example.com`` and by path."""

from __future__ import annotations

import typing as t

from flask import Flask

from flask_dispatch import Dispatch

if t.TYPE_CHECKING:
    from collections.abc import Iterable

    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment


class Tenant:
    def __init__(self, name: str) -> None:
        self.name = name

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        body = f"tenant {self.name} {environ['SCRIPT_NAME']}|{environ['PATH_INFO']}".encode()
        start_response(
            "200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))]
        )
        return [body]


def create() -> Flask:
    app = Flask("server_host")
    app.config.update(DISPATCH_DOMAIN="example.com", DISPATCH_MAX_INSTANCES=4)
    dispatch = Dispatch(app)

    @app.route("/")
    def index() -> str:
        return "host index"

    @app.errorhandler(400)
    def bad_request(error: Exception) -> tuple[str, int]:
        return "site 400 page", 400

    @app.errorhandler(404)
    def not_found(error: Exception) -> tuple[str, int]:
        return "site 404 page", 404

    def factory(name: str) -> WSGIApplication | None:
        return Tenant(name) if name in ("acme", "globex") else None

    dispatch.subdomain(factory)
    dispatch.path(factory)
    return app
