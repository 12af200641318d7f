"""Log records that name the tenant they came from.

A :class:`TenantFilter` sets ``record.tenant`` to the name of the tenant
whose request is being handled (``environ["flask_dispatch.tenant"]``), or
whose factory failed the host app's request, else ``"-"``, so a format can
say ``%(tenant)s``. Put one on your own handler to name the tenant in every
record it writes, whichever logger the record came from.

Dispatch also puts one on the logger of every Flask tenant app it creates
(:func:`name_tenant_in_logs`). Flask's default handler has a fixed format
with no ``%(tenant)s``, so while that logger writes through it, the filter
starts each message of a tenant's request with ``[tenant acme]``: Flask's own
``Exception on /notes [POST]`` line names the tenant that failed. Remove
Flask's default handler (as Flask's logging docs show) and messages are left
as they are.
"""

from __future__ import annotations

import logging
import threading
import typing as t

from flask import has_request_context, request
from flask.logging import default_handler

from .errors import TenantError
from .links import tenant_name
from .middleware import ERROR_KEY

if t.TYPE_CHECKING:
    from flask import Flask

#: What ``record.tenant`` is outside a tenant's request.
NO_TENANT = "-"


def current_tenant() -> str:
    """The name of the tenant whose request is being handled, or whose
    creation failed the host app's request; else ``"-"``."""
    name = tenant_name()
    if name is None and has_request_context():
        error = request.environ.get(ERROR_KEY)
        name = error.name if isinstance(error, TenantError) else None
    return name or NO_TENANT


class TenantFilter(logging.Filter):
    """Set ``record.tenant`` to the tenant whose request is being handled
    (or whose factory failed the host app's request), else ``"-"``; lets
    every record through.

    On a handler it covers every record that handler writes:

    .. code-block:: python

        handler = logging.StreamHandler()
        handler.addFilter(TenantFilter())
        handler.setFormatter(logging.Formatter("%(tenant)s %(levelname)s %(message)s"))

    .. versionadded:: 0.2
    """

    def filter(self, record: logging.LogRecord) -> bool:
        record.tenant = current_tenant()
        return True


class _TenantAppFilter(TenantFilter):
    """The filter on a tenant app's logger: also names the tenant in the
    message while the logger writes through Flask's default handler."""

    def __init__(self, logger: logging.Logger) -> None:
        super().__init__()
        self.logger = logger

    def filter(self, record: logging.LogRecord) -> bool:
        tenant = record.tenant = current_tenant()
        # Looked up per record: Flask adds its handler at the first use of
        # app.logger, and users remove it when they set up their own.
        if tenant != NO_TENANT and default_handler in self.logger.handlers:
            prefix = f"[tenant {tenant}] "
            if record.args:  # the message is a %-format: keep it one
                prefix = prefix.replace("%", "%%")
            record.msg = prefix + str(record.msg)
        return True


_install_lock = threading.Lock()


def name_tenant_in_logs(tenant_app: Flask) -> None:
    """Put the tenant filter on a Flask tenant app's logger, once per logger:
    tenant apps built from one module share their logger.

    :param tenant_app: a :class:`~flask.Flask` app.

    .. versionadded:: 0.2
    """
    # The logger app.logger returns, without making Flask add its default
    # handler now rather than at the app's first log record.
    logger = logging.getLogger(tenant_app.name)
    with _install_lock:  # tenants are created on several threads at once
        if not any(isinstance(f, _TenantAppFilter) for f in logger.filters):
            logger.addFilter(_TenantAppFilter(logger))
