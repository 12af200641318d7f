"""The :class:`Dispatch` extension: registration, configuration and state.

``Dispatch`` holds what users register (the subdomain and path factories and
the static mounts) and can serve several apps. Everything that belongs to
one app (its checked settings and its tenant registry) lives in a
:class:`DispatchState` at ``app.extensions["dispatch"]``.
"""

from __future__ import annotations

import typing as t
import weakref

from flask import Flask, current_app
from werkzeug.exceptions import HTTPException

from . import config
from .config import DispatchConfigError, DispatchSettings
from .middleware import DispatchMiddleware, raise_dispatch_error
from .paths import normalize_mount_prefix
from .registry import EvictReason, Factory, TenantRegistry
from .sessions import scope_session  # sessions hook (merge)
from .signals import tenant_created, tenant_evicted

if t.TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication

F = t.TypeVar("F", bound=Factory)

_EXTENSION_KEY = "dispatch"


class DispatchState:
    """What dispatch keeps for one host app, at ``app.extensions["dispatch"]``.

    :param extension: the :class:`Dispatch` that was registered.
    :param settings: the app's checked ``DISPATCH_*`` settings.
    :param registry: the app's tenant apps.

    .. versionadded:: 0.1
    """

    #: The middleware whose ``__call__`` is the app's ``wsgi_app``.
    middleware: DispatchMiddleware

    def __init__(
        self, extension: Dispatch, settings: DispatchSettings, registry: TenantRegistry
    ) -> None:
        self.extension = extension
        self.settings = settings
        self.registry = registry


