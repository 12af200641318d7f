"""Links into tenants, and the name of the current one.

:func:`tenant_url` and :func:`tenant_url_for` build URLs of tenant pages
from the host app, with the scheme and port of the current request (or
``SERVER_NAME`` and ``PREFERRED_URL_SCHEME`` outside one). ``current_tenant``
is the current tenant's name inside a tenant request.
"""

from __future__ import annotations

import typing as t
from urllib.parse import urlsplit

from flask import Flask, has_request_context, request
from werkzeug.local import LocalProxy

from .hosts import canonical_host
from .middleware import TENANT_KEY

if t.TYPE_CHECKING:
    from .extension import DispatchState
    from .registry import Factory

By = t.Literal["subdomain", "path"]


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
    if not state.current_router().is_tenant_name(name, by):
        raise ValueError(f"{name!r} is not a tenant name.")
    if not path.startswith("/"):
        path = "/" + path
    scheme, host, root = _site(state)
    if by == "path":
        return f"{scheme}://{host}{root}/{name}{path}" if external else f"{root}/{name}{path}"
    if not external:
        raise ValueError("A subdomain tenant's URL is always external.")
    hostname, colon, port = host.rpartition(":") if not host.endswith("]") else (host, "", "")
    parent = _parent_domain(state, hostname if colon else host)
    return f"{scheme}://{name}.{parent}{colon}{port if colon else ''}{path}"


def tenant_url_for(
    state: DispatchState, name: str, endpoint: str, by: By | None, values: dict[str, t.Any]
) -> str:
    """See :meth:`.Dispatch.url_for`."""
    base = urlsplit(tenant_url(state, name, "/", by))
    tenant = state.registry.get(name, tenant_factory(state, by)[1])
    if not isinstance(tenant, Flask):
        raise LookupError(f"Tenant {name!r} is not a Flask app: {tenant!r}.")
    adapter = tenant.url_map.bind(
        base.netloc, script_name=base.path.rstrip("/") or "/", url_scheme=base.scheme
    )
    return adapter.build(endpoint, values, force_external=True)


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
        return request.scheme, request.host, request.script_root
    config = state.config
    host = config.get("SERVER_NAME") or state.fallback_host
    return config["PREFERRED_URL_SCHEME"], host, config["APPLICATION_ROOT"].rstrip("/")


def _parent_domain(state: DispatchState, host: str) -> str:
    """The dispatch domain the current host is, or is under; else the first
    one configured."""
    canonical = canonical_host(host) or ""
    for domain in state.settings.domains:
        if canonical == domain or canonical.endswith("." + domain):
            return domain
    if not state.settings.domains:
        raise ValueError("Subdomain URLs need DISPATCH_DOMAIN (or SERVER_NAME).")
    configured = state.config.get("DISPATCH_DOMAIN") or state.config["SERVER_NAME"]
    first = configured if isinstance(configured, str) else next(iter(configured))
    return canonical_host(first) or state.settings.domains[0]
