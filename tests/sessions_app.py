"""The app the session tests serve, in process and under gunicorn: a host app
and Flask tenants ``acme`` and ``globex``, by subdomain and by path. Each has
``/login`` (puts ``user-of-<name>`` in the session), ``/me`` and ``/logout``.

The tenant factory copies the host app's ``SECRET_KEY`` and ``SESSION_*``
settings, which is what made a login in one tenant a login in all of them.
"""

from __future__ import annotations

import typing as t

from flask import Flask, current_app, session

from flask_dispatch import Dispatch

if t.TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication

TENANTS = ("acme", "globex")
HOST_KEY = "host-secret"


def create(
    *,
    scope: bool = True,
    own_keys: bool = False,
    domain: str = "example.com",
    setup: t.Mapping[str, t.Callable[[Flask], object]] | None = None,
    wrap: t.Callable[[Flask], WSGIApplication] | None = None,
    **host_config: t.Any,
) -> Flask:
    """The host app.

    :param scope: ``DISPATCH_SCOPE_SESSIONS``.
    :param own_keys: give each tenant its own ``SECRET_KEY`` instead of the
        host app's.
    :param domain: ``DISPATCH_DOMAIN``.
    :param setup: per tenant name, called with the new tenant app last.
    :param wrap: what the factory returns instead of the tenant app, made
        from it (WSGI middleware around it, say).
    :param host_config: more host app config (``SESSION_COOKIE_DOMAIN``...).
    """
    host = Flask("sessions_host")
    host.config.update(
        SECRET_KEY=HOST_KEY, DISPATCH_DOMAIN=domain, DISPATCH_SCOPE_SESSIONS=scope, **host_config
    )
    add_login(host, "host")
    dispatch = Dispatch(host)
    #: The tenant apps built, by name, for tests to look at.
    built: dict[str, Flask] = {}
    host.extensions["sessions_test.tenants"] = built

    @dispatch.subdomain
    @dispatch.path
    def tenant_app(name: str) -> WSGIApplication | None:
        if name not in TENANTS:
            return None
        tenant = Flask(f"sessions_tenant_{name}")
        tenant.config.update(
            {k: v for k, v in current_app.config.items() if k.startswith("SESSION_")},
            SECRET_KEY=f"{HOST_KEY}/{name}" if own_keys else current_app.config["SECRET_KEY"],
        )
        add_login(tenant, name)
        if setup and name in setup:
            setup[name](tenant)
        built[name] = tenant
        return tenant if wrap is None else wrap(tenant)

    return host


def add_login(app: Flask, owner: str) -> None:
    """``/login``, ``/me`` and ``/logout`` for ``owner`` on ``app``."""

    @app.get("/login")
    def login() -> str:
        session["user"] = f"user-of-{owner}"
        return f"logged in as user-of-{owner}"

    @app.get("/me")
    def me() -> str:
        return str(session.get("user", "anonymous"))

    @app.get("/logout")
    def logout() -> str:
        session.clear()
        return "logged out"
