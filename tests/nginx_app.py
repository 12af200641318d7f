"""What the nginx tests serve under gunicorn: the example project with the
ProxyFix line from ``docs/deploying.rst``, and a ``/_seen`` page in the host
app and in every tenant that shows what the app was told about the request."""

from __future__ import annotations

import typing as t

from flask import Flask, request
from werkzeug.middleware.proxy_fix import ProxyFix

from example_project import create_app
from flask_dispatch import tenant_created


def seen() -> str:
    """The client address, scheme, host and script root the app sees."""
    return " ".join((request.remote_addr or "-", request.scheme, request.host, request.script_root))


def add_seen(sender: Flask, name: str, tenant_app: t.Any, **extra: t.Any) -> None:
    tenant_app.add_url_rule("/_seen", "seen", seen)


def create() -> Flask:
    app = create_app()
    app.wsgi_app = ProxyFix(app.wsgi_app, x_for=1, x_proto=1, x_host=1)  # type: ignore[method-assign]
    app.add_url_rule("/_seen", "seen", seen)
    tenant_created.connect(add_seen, app, weak=False)
    return app
