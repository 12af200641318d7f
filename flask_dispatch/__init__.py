"""Application dispatching for Flask: tenant apps by subdomain or path
prefix, static mounts, and a bounded, single-flight registry of tenants."""

from __future__ import annotations

from .config import DispatchConfigError
from .errors import (
    TenantBusy,
    TenantCreationTimeout,
    TenantError,
    TenantFactoryError,
    TenantRecursionError,
    TenantUnavailable,
)
from .extension import Dispatch, DispatchState
from .links import current_tenant
from .logs import TenantFilter
from .registry import RegistryStats, TenantRegistry, TenantSlot
from .signals import tenant_created, tenant_evicted

__version__ = "0.2.0.dev0"

__all__ = [
    "Dispatch",
    "DispatchConfigError",
    "DispatchState",
    "RegistryStats",
    "TenantBusy",
    "TenantCreationTimeout",
    "TenantError",
    "TenantFactoryError",
    "TenantFilter",
    "TenantRecursionError",
    "TenantRegistry",
    "TenantSlot",
    "TenantUnavailable",
    "current_tenant",
    "tenant_created",
    "tenant_evicted",
]
