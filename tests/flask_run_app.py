"""The app tests/test_flask_run.py serves with ``flask run --reload``: a
tenant that says which build of it answered, and Redis from the
environment."""

from __future__ import annotations

import itertools
import os
import typing as t

from flask import Flask

from flask_dispatch import Dispatch

if t.TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication

builds = itertools.count(1)


def create_app() -> Flask:
    app = Flask("flask_run_host")
    app.config.update(
        DISPATCH_DOMAIN="example.com",
        DISPATCH_REDIS_URL=os.environ["FLASK_RUN_REDIS_URL"],
        DISPATCH_REDIS_PREFIX="flask-run",
    )
    dispatch = Dispatch(app)

    @dispatch.subdomain
    def tenant(name: str) -> WSGIApplication:
        build = next(builds)
        tenant_app = Flask(f"tenant_{name}")
        tenant_app.add_url_rule("/", "home", lambda: f"{name} build {build} pid {os.getpid()}")
        return tenant_app

    return app
