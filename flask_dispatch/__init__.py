"""Application dispatching for Flask: tenant apps by subdomain or path
prefix, static mounts, and a bounded, single-flight registry of tenants."""

from __future__ import annotations

from .config import DispatchConfigError
from .errors import (
    TenantCreationTimeout,
    TenantError,
    TenantFactoryError,
    TenantRecursionError,
)
from .extension import Dispatch, DispatchState
from .middleware import DispatchMiddleware
from .registry import TenantRegistry
from .signals import tenant_created, tenant_evicted

__version__ = "0.1.0"

__all__ = [
    "Dispatch",
    "DispatchConfigError",
    "DispatchMiddleware",
    "DispatchState",
    "TenantCreationTimeout",
    "TenantError",
    "TenantFactoryError",
    "TenantRecursionError",
    "TenantRegistry",
    "tenant_created",
    "tenant_evicted",
]
