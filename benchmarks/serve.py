"""WSGI targets for the end-to-end section, one per gunicorn: a host app
with dispatch whose tenants are small Flask apps, the recipe's dispatcher
over the same tenants, and one such tenant app on its own."""

from __future__ import annotations

from flask import Flask

from flask_dispatch import Dispatch

from .recipe import SubdomainDispatcher

#: Tenants the load is spread over (``t0000.localhost`` ... ``t0999.localhost``).
TENANTS = 1_000


def tenant_app(name: str) -> Flask:
    """A tenant: a Flask app with one view, built afresh for each tenant."""
    app = Flask(__name__)
    app.config["TENANT"] = name

    @app.get("/notes/<int:number>")
    def note(number: int) -> str:
        return f"note {number}"

    return app


def dispatched() -> Flask:
    """The host app: every tenant reached through dispatch, by subdomain of
    ``localhost``, all of them held."""
    host = Flask(__name__)
    host.config.update(DISPATCH_DOMAIN="localhost", DISPATCH_MAX_INSTANCES=TENANTS)
    Dispatch(host).subdomain(tenant_app)
    return host


def recipe() -> SubdomainDispatcher:
    """The same tenants behind the recipe's ``SubdomainDispatcher``: what
    serving 1,000 distinct Flask apps costs any dispatcher."""
    return SubdomainDispatcher("localhost", tenant_app)


def direct() -> Flask:
    """One tenant app, served without dispatch."""
    return tenant_app("direct")
