"""Exceptions raised while finding or creating a tenant app."""

from __future__ import annotations


class TenantError(Exception):
    """Base class of the errors below. ``name`` is the tenant's name."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(message)
        self.name = name


class TenantCreationTimeout(TenantError):
    """Another request has been creating this tenant for longer than
    :data:`DISPATCH_CREATE_TIMEOUT` seconds. The request gets a 503.
    """

    def __init__(self, name: str, timeout: float) -> None:
        super().__init__(name, f"Tenant {name!r} was not created within {timeout:g} seconds.")
        self.timeout = timeout


class TenantRecursionError(TenantError, RuntimeError):
    """A tenant factory asked for its own tenant, directly or through a
    request it made on the same thread, while that tenant was being created.
    """

    def __init__(self, name: str) -> None:
        super().__init__(
            name,
            f"The factory for tenant {name!r} asked for tenant {name!r} while creating it.",
        )


class TenantFactoryError(TenantError):
    """Raised in the requests that waited on another request's creation of
    the tenant when that creation failed. The factory's exception is the
    ``__cause__``; the request that ran the factory gets that exception itself.
    """

    def __init__(self, name: str) -> None:
        super().__init__(name, f"The factory for tenant {name!r} failed.")
