"""WSGI targets for the server benchmark: the example project's tenant app,
served through dispatch and on its own. Configured by the same ``FLASK_*``
environment variables as the example."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from example_project import create_app
from example_project.directory import get_tenant
from example_project.tenant import create_tenant_app

if TYPE_CHECKING:
    from flask import Flask


def dispatched() -> Flask:
    """The example host app; the tenant is reached through dispatch."""
    return create_app({"LOG_LEVEL": "WARNING"})


def direct() -> Flask:
    """Tenant ``acme`` of the same example, served without dispatch."""
    host = create_app({"LOG_LEVEL": "WARNING"})
    with host.app_context():
        tenant = get_tenant(os.environ.get("BENCH_TENANT", "acme"))
    assert tenant is not None
    return create_tenant_app(
        tenant, data_dir=host.config["TENANT_DATA_DIR"], secret_key=host.config["SECRET_KEY"]
    )
