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
    attributes, not in ``args``, which the copy leaves empty. Its response,
    if it has one, is copied too, with headers of its own: the host app's
    request handling may change them, and add close callbacks.
    """
    fresh = type(error).__new__(type(error))
    fresh.__dict__.update(error.__dict__)
    response = error.response
    if isinstance(response, Response):
        # A shallow copy, as a subclass's constructor may take other
        # arguments, made a Response anew: no close callbacks, own headers.
        own = fresh.response = shallow_copy(response)
        Response.__init__(own, response.get_data(), response.status, response.headers.copy())
    return fresh


def read_once(error: H) -> H:
    """A fresh copy of a factory's HTTP error, to remember: its response's
    body is read into memory (a file or generator can be sent only once)
    and the response closed, which runs its close callbacks, once.
    """
    response = error.response
    if isinstance(response, Response):
        body = b"".join(response.iter_encoded())
        response.close()
        response.set_data(body)
    return fresh_copy(error)
