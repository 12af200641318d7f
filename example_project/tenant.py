"""One tenant's app: a notes page over the tenant's own SQLite database.

Every link is built with ``url_for``, so the same app works at
``http://acme.localhost:5000/`` and at ``http://localhost:5000/acme/``.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from typing import TYPE_CHECKING

from flask import Flask, flash, redirect, render_template, request, url_for

from .csrf import protect
from .store import NoteStore

if TYPE_CHECKING:
    from werkzeug.wrappers import Response

    from .directory import Tenant

MAX_NOTE = 500


def create_tenant_app(tenant: Tenant, *, data_dir: str, secret_key: str) -> Flask:
    """Build the app of ``tenant``.

    :param tenant: the directory entry.
    :param data_dir: folder holding one ``<name>.sqlite3`` file per tenant.
    :param secret_key: the host app's key; the tenant's is derived from it.
    """
    app = Flask(f"{__name__}.{tenant.name}", root_path=os.path.dirname(__file__))
    app.config.update(
        SECRET_KEY=hmac.new(secret_key.encode(), tenant.name.encode(), hashlib.sha256).hexdigest(),
        # Tenants reached by path share the host name: one cookie each.
        SESSION_COOKIE_NAME=f"session_{tenant.name}",
    )
    os.makedirs(data_dir, exist_ok=True)
    store = NoteStore(os.path.join(data_dir, f"{tenant.name}.sqlite3"))
    app.extensions["notes"] = store
    app.extensions["tenant"] = tenant
    protect(app)

    @app.context_processor
    def inject_tenant() -> dict[str, object]:
        return {"tenant": tenant}

    @app.get("/")
    def notes() -> str:
        return render_template("tenant/notes.html", notes=store.list())

    @app.post("/notes")
    def add_note() -> Response:
        body = request.form.get("body", "").strip()
        if not body:
            flash("A note needs some text.", "error")
        elif len(body) > MAX_NOTE:
            flash(f"A note holds at most {MAX_NOTE} characters.", "error")
        else:
            store.add(body)
            flash("Note added.", "ok")
        return redirect(url_for("notes"))

    @app.post("/notes/<int:note_id>/delete")
    def delete_note(note_id: int) -> Response:
        store.delete(note_id)
        flash("Note deleted.", "ok")
        return redirect(url_for("notes"))

    return app