class Dispatch:
    """Dispatch requests to tenant apps by subdomain or by first path
    segment, and to static mounts by URL prefix.

    .. code-block:: python

        app = Flask(__name__)
        app.config["DISPATCH_DOMAIN"] = "example.com"
        dispatch = Dispatch(app)

        @dispatch.subdomain
        def tenant_for_subdomain(name):
            return create_tenant_app(name) if tenant_exists(name) else None

    :param app: the host app; or call :meth:`init_app` later.

    .. versionadded:: 0.1
    """

    def __init__(self, app: Flask | None = None) -> None:
        #: The factory registered with :meth:`subdomain`, or ``None``.
        self.subdomain_factory: Factory | None = None
        #: The factory registered with :meth:`path`, or ``None``.
        self.path_factory: Factory | None = None
        #: Static mounts: normalised prefix to WSGI app. Replaced, never
        #: changed in place, so requests read it without a lock.
        self.mounts: dict[str, WSGIApplication] = {}
        # Apps this instance was registered on, to check factories added later.
        self._apps: weakref.WeakSet[Flask] = weakref.WeakSet()
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        """Read the ``DISPATCH_*`` config, create the app's registry and put
        dispatch in front of ``app.wsgi_app``.

        Middleware applied to ``app.wsgi_app`` afterwards (e.g. ``ProxyFix``)
        runs before dispatch.

        :param app: the host app.
        :raises RuntimeError: if dispatch is already registered on ``app``.
        :raises DispatchConfigError: if a setting is invalid, or a subdomain
            factory is registered and no domain is configured.
        """
        if _EXTENSION_KEY in app.extensions:
            raise RuntimeError(
                "A 'Dispatch' instance has already been registered on this Flask app."
                " Import and use that instance instead."
            )
        config.set_defaults(app.config)
        settings = DispatchSettings.from_config(app.config)
        if self.subdomain_factory is not None and not settings.domains:
            raise _no_domain_error()

        # sessions hook (merge): DISPATCH_SCOPE_SESSIONS, read once.
        scope_sessions = app.config.setdefault("DISPATCH_SCOPE_SESSIONS", True)

        def invoke(factory: Factory, name: str) -> WSGIApplication | None:
            with app.app_context():
                try:
                    tenant_app = factory(name)
                except Exception as e:
                    e.add_note(
                        f"flask_dispatch: raised by tenant factory"
                        f" {getattr(factory, '__qualname__', factory)!r}"
                        f" for tenant {name!r}"
                    )
                    raise
            if scope_sessions and isinstance(tenant_app, Flask):  # sessions hook (merge)
                scope_session(tenant_app, name, app)
            return tenant_app

        def on_created(name: str, tenant_app: WSGIApplication) -> None:
            tenant_created.send(app, name=name, tenant_app=tenant_app)

        def on_evicted(name: str, tenant_app: WSGIApplication, reason: EvictReason) -> None:
            tenant_evicted.send(app, name=name, tenant_app=tenant_app, reason=reason)

        registry = TenantRegistry(
            max_instances=settings.max_instances,
            idle_timeout=settings.idle_timeout,
            miss_ttl=settings.miss_ttl,
            max_misses=settings.max_misses,
            create_timeout=settings.create_timeout,
            invoke=invoke,
            is_miss=_is_miss,
            on_created=on_created,
            on_evicted=on_evicted,
            has_wsgi_app=_has_wsgi_app,
        )
        state = DispatchState(self, settings, registry)
        app.extensions[_EXTENSION_KEY] = state
        state.middleware = DispatchMiddleware(app, app.wsgi_app, self, state)
        # Its bound method, like Flask's own wsgi_app: CPython calls that
        # about 70 ns faster than an instance with __call__.
        app.wsgi_app = state.middleware.__call__  # type: ignore[method-assign]
        app.url_value_preprocessors.setdefault(None, []).insert(0, raise_dispatch_error)
        self._apps.add(app)

    def subdomain(self, factory: F) -> F:
        """Register the factory for ``<name>.<DISPATCH_DOMAIN>`` hosts.

        It is called with the tenant name, inside the host app's app context,
        the first time the tenant is asked for, and returns a WSGI app or
        ``None`` for "no such tenant" (a 404). Returns ``factory`` unchanged.

        :param factory: ``(name: str) -> WSGI app | None``.
        :raises DispatchConfigError: if an app this is registered on has no
            :data:`DISPATCH_DOMAIN` (nor ``SERVER_NAME``).
        """
        for app in self._apps:
            if not _state(app).settings.domains:
                raise _no_domain_error()
        self.subdomain_factory = factory
        self._forget_tenants()
        return factory

    def path(self, factory: F) -> F:
        """Register the factory for ``/<name>/...`` paths.

        It is called like the :meth:`subdomain` factory. A tenant app gets
        ``/<name>`` added to ``SCRIPT_NAME``; when the factory returns
        ``None`` the host app handles the request unchanged. Returns
        ``factory`` unchanged.

        :param factory: ``(name: str) -> WSGI app | None``.
        """
        self.path_factory = factory
        self._forget_tenants()
        return factory

    def mount(self, prefix: str, wsgi_app: WSGIApplication) -> None:
        """Serve every URL under ``prefix`` with ``wsgi_app``, on whole path
        segments, on the host app's side (not on tenant subdomains).

        :param prefix: e.g. ``"/backend"``.
        :param wsgi_app: any WSGI app.
        :raises ValueError: for a malformed or already mounted prefix.
        :raises TypeError: if ``wsgi_app`` is not callable.
        """
        prefix = normalize_mount_prefix(prefix)
        if not callable(wsgi_app):
            raise TypeError(f"Cannot mount {wsgi_app!r}: it is not a WSGI app.")
        if prefix in self.mounts:
            raise ValueError(f"Something is already mounted at {prefix!r}.")
        self.mounts = {**self.mounts, prefix: wsgi_app}
        self._forget_tenants()

    def _forget_tenants(self) -> None:
        """Drop the memoised tenants of every app this is registered on: a
        new mount or factory may send their hosts and paths elsewhere."""
        for app in self._apps:
            _state(app).middleware.forget_tenants()

    @property
    def registry(self) -> TenantRegistry:
        """The tenant registry of the current app."""
        return _state(current_app).registry

    def evict(self, name: str) -> int:
        """Drop every instance of tenant ``name`` in the current app and any
        remembered "no such tenant" answer for it, so the next request builds
        it afresh (call it after a signup or a settings change).

        :param name: the tenant's name.
        :return: how many instances were dropped.
        """
        return self.registry.evict(name)


def _state(app: Flask) -> DispatchState:
    try:
        return t.cast(DispatchState, app.extensions[_EXTENSION_KEY])
    except KeyError:
        raise RuntimeError(
            "The current Flask app is not registered with this 'Dispatch'"
            " instance. Did you forget to call 'init_app', or create"
            " multiple 'Dispatch' instances?"
        ) from None


def _is_miss(result: object) -> bool:
    """A factory's ``None``, or an HTTP error it returned instead of an app,
    means "no such tenant": remembered briefly, never held as an instance."""
    return result is None or isinstance(result, HTTPException)


def _has_wsgi_app(tenant_app: WSGIApplication) -> bool:
    """A Flask app whose class keeps Flask's ``__call__``, which does nothing
    but call ``self.wsgi_app``: dispatch may call ``wsgi_app`` itself. It
    looks ``wsgi_app`` up on each request, so wrapping it later still works."""
    return isinstance(tenant_app, Flask) and type(tenant_app).__call__ is Flask.__call__


def _no_domain_error() -> DispatchConfigError:
    return DispatchConfigError(
        f"A subdomain factory needs {config.DOMAIN} (or SERVER_NAME) to be set,"
        " e.g. app.config['DISPATCH_DOMAIN'] = 'example.com'."
    )
