"""Session cookies scoped to their tenant.

Path tenants share the host name, and Flask signs its ``Path=/`` session
cookie with ``SECRET_KEY`` alone: a tenant with the host app's key and cookie
settings would accept a login made in any other tenant, or on the host app.
When dispatch creates a Flask tenant app, :func:`scope_session` gives it a
:class:`TenantSessionInterface`, so its session cookie is signed for that
tenant only, and named and sent so that tenants do not overwrite each other's.
:data:`DISPATCH_SCOPE_SESSIONS` turns this off; :doc:`/sessions` has the rules.
"""

from __future__ import annotations

import logging
import typing as t
import weakref
from urllib.parse import quote

from flask import Flask, request
from flask.sessions import SecureCookieSessionInterface, SessionInterface

if t.TYPE_CHECKING:
    from .links import By

#: What the signing salt of a tenant's session cookie starts with; how the
#: tenant is addressed and its name follow, as in
#: ``"flask_dispatch.session:path:acme"``. (Flask's own salt is
#: ``"cookie-session"``.)
SALT_PREFIX = "flask_dispatch.session:"

# Cookie names browsers refuse unless Path=/ (RFC 6265bis).
_HOST_PREFIX = "__Host-"

log = logging.getLogger("flask_dispatch")
# The session interfaces warned about in this process: once each.
_warned: set[type] = set()
# The apps found serving several tenants, warned about once each.
_shared: weakref.WeakSet[Flask] = weakref.WeakSet()


class TenantSessionInterface(SecureCookieSessionInterface):
    """Flask's signed cookie session, bound to one tenant.

    The tenant's name, and whether it is a subdomain or a path tenant, are
    part of the signing salt, so a cookie signed by another tenant (a
    same-named tenant of the other kind too) or by the host app fails the
    signature check even under the same ``SECRET_KEY``, whatever name or
    path it is sent with. When
    ``SESSION_COOKIE_PATH`` is not set, the cookie's path is the script root
    of the request (``/acme`` for a tenant by path, ``/`` by subdomain)
    instead of ``APPLICATION_ROOT``: one app may serve both addresses.

    :param tenant: the tenant's name.
    :param by: ``"subdomain"`` or ``"path"``: the factory that built it.

    .. versionadded:: 0.2
    """

    def __init__(self, tenant: str, *, by: By) -> None:
        #: The tenant's name.
        self.tenant = tenant
        self.salt = f"{SALT_PREFIX}{by}:{tenant}"

    def get_cookie_path(self, app: Flask) -> str:
        """``SESSION_COOKIE_PATH`` if set, else the request's script root
        (``/`` for a ``__Host-`` cookie, which browsers refuse on other
        paths)."""
        path: str | None = app.config["SESSION_COOKIE_PATH"]
        if path:
            return path
        if self.get_cookie_name(app).startswith(_HOST_PREFIX):
            return "/"
        return request.root_path or "/"


def _scoped_already(tenant_app: Flask, first: str, name: str, inside: bool) -> None:
    """The app returned for tenant ``name`` is scoped to tenant ``first``:
    an error for a bare app, a warning once for one inside middleware."""
    if not inside:
        raise RuntimeError(
            f"The tenant app for {name!r} is already scoped to tenant {first!r}: a"
            " session cannot be bound to both. Return one app per tenant, give the app"
            " its own session_interface, or set DISPATCH_SCOPE_SESSIONS = False."
        )
    if tenant_app not in _shared:
        _shared.add(tenant_app)
        log.warning(
            "The Flask app %r serves tenants %r and %r (inside middleware made per"
            " tenant): its session stays scoped to %r, so these tenants share sessions."
            " Build one app per tenant to keep them apart.",
            tenant_app.name,
            first,
            name,
            first,
        )


def _leave_alone(interface: SessionInterface, name: str) -> None:
    """A tenant's own session interface is left alone. Flask's own cookie
    session, assigned, is how a tenant opts out; any other (server-side
    ones, say) may share a store with other tenants: say once per type what
    to check."""
    if type(interface) is SecureCookieSessionInterface or type(interface) in _warned:
        return
    _warned.add(type(interface))
    log.warning(
        "Tenant %r has a session interface of its own (%s), which dispatch leaves"
        " alone: give each tenant its own cookie name and path, and its own store"
        " key prefix (Flask-Session: SESSION_KEY_PREFIX), or another tenant's"
        " session id is valid there too.",
        name,
        type(interface).__name__,
    )


def _own_cookie_name(cookie_name: str, name: str, host_cookie_name: str) -> str:
    """``cookie_name`` and ``_<name>``, never the host app's cookie name."""
    # quote() leaves only letters, digits, "_.-~" and "%XX": all allowed in
    # a cookie name, and no two names give the same result.
    quoted = quote(name, safe="")
    own = f"{cookie_name}_{quoted}"
    # A host cookie named "session_acme": "%5F" is "_" spelt as quote()
    # never spells it, so that name is no other tenant's.
    return own if own != host_cookie_name else f"{cookie_name}%5F{quoted}"


def scope_session(
    tenant_app: Flask, name: str, host_app: Flask, *, by: By, inside: bool = False
) -> None:
    """Scope the session of ``tenant_app`` to tenant ``name``, unless the
    tenant has a session interface of its own (see :doc:`/sessions` for the
    rules). Dispatch calls it for each Flask app a factory returns, unless
    :data:`DISPATCH_SCOPE_SESSIONS` is false.

    :param tenant_app: the app a factory returned.
    :param name: the tenant's name.
    :param host_app: the host app, whose settings a factory may have copied.
    :param by: ``"subdomain"`` or ``"path"``: the factory that built it. A
        subdomain tenant and a path tenant of the same name, built by two
        factories, are two tenants.
    :param inside: the factory returned the app inside middleware: one app
        shared by several tenants' middleware keeps its first tenant's
        scoping (apart from the host app's cookies), with one warning.
    :raises RuntimeError: if the app is already scoped to another tenant (a
        factory returned one app object for two names), unless ``inside``.

    .. versionadded:: 0.2
    """
    current = tenant_app.session_interface
    if isinstance(current, TenantSessionInterface):
        if current.tenant != name:  # else the factory returned an app it had built before
            _scoped_already(tenant_app, current.tenant, name, inside)
        return
    if current is not Flask.session_interface:
        _leave_alone(current, name)
        return
    config, host = tenant_app.config, host_app.config
    cookie_name: str = config["SESSION_COOKIE_NAME"]
    host_cookie_name: str = host["SESSION_COOKIE_NAME"]
    if cookie_name in (Flask.default_config["SESSION_COOKIE_NAME"], host_cookie_name):
        config["SESSION_COOKIE_NAME"] = _own_cookie_name(cookie_name, name, host_cookie_name)
    for key in ("SESSION_COOKIE_PATH", "SESSION_COOKIE_DOMAIN"):
        if config[key] == host[key]:
            config[key] = None
    tenant_app.session_interface = TenantSessionInterface(name, by=by)
