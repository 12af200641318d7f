"""The host app: landing page, signup, the site's own error pages, and the
tenant factory that flask_dispatch calls."""

from __future__ import annotations

import os
import re
import secrets
import typing as t

from flask import Flask, current_app, flash, redirect, render_template, request, url_for

from flask_dispatch import Dispatch, tenant_evicted
from flask_dispatch.paths import rule_first_segments

from .csrf import protect
from .directory import DuplicateTenant, add_tenant, get_tenant, init_directory, list_tenants
from .tenant import create_tenant_app

if t.TYPE_CHECKING:
    from flask.typing import ResponseReturnValue

dispatch = Dispatch()

COLOUR = re.compile(r"#[0-9a-fA-F]{6}")


def create_app(test_config: t.Mapping[str, t.Any] | None = None) -> Flask:
    """Create the host app.

    Config comes from defaults, then ``FLASK_*`` environment variables
    (e.g. ``FLASK_DISPATCH_MAX_INSTANCES=1``), then ``test_config``.
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
    # Show tenant creation and eviction in the server's log.
    app.logger.setLevel(app.config.get("LOG_LEVEL", "INFO"))
    init_directory(app.config["TENANT_DIRECTORY"], app.config["SEED_DEMO_TENANTS"])
    protect(app)
    dispatch.init_app(app)
    tenant_evicted.connect(close_tenant, app)
    app.register_blueprint(_views(app))
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
    return create_tenant_app(
        tenant,
        data_dir=current_app.config["TENANT_DATA_DIR"],
        secret_key=current_app.config["SECRET_KEY"],
    )


def close_tenant(sender: Flask, name: str, tenant_app: Flask, reason: str) -> None:
    """Close the evicted tenant's database connections."""
    store = tenant_app.extensions.get("notes")
    if store is not None:
        store.close()
    sender.logger.info("Tenant %r evicted (%s); its database is closed.", name, reason)


def _views(app: Flask) -> t.Any:
    from flask import Blueprint

    views = Blueprint("site", __name__)

    @views.get("/")
    def landing() -> str:
        return render_template(
            "landing.html", tenants=list_tenants(), subdomain_base=_subdomain_base()
        )

    @views.route("/signup", methods=["GET", "POST"])
    def signup() -> ResponseReturnValue:
        form = {"name": "", "display_name": "", "colour": "#0f766e"}
        if request.method == "POST":
            form = {key: request.form.get(key, "").strip() for key in form}
            form["name"] = form["name"].lower()
            error = _signup_error(form)
            if error is None:
                try:
                    add_tenant(form["name"], form["display_name"], form["colour"])
                except DuplicateTenant:
                    error = f"The name “{form['name']}” is taken. Choose another."
            if error is None:
                # Forget any "no such tenant" remembered for this name.
                dispatch.evict(form["name"])
                flash(f"Welcome, {form['display_name']}! Your space is ready.", "ok")
                return redirect(url_for("site.landing"))
            flash(error, "error")
            return render_template("signup.html", form=form), 400
        return render_template("signup.html", form=form)

    @views.app_errorhandler(404)
    def not_found(error: Exception) -> ResponseReturnValue:
        return render_template("404.html"), 404

    @views.app_errorhandler(400)
    def bad_request(error: Exception) -> ResponseReturnValue:
        return render_template("400.html", error=error), 400

    return views


def _signup_error(form: dict[str, str]) -> str | None:
    name = form["name"]
    settings = current_app.extensions["dispatch"].settings
    if not settings.name_pattern.fullmatch(name):
        return (
            "A name is 1 to 63 lowercase letters, digits and hyphens,"
            " and does not start or end with a hyphen."
        )
    if name in settings.reserved or name in _own_segments():
        return f"The name “{name}” is reserved. Choose another."
    if not form["display_name"] or len(form["display_name"]) > 80:
        return "A display name is 1 to 80 characters."
    if not COLOUR.fullmatch(form["colour"]):
        return "A colour looks like #0f766e."
    return None


def _own_segments() -> frozenset[str]:
    """First path segments the host app uses itself (a tenant called
    "signup" could not be reached by path)."""
    return rule_first_segments(rule.rule for rule in current_app.url_map.iter_rules())


def _subdomain_base() -> str | None:
    """``scheme://{name}.host:port/`` when the request came to a dispatch
    domain itself (e.g. ``localhost:5000``), else ``None``."""
    host = request.host.lower()
    name = host.partition(":")[0]
    if name not in current_app.extensions["dispatch"].settings.domains:
        return None
    return f"{request.scheme}://{{name}}.{host}/"


def main() -> None:  # pragma: no cover - convenience for `python -m`
    create_app().run()


if __name__ == "__main__":  # pragma: no cover
    main()
