"""The host app: landing page, signup, deleting a space, the site's own error
pages, and the tenant factory that flask_dispatch calls.

Every change to a tenant ends with ``dispatch.evict(name)``: after a signup
(forget a remembered "no such tenant"), a settings change (in the tenant app)
or a deletion (drop the running app). With ``DISPATCH_REDIS_URL`` set, the
eviction reaches every worker process and host sharing that Redis.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import sqlite3
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
    session,
    url_for,
)

from flask_dispatch import TenantError, tenant_evicted

from .csrf import protect
from .directory import (
    DuplicateTenant,
    add_tenant,
    get_tenant,
    init_directory,
    list_tenants,
    remove_tenant,
)
from .extensions import dispatch
from .store import remove_files
from .tenant import create_tenant_app, data_file

if t.TYPE_CHECKING:
    from flask.typing import ResponseReturnValue

    from .directory import Tenant

__all__ = ["create_app", "dispatch"]

COLOUR = re.compile(r"#[0-9a-fA-F]{6}")
#: Most spaces one browser's session remembers creating.
MAX_OWNED = 20


def create_app(test_config: t.Mapping[str, t.Any] | None = None) -> Flask:
    """Create the host app.

    Config comes from defaults, then ``FLASK_*`` environment variables
    (e.g. ``FLASK_DISPATCH_MAX_INSTANCES=1``,
    ``FLASK_DISPATCH_REDIS_URL=redis://localhost:6379/0``), then
    ``test_config``.

    :raises DirectoryError: the tenant directory is empty or damaged.
    """
    app = Flask(__name__, instance_relative_config=True)
    os.makedirs(app.instance_path, exist_ok=True)
    app.config.update(
        DISPATCH_DOMAIN=["localhost", "example.localhost"],
        TENANT_DIRECTORY=os.path.join(app.instance_path, "tenants.sqlite3"),
        TENANT_DATA_DIR=os.path.join(app.instance_path, "tenant-data"),
        SEED_DEMO_TENANTS=True,
    )
    app.config.from_prefixed_env()
    if test_config is not None:
        app.config.update(test_config)
    if not app.config.get("SECRET_KEY"):
        app.config["SECRET_KEY"] = _instance_secret(app)
    # Show tenant evictions in the server's log.
    app.logger.setLevel(app.config.get("LOG_LEVEL", "INFO"))
    init_directory(app.config["TENANT_DIRECTORY"], app.config["SEED_DEMO_TENANTS"])
    protect(app)
    dispatch.init_app(app)
    tenant_evicted.connect(close_tenant, app)
    app.register_blueprint(views)
    return app


def _instance_secret(app: Flask) -> str:
    """A key kept in the instance folder, so every worker process and every
    restart signs sessions the same way."""
    path = os.path.join(app.instance_path, "secret_key")
    try:
        with open(path, "x") as f:
            f.write(secrets.token_hex(32))
    except FileExistsError:
        pass
    with open(path) as f:
        return f.read().strip()


@dispatch.subdomain
@dispatch.path
def tenant_app(name: str) -> Flask | None:
    """Build tenant ``name``'s app, or ``None`` if the directory has no such
    tenant. Runs inside the host app's app context."""
    tenant = get_tenant(name)
    if tenant is None:
        return None
    config = current_app.config
    return create_tenant_app(
        tenant,
        data_dir=config["TENANT_DATA_DIR"],
        secret_key=config["SECRET_KEY"],
        directory=config["TENANT_DIRECTORY"],
    )


@dispatch.tenant_names
def tenant_names() -> list[str]:
    return [tenant.name for tenant in list_tenants()]


def close_tenant(sender: Flask, name: str, tenant_app: Flask, reason: str) -> None:
    """Close the evicted tenant's database connections."""
    store = tenant_app.extensions.get("notes")
    if store is not None:
        store.close()
    sender.logger.info("Tenant %r evicted (%s); its database is closed.", name, reason)


views = Blueprint("site", __name__)


@views.get("/")
def landing() -> str:
    tenants = list_tenants()
    owned = [tenant for tenant in tenants if _owns(tenant)]
    return render_template(
        "landing.html",
        tenants=[(tenant, _links(tenant.name)) for tenant in tenants],
        owned=[(tenant, _settings_url(tenant.name)) for tenant in owned],
    )


def _links(name: str) -> dict[str, str]:
    """The tenant's addresses, by subdomain and by path, under the site's
    domain (the one this page was asked on, else the first configured) and
    with the port this page was asked for."""
    try:
        return {by: dispatch.tenant_url(name, by=by) for by in ("subdomain", "path")}
    except ValueError:  # a name the site took for itself since the signup
        return {}


def _settings_url(name: str) -> str | None:
    """The tenant's settings page, built through its own URL map (which
    builds the tenant in this process, if need be), or ``None`` if it cannot
    be built now."""
    try:
        return dispatch.url_for(name, "notes.settings")
    except (LookupError, ValueError, TenantError):
        return None


@views.route("/signup", methods=["GET", "POST"])
def signup() -> ResponseReturnValue:
    form = {"name": "", "display_name": "", "colour": "#0f766e"}
    if request.method == "GET":
        return render_template("signup.html", form=form)
    form = {key: request.form.get(key, "").strip() for key in form}
    form["name"] = form["name"].lower()
    error = _signup_error(form)
    status = 400
    if error is None:
        try:
            tenant = add_tenant(form["name"], form["display_name"], form["colour"])
        except DuplicateTenant:
            error = f"The name “{form['name']}” is taken. Choose another."
        except sqlite3.Error:
            current_app.logger.exception("Cannot add tenant %r", form["name"])
            error, status = _CANNOT_CREATE, 503
    if error is None and not _can_create(form["name"]):
        error, status = _CANNOT_CREATE, 503
    if error is not None:
        flash(error, "error")
        return render_template("signup.html", form=form), status
    # Forget any "no such tenant" remembered for this name, in every process.
    dispatch.evict(form["name"])
    owned = [*_owned_here().items(), (tenant.name, tenant.created_at)]
    session["owned"] = owned[-MAX_OWNED:]
    flash(f"Welcome, {form['display_name']}! Your space is ready.", "ok")
    return redirect(url_for("site.landing"))


_CANNOT_CREATE = "Your space could not be created: the server cannot store it now. Try again later."


def _can_create(name: str) -> bool:
    """Build the new tenant through the factory, so that "ready" is true:
    its data folder and database can be made. On failure the name is given
    back. Any file left under the name (a deletion that could not finish) is
    removed first: a new tenant starts empty."""
    path = data_file(current_app.config["TENANT_DATA_DIR"], name)
    try:
        remove_files(path)
        app = tenant_app(name)
        if app is not None:
            app.extensions["notes"].close()
        return True
    except (OSError, sqlite3.Error):
        current_app.logger.exception("Cannot create tenant %r; its signup is undone", name)
        remove_tenant(name)
        with contextlib.suppress(OSError):
            remove_files(path)
        return False


def _signup_error(form: dict[str, str]) -> str | None:
    name = form["name"]
    pattern = current_app.extensions["dispatch"].settings.name_pattern
    if not pattern.fullmatch(name):
        return (
            "A name is 1 to 63 lowercase letters, digits and hyphens,"
            " and does not start or end with a hyphen."
        )
    if not dispatch.is_tenant_name(name):
        return f"The name “{name}” is reserved. Choose another."
    if not form["display_name"] or len(form["display_name"]) > 80:
        return "A display name is 1 to 80 characters."
    if not COLOUR.fullmatch(form["colour"]):
        return "A colour looks like #0f766e."
    return None


@views.route("/teams/<name>/delete", methods=["GET", "POST"])
def delete(name: str) -> ResponseReturnValue:
    """Delete a space: its directory entry, its running app in every
    process, then its notes. Only the browser that created it may."""
    tenant = _owned(name)
    if request.method == "GET":
        return render_template("delete.html", tenant=tenant)
    if request.form.get("confirm", "").strip().lower() != name:
        flash(f"Type “{name}” to delete this space.", "error")
        return render_template("delete.html", tenant=tenant), 400
    remove_tenant(name)  # from now on the factory answers "no such tenant"
    dispatch.evict(name)  # every process drops its running app
    try:
        remove_files(data_file(current_app.config["TENANT_DATA_DIR"], name))
    except OSError:  # the next signup of the name removes them
        current_app.logger.exception("Notes of deleted tenant %r not removed", name)
    session["owned"] = [(n, at) for n, at in _owned_here().items() if n != name]
    flash(f"{tenant.display_name} is deleted.", "ok")
    return redirect(url_for("site.landing"))


def _owned(name: str) -> Tenant:
    tenant = get_tenant(name)
    if tenant is None:
        abort(404)
    if not _owns(tenant):
        abort(403)
    return tenant


def _owned_here() -> dict[str, str]:
    """The spaces this browser signed up, oldest first: name -> when. Kept
    as a list of pairs: the session's JSON would sort a dict's keys."""
    owned = session.get("owned", ())
    return {
        pair[0]: pair[1] for pair in owned if isinstance(pair, (list, tuple)) and len(pair) == 2
    }


def _owns(tenant: Tenant) -> bool:
    # By the signup's time, not the name alone: a session kept from before a
    # deletion must not own whoever signs up the name next.
    return _owned_here().get(tenant.name) == tenant.created_at


@views.app_errorhandler(400)
def bad_request(error: Exception) -> ResponseReturnValue:
    return render_template("400.html", error=error), 400


@views.app_errorhandler(403)
def forbidden(error: Exception) -> ResponseReturnValue:
    return render_template("403.html"), 403


@views.app_errorhandler(404)
def not_found(error: Exception) -> ResponseReturnValue:
    return render_template("404.html"), 404


@views.app_errorhandler(500)
def server_error(error: Exception) -> ResponseReturnValue:
    return render_template("500.html"), 500


def main() -> None:  # pragma: no cover - convenience for `python -m`
    create_app().run()


if __name__ == "__main__":  # pragma: no cover
    main()
