"""One tenant's app: a notes page over the tenant's own SQLite database, and
a settings page for its display name and colour.

The views are one blueprint shared by every tenant app; each app carries its
tenant's directory entry and notes store in ``app.extensions``, and
``current_tenant`` names the tenant a request was dispatched to. Every link
is built with ``url_for``, so the same app works at
``http://acme.localhost:5000/`` and at ``http://localhost:5000/acme/``.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import typing as t

from flask import (
    Blueprint,
    Flask,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    url_for,
)

from flask_dispatch import current_tenant

from .csrf import protect
from .directory import update_tenant
from .extensions import dispatch
from .store import NotesDeleted, NoteStore

if t.TYPE_CHECKING:
    from flask.typing import ResponseReturnValue
    from werkzeug.wrappers import Response

    from .directory import Tenant

MAX_NOTE = 500
COLOUR = re.compile(r"#[0-9a-fA-F]{6}")

views = Blueprint("notes", __name__)


def data_file(data_dir: str, name: str) -> str:
    """Where tenant ``name`` keeps its notes."""
    return os.path.join(data_dir, f"{name}.sqlite3")


def create_tenant_app(tenant: Tenant, *, data_dir: str, secret_key: str, directory: str) -> Flask:
    """Build the app of ``tenant``, opening (and if need be creating) its
    notes database.

    :param tenant: the directory entry.
    :param data_dir: folder holding one ``<name>.sqlite3`` file per tenant.
    :param secret_key: the host app's key; the tenant's is derived from it
        and from the tenant's signup.
    :param directory: the tenant directory's path, for the settings page.
    :raises OSError: the data folder cannot be made.
    :raises sqlite3.Error: the notes database cannot be opened or created.
    """
    app = Flask(f"{__name__}.{tenant.name}", root_path=os.path.dirname(__file__))
    # The signup time as well as the name: a name signed up again after a
    # deletion must not accept the sessions of the space deleted.
    this_signup = f"{tenant.name} {tenant.created_at}"
    app.config.update(
        SECRET_KEY=hmac.new(secret_key.encode(), this_signup.encode(), hashlib.sha256).hexdigest(),
        TENANT_DIRECTORY=directory,
    )
    os.makedirs(data_dir, exist_ok=True)
    app.extensions["notes"] = NoteStore(data_file(data_dir, tenant.name))
    app.extensions["tenant"] = tenant
    protect(app)
    app.register_blueprint(views)
    return app


def _store() -> NoteStore:
    return t.cast(NoteStore, current_app.extensions["notes"])


@views.app_context_processor
def inject_tenant() -> dict[str, object]:
    return {"tenant": current_app.extensions["tenant"]}


@views.get("/")
def index() -> str:
    return render_template("tenant/notes.html", notes=_store().list())


@views.post("/notes")
def add_note() -> Response:
    body = request.form.get("body", "").strip()
    if not body:
        flash("A note needs some text.", "error")
    elif len(body) > MAX_NOTE:
        flash(f"A note holds at most {MAX_NOTE} characters.", "error")
    else:
        _store().add(body)
        flash("Note added.", "ok")
    return redirect(url_for(".index"))


@views.post("/notes/<int(max=9223372036854775807):note_id>/delete")  # SQLite's largest
def delete_note(note_id: int) -> Response:
    _store().delete(note_id)
    flash("Note deleted.", "ok")
    return redirect(url_for(".index"))


@views.route("/settings", methods=["GET", "POST"])
def settings() -> ResponseReturnValue:
    tenant: Tenant = current_app.extensions["tenant"]
    form = {"display_name": tenant.display_name, "colour": tenant.colour}
    if request.method == "GET":
        return render_template("tenant/settings.html", form=form)
    form = {key: request.form.get(key, "").strip() for key in form}
    if not form["display_name"] or len(form["display_name"]) > 80:
        flash("A display name is 1 to 80 characters.", "error")
    elif not COLOUR.fullmatch(form["colour"]):
        flash("A colour looks like #0f766e.", "error")
    else:
        name = str(current_tenant)
        if not update_tenant(name, form["display_name"], form["colour"]):
            abort(404)  # deleted meanwhile
        # This app shows the old settings: every process builds it afresh.
        dispatch.evict(name)
        flash("Settings saved.", "ok")
        return redirect(url_for(".index"))
    return render_template("tenant/settings.html", form=form), 400


@views.app_errorhandler(500)
def server_error(error: Exception) -> ResponseReturnValue:
    return render_template("tenant/500.html"), 500


@views.app_errorhandler(NotesDeleted)
def deleted(error: NotesDeleted) -> ResponseReturnValue:
    # This process missed the eviction (no Redis, or it was down): drop this
    # app here (the others have), so that the next request finds what the
    # directory says now: no such space, or a new one signed up under the name.
    dispatch.registry.evict(str(current_tenant), everywhere=False)
    return render_template("tenant/410.html"), 410
