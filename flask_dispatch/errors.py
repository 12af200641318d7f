"""Exceptions raised while finding or creating a tenant app."""

from __future__ import annotations

import typing as t
from copy import copy as shallow_copy

from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response


class TenantError(Exception):
    """Base class of the errors below. ``name`` is the tenant's name."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(message)
        self.name = name


class TenantUnavailable(TenantError):
    """The tenant cannot be served now; the request gets a 503 with
    ``Retry-After``.

    .. versionadded:: 0.2
    """


class TenantCreationTimeout(TenantUnavailable):
    """The tenant was not created within :data:`DISPATCH_CREATE_TIMEOUT`
    seconds. Its creation goes on, and its app is kept when it arrives.
    """

    def __init__(self, name: str, timeout: float) -> None:
        super().__init__(name, f"Tenant {name!r} was not created within {timeout:g} seconds.")
        self.timeout = timeout


class TenantBusy(TenantUnavailable):
    """Too many requests wait for this tenant's creation
    (:data:`DISPATCH_MAX_WAITING`), its factory has run (or its creation
    has waited in line) past :data:`DISPATCH_CREATE_TIMEOUT`, or too many
    creations are pending (16 times :data:`DISPATCH_MAX_CREATING`).

    .. versionadded:: 0.2
    """

    def __init__(self, name: str, why: str) -> None:
        super().__init__(name, f"Tenant {name!r} cannot be created now: {why}.")


class TenantRecursionError(TenantError, RuntimeError):
    """A tenant factory asked for its own tenant while creating it."""

    def __init__(self, name: str) -> None:
        super().__init__(
            name,
            f"The factory for tenant {name!r} asked for tenant {name!r} while creating it.",
        )


#: The start of the note on an exception a ``tenant_created`` receiver
#: raised (the tenant's name follows).
CREATED_RECEIVER_NOTE = "flask_dispatch: raised by a tenant_created receiver for tenant"


class TenantFactoryError(TenantError):
    """The factory of the tenant, or a ``tenant_created`` receiver, raised.
    Its exception is the ``__cause__``, with a note that says which."""

    def __init__(self, name: str) -> None:
        super().__init__(name, f"Creating tenant {name!r} failed.")


H = t.TypeVar("H", bound=HTTPException)


def fresh_copy(error: H) -> H:
    """A new HTTP error with the same attributes (its description, response
    and any others a subclass sets) and no traceback or context.

    A remembered answer is raised as a fresh copy each time: raising one
    instance again would chain every request's frames onto its traceback
    and keep them alive. ``HTTPException`` keeps what it was made with in
    attributes, not in ``args``, which the copy leaves empty.

    Its response, if it has one, is copied too, with headers of its own and
    its body read into memory: a file or generator body could be sent only
    once. The factory's answer is copied where it is remembered, so the
    body is read there, on one thread, and each request copies the result.
    """
    fresh = type(error).__new__(type(error))
    fresh.__dict__.update(error.__dict__)
    response = error.response
    if isinstance(response, Response):
        if not response.is_sequence:
            body = response.response
            response.direct_passthrough = False
            response.set_data(b"".join(response.iter_encoded()))
            close = getattr(body, "close", None)
            if close is not None:
                close()
        # Not the constructor: a subclass's may take other arguments.
        own = fresh.response = shallow_copy(response)
        own.headers = response.headers.copy()
        own.set_data(response.get_data())
    return fresh
