"""The layers of WSGI middleware, and the Flask app inside them.

A factory may return a Flask app as it is, its ``wsgi_app``, or the app
wrapped in WSGI middleware, such as Werkzeug's ``ProxyFix`` behind a proxy.
Dispatch treats all three as a Flask tenant: the session scoping, the
tenant's name in its logs, ``tenant_evicted`` in its app context,
:meth:`.Dispatch.url_for` and the CLI find the app through
:func:`flask_app_in`. :func:`middleware_layers` walks the same layers
around the host app's ``wsgi_app``, for a ProxyFix already there.
"""

from __future__ import annotations

import inspect
import typing as t

from flask import Flask

if t.TYPE_CHECKING:
    from collections.abc import Iterator

#: Attributes that WSGI middleware keeps the app it wraps in: ``app`` in
#: Werkzeug's ``ProxyFix``, ``SharedDataMiddleware`` and
#: ``DispatcherMiddleware`` (its default app), ``application`` in WhiteNoise,
#: ``wsgi_app`` in dispatch's own middleware (the host app's ``wsgi_app``).
WRAPPED_APP_ATTRIBUTES = ("app", "application", "wsgi_app")

# Middleware stacks are a few layers deep; the bound also ends a cycle.
_MAX_LAYERS = 16


def flask_app_in(tenant: object) -> Flask | None:
    """The Flask app that ``tenant`` is, or is a bound method of (such as
    its ``wsgi_app``), or wraps in one of :data:`WRAPPED_APP_ATTRIBUTES`,
    layer by layer; ``None`` for any other WSGI app.

    :param tenant: what a tenant factory returned.

    .. versionadded:: 0.2
    """
    for _ in range(_MAX_LAYERS):
        if isinstance(tenant, Flask):
            return tenant
        tenant = tenant.__self__ if inspect.ismethod(tenant) else _wrapped(tenant)
        if tenant is None:
            return None
    return None


def middleware_layers(wsgi_app: object) -> Iterator[object]:
    """``wsgi_app``, then what it wraps in one of
    :data:`WRAPPED_APP_ATTRIBUTES`, layer by layer, down to the first that
    wraps nothing (such as a Flask app's own ``wsgi_app``) or is a Flask
    app: what is inside another app is that app's.

    :param wsgi_app: a WSGI app, maybe middleware.

    .. versionadded:: 0.2
    """
    layer: object | None = wsgi_app
    for _ in range(_MAX_LAYERS):
        if layer is None:
            return
        yield layer
        if isinstance(layer, Flask):
            return
        layer = _wrapped(layer)


def _wrapped(middleware: object) -> object | None:
    """The app ``middleware`` keeps, if it keeps one where middleware does."""
    for attribute in WRAPPED_APP_ATTRIBUTES:
        try:
            inner: object = getattr(middleware, attribute, None)
        except Exception:  # a property of a plain WSGI app: no middleware
            return None
        if inner is not None:
            return inner
    return None
