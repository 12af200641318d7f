"""Links into tenants, and the name of the current one.

:func:`tenant_url` and :func:`tenant_url_for` build URLs of tenant pages
from the host app or a tenant, with the scheme and port of the current
request (or ``SERVER_NAME`` and ``PREFERRED_URL_SCHEME`` outside one).
``current_tenant`` is the current tenant's name inside a tenant request.
"""

from __future__ import annotations

import typing as t
from urllib.parse import quote, urlsplit

from flask import has_request_context, request
from werkzeug.exceptions import HTTPException
from werkzeug.local import LocalProxy

from .hosts import canonical_host
from .middleware import HOST_SCRIPT_NAME_KEY, STATE_KEY, TENANT_KEY
from .routing import Kind
from .tenant_apps import flask_app_in

if t.TYPE_CHECKING:
    from .extension import DispatchState
    from .registry import Factory

By = t.Literal["subdomain", "path"]

ALWAYS_EXTERNAL = "A subdomain tenant's URL is always external."
#: What an anchor may hold unquoted, as in :func:`flask.url_for`.
ANCHOR_SAFE = "%!#$&'()*+,/:;=?@"


def tenant_name() -> str | None:
    """The name of the tenant whose request is being handled, or ``None``."""
    if not has_request_context():
        return None
    return t.cast("str | None", request.environ.get(TENANT_KEY))


#: The current tenant's name inside a request that dispatch handed to a
#: tenant, ``None`` elsewhere. A proxy, like ``current_app``: compare it
#: with ``==`` or test its truth, not with ``is None``.
current_tenant: str | None = LocalProxy(tenant_name)  # type: ignore[assignment]


def tenant_url(
    state: DispatchState, name: str, path: str = "/", by: By | None = None, external: bool = True
) -> str:
    """See :meth:`.Dispatch.tenant_url`."""
    by, _ = tenant_factory(state, by)
    router = state.current_router()
    if not router.is_tenant_name(name, by):
        kind = Kind.SUBDOMAIN if by == "subdomain" else Kind.PATH
        problem = router.name_problem(name, kind) or "it is not free for a tenant"
        raise ValueError(f"{name!r} cannot be a {kind.value}: {problem}.")
    if not path.startswith("/"):
        path = "/" + path
    scheme, host, root = _site(state)
    if by == "path":
        if not external:
            return f"{root}/{name}{path}"
        return f"{scheme}://{_site_netloc(state, host)}{root}/{name}{path}"
    if not external:
        raise ValueError(ALWAYS_EXTERNAL)
    # The whole site is served under the script root, subdomain tenants too.
    return f"{scheme}://{name}.{_site_netloc(state, host)}{root}{path}"


def tenant_url_for(
    state: DispatchState, name: str, endpoint: str, by: By | None, values: dict[str, t.Any]
) -> str:
    """See :meth:`.Dispatch.url_for`."""
    values = dict(values)
    anchor, method = values.pop("_anchor", None), values.pop("_method", None)
    scheme, external = values.pop("_scheme", None), values.pop("_external", True)
    if scheme is not None and not external:
        raise ValueError("When specifying '_scheme', '_external' must be True.")
    by, factory = tenant_factory(state, by)
    if not external and by == "subdomain":
        raise ValueError(ALWAYS_EXTERNAL)
    base = urlsplit(tenant_url(state, name, "/", by))
    tenant = state.registry.get(name, factory)
    if tenant is None or isinstance(tenant, HTTPException):
        raise LookupError(f"No tenant {name!r}: its factory answered {tenant!r}.")
    flask_app = flask_app_in(tenant)
    if flask_app is None:
        raise LookupError(f"Tenant {name!r} is not a Flask app: {tenant!r}.")
    with flask_app.app_context():  # for the tenant's url_defaults functions
        flask_app.inject_url_defaults(endpoint, values)
    adapter = flask_app.url_map.bind(
        base.netloc, script_name=base.path.rstrip("/") or "/", url_scheme=scheme or base.scheme
    )
    url = adapter.build(endpoint, values, method=method, force_external=external)
    # As flask.url_for quotes it.
    return url if anchor is None else f"{url}#{quote(anchor, safe=ANCHOR_SAFE)}"


def default_by(state: DispatchState) -> By:
    """How a tenant is addressed when the caller does not say: by
    subdomain, unless a path factory is the only one registered."""
    extension = state.extension
    only_path = extension.subdomain_factory is None and extension.path_factory is not None
    return "path" if only_path else "subdomain"


def tenant_factory(state: DispatchState, by: By | None) -> tuple[By, Factory]:
    """How a tenant is addressed (``by``, else :func:`default_by`), and the
    factory that builds it.

    :raises ValueError: if no factory of that kind is registered.
    """
    by = by or default_by(state)
    extension = state.extension
    factory = extension.subdomain_factory if by == "subdomain" else extension.path_factory
    if factory is None:
        raise ValueError(f"No {by} factory is registered (@dispatch.{by}).")
    return by, factory


def _site(state: DispatchState) -> tuple[str, str, str]:
    """Scheme, host (with port) and script root of the current request,
    else of the configuration."""
    if has_request_context():
        # In a request that state's middleware handed to a path tenant, the
        # site's root is the host app's, without the tenant's "/acme". Only
        # while SCRIPT_NAME is still that: a tenant that is a host app too
        # may hand the request on again, and links under its own root.
        environ = request.environ
        host_root = environ.get(HOST_SCRIPT_NAME_KEY)
        if (
            host_root is None
            or environ.get(STATE_KEY) is not state
            or environ.get("SCRIPT_NAME") != f"{host_root}/{environ.get(TENANT_KEY)}"
        ):
            return request.scheme, request.host, request.script_root
        # Decoded from the WSGI string as Werkzeug decodes SCRIPT_NAME.
        return request.scheme, request.host, host_root.encode("latin-1").decode(errors="replace")
    config = state.config
    host = config.get("SERVER_NAME") or state.fallback_host
    return config["PREFERRED_URL_SCHEME"], host, config["APPLICATION_ROOT"].rstrip("/")


def _site_netloc(state: DispatchState, host: str) -> str:
    """The dispatch domain ``host`` is, or is under (else the main one),
    with the port of ``host``: a link's host is always a configured one,
    as the ``Host`` header may be anyone's (a reset email's link made on
    ``mail.example.com`` would lead to the mail server). A site with no
    dispatch domain (path tenants only: a subdomain factory needs one) has
    only ``host``, as :func:`flask.url_for`."""
    if not state.settings.domains:
        return host
    hostname, colon, port = host.rpartition(":") if not host.endswith("]") else (host, "", "")
    return f"{_parent_domain(state, hostname if colon else host)}{colon}{port if colon else ''}"


def _parent_domain(state: DispatchState, host: str) -> str:
    """The dispatch domain the current host is, or is under; else the main
    one (see :attr:`.DispatchSettings.main_domain`)."""
    canonical = canonical_host(host) or ""
    for domain in state.settings.domains:
        if canonical == domain or canonical.endswith("." + domain):
            return domain
    return t.cast(str, state.settings.main_domain)  # there are domains
