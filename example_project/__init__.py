"""A small multi-tenant notes service built on flask_dispatch.

The host app (landing page, signup, deleting a space) lives in :mod:`.host`;
each tenant is its own Flask app from :func:`.tenant.create_tenant_app`, with
its own SQLite database and a settings page, reached at
``http://<name>.localhost:5000/`` or ``http://localhost:5000/<name>/``.

Run it with ``flask --app example_project run`` or, under gunicorn,
``gunicorn -w 1 --threads 4 'example_project:create_app()'``. With several
workers or hosts, set ``FLASK_DISPATCH_REDIS_URL`` so that a signup, a
settings change or a deletion reaches every process (see
``docs/workers.rst``).
"""

from __future__ import annotations

from .directory import DirectoryError
from .host import create_app

__all__ = ["DirectoryError", "create_app"]
