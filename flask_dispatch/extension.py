"""The :class:`Dispatch` extension: registration, configuration and state.

``Dispatch`` holds what users register (the subdomain and path factories and
the static mounts) and can serve several apps. Everything that belongs to
one app (its checked settings, its router and its tenant registry) lives in a
:class:`DispatchState` at ``app.extensions["dispatch"]``. This module is also
where dispatch meets Flask: app contexts for factories and signals, and the
hooks that raise dispatch's own errors inside the host app.
"""

from __future__ import annotations

import functools
import inspect
import itertools
import logging
import os
import threading
import types
import typing as t
import weakref
from contextlib import contextmanager, nullcontext
from contextvars import ContextVar

from flask import Flask, current_app, has_app_context, has_request_context, request, request_started
from werkzeug.exceptions import HTTPException, ServiceUnavailable
from werkzeug.middleware.proxy_fix import ProxyFix

from . import config, links
from .cli import dispatch_cli
from .config import DispatchConfigError, DispatchSettings
from .domains import DomainAnswers, Resolver
from .errors import CREATED_RECEIVER_NOTE, read_once
from .forks import renew_in_child
from .logs import name_tenant_in_logs
from .middleware import ERROR_KEY, STATE_KEY, DispatchMiddleware
from .paths import normalize_mount_prefix, rule_first_segments
from .registry import Answer, EvictReason, Factory, TenantRegistry
from .routing import Router, Rules, read_host
from .sessions import scope_session
from .signals import tenant_created, tenant_evicted
from .tenant_apps import flask_app_in, middleware_layers

if t.TYPE_CHECKING:
    from collections.abc import Iterator

    from _typeshed.wsgi import WSGIApplication
    from flask.wrappers import Response

    from .links import By
    from .redis_bus import EvictionBus

_log = logging.getLogger("flask_dispatch")

#: While it holds a list, what ``tenant_evicted`` receivers (and the app
#: contexts they run in) raise in this context is added to it, besides
#: being logged (the pytest plugin makes a test error with it).
receiver_failures: ContextVar[list[BaseException] | None] = ContextVar(
    "receiver_failures", default=None
)
#: Called with ``(host_app, name)`` once ``tenant_created`` was sent for a
#: new tenant (by a request or a command), in this process: the pytest
#: plugin learns which tenants a fixture's teardown built without a
#: receiver of its own, which would change the order blinker calls the
#: others in.
created_watchers: list[t.Callable[[Flask, str], None]] = []

#: How long the first request of a forked child that holds tenants from
#: before the fork waits for the evictions published since the app was made
#: (seconds): long enough for Redis to answer, short enough when it is down.
FORKED_CATCH_UP = 1.0

F = t.TypeVar("F", bound=Factory)
N = t.TypeVar("N", bound=t.Callable[[], t.Iterable[str]])
R = t.TypeVar("R", bound=Resolver)

_EXTENSION_KEY = "dispatch"


class DispatchState:
    """What dispatch keeps for one host app, at ``app.extensions["dispatch"]``.

    :param extension: the :class:`Dispatch` that was registered.
    :param app: the host app.
    :param settings: the app's checked ``DISPATCH_*`` settings.
    :param redis: a Redis client to carry evictions, in place of
        :data:`DISPATCH_REDIS_URL`.

    .. versionadded:: 0.1
    """

    def __init__(
        self,
        extension: Dispatch,
        app: Flask,
        settings: DispatchSettings,
        redis: t.Any = None,
    ) -> None:
        self.extension = extension
        #: The app's checked ``DISPATCH_*`` settings.
        self.settings = settings
        self.config = app.config
        self.url_map = app.url_map
        #: The middleware whose ``__call__`` runs before the host app's.
        self.middleware: DispatchMiddleware
        #: The remembered answers of the custom domain resolver, if any.
        self.domains: DomainAnswers | None = None
        self._app_context = app.app_context
        self._lock = threading.Lock()
        self._housekeeper_pid = -1
        # Not the router's lock: a request thread may hold that while it waits
        # for the listener, whose evictions may build a tenant.
        self._housekeeping_lock = threading.Lock()
        # A forked child holding tenants from before the fork (see _after_fork).
        self._forked_with_tenants = False
        #: The :class:`~flask_dispatch.redis_bus.EvictionBus` that carries
        #: evictions to the other processes, or ``None`` without Redis.
        self.bus = self._bus(redis if redis is not None else settings.redis_url)
        # How a tenant is built and announced, by the registry or a command.
        self._make_tenant = _invoker(app, self)
        self._send_created = functools.partial(_send_created, app)
        self._send_evicted = functools.partial(_send_evicted, app)
        #: The app's :class:`TenantRegistry`.
        self.registry = self._registry(app)
        renew_in_child(self._after_fork)

    def _after_fork(self) -> None:
        """In a forked child, the router is built again at its first
        request, which starts its background work if it holds tenants (a
        ``--preload`` warm-up). A child that serves no request (one that a
        tenant's code forked, say) sweeps, listens and announces nothing:
        its copies of the tenants are the parent's. The lock may have been
        held by a thread that did not survive the fork."""
        self._lock = threading.Lock()
        self._housekeeping_lock = threading.Lock()
        self.middleware.router = None
        registry = self.registry
        self._forked_with_tenants = bool(len(registry) or registry.stats().misses)

    def _registry(self, app: Flask) -> TenantRegistry:
        settings = self.settings
        return TenantRegistry(
            max_instances=settings.max_instances,
            idle_timeout=settings.idle_timeout,
            max_age=settings.max_age,
            miss_ttl=settings.miss_ttl,
            max_misses=settings.max_misses,
            create_timeout=settings.create_timeout,
            max_waiting=settings.max_waiting,
            max_creating=settings.max_creating,
            invoke=self._invoke,
            is_miss=_is_miss,
            on_created=self._send_created,
            on_evicted=self._send_evicted,
            broadcast=_ignore if self.bus is None else self.bus.publish,
        )

    def _bus(self, redis: t.Any) -> EvictionBus | None:
        if redis is None:
            return None
        try:
            from .redis_bus import EvictionBus  # redis is an optional dependency
        except ImportError as e:
            raise DispatchConfigError(
                f"{config.REDIS_URL} needs redis-py: pip install redis"
            ) from e

        # The bus's threads hold the bus, not this state: an app dropped
        # (one per test, say) is freed, and its bus closed, off the thread
        # that collected it (closing waits for the listener's read).
        ref = weakref.ref(self)
        try:
            bus = EvictionBus(
                redis,
                self.settings.redis_prefix,
                lambda name: _evicted_elsewhere(ref, name),
                logger=_log,
            )
        except ValueError as e:  # redis-py's, for a URL or client it cannot use
            where = config.REDIS_URL if isinstance(redis, str) else "Dispatch(redis=...)"
            raise DispatchConfigError(f"{where}: {e}") from e
        # Not at exit: no thread may start then, and the process is ending.
        weakref.finalize(self, _close_in_background, bus).atexit = False
        return bus

    def evict(self, name: str | None, *, everywhere: bool = True) -> int:
        """Drop tenant ``name`` (``None``: every tenant) with its remembered
        misses and custom domains; see :meth:`Dispatch.evict`."""
        if self.domains is not None:
            self.domains.forget(name)
        if name is None:
            return self.registry.clear(everywhere=everywhere)
        return self.registry.evict(name, everywhere=everywhere)

    def reroute(self) -> None:
        """Build the router again at the next request: a factory or mount
        was registered. Under the lock, a router being built is published
        first and dropped here, rather than missing the registration."""
        with self._lock:
            self.middleware.router = None

    @property
    def fallback_host(self) -> str:
        """The host dispatch puts in place of a malformed or untrusted one:
        ``SERVER_NAME``, else the main dispatch domain, else another,
        else a host of ``TRUSTED_HOSTS``, the first that ``TRUSTED_HOSTS``
        accepts (or the host app could build no URL on its error page), else
        ``"localhost"``."""
        trusted = self._trusted_hosts()
        for host in (
            self.config.get("SERVER_NAME"),
            self.settings.main_domain,
            *self.settings.domains,
            *(pattern.lstrip(".") for pattern in trusted or ()),
        ):
            if host and read_host(host, trusted)[0] is not None:
                return t.cast(str, host)
        return "localhost"

    def rejects_host(self, raw_host: str) -> bool:
        """Whether the router answers ``raw_host`` with a 400: malformed, or
        not in ``TRUSTED_HOSTS``."""
        return read_host(raw_host, self._trusted_hosts())[0] is None

    def _trusted_hosts(self) -> tuple[str, ...] | None:
        return config.trusted_hosts(self.config.get("TRUSTED_HOSTS"))

    def build_router(self) -> Router:
        """Build the router from what is registered and from the host app's
        URL rules, and keep it (the middleware calls this at the first
        request).
        """
        forked_with_tenants = False
        with self._lock:
            if self.middleware.router is None:
                router = self.current_router()
                # Replaced in one step: requests still on the old router
                # never find no answers at all.
                self.domains = self._domain_answers(router)
                forked_with_tenants, self._forked_with_tenants = self._forked_with_tenants, False
                if forked_with_tenants and self.bus is not None:
                    # Before any request sees the router, so before any is
                    # served by a tenant evicted since the app was made.
                    self.bus.wait_caught_up(FORKED_CATCH_UP)
                # Published last: requests that see it see its domains too.
                self.middleware.router = router
            router = self.middleware.router
        if forked_with_tenants:  # tenants held since before a fork
            self.start_background()
        return router

    def _domain_answers(self, router: Router) -> DomainAnswers | None:
        resolver = self.extension.domain_resolver
        if resolver is None:
            return None
        return DomainAnswers(
            lambda host: self._in_context(resolver, host),
            # A custom domain names a subdomain tenant.
            lambda name: router.is_tenant_name(name, "subdomain"),
            self.settings.miss_ttl,
            self.settings.max_misses,
            wait=self.settings.create_timeout,
        )

    def _in_context(self, resolver: Resolver, host: str) -> str | None:
        # Its answers are remembered, so evictions must reach this process.
        self.start_background()
        with self._app_context():
            return resolver(host)

    def current_router(self) -> Router:
        """The router as things stand, without keeping it.

        :raises DispatchConfigError: a custom domain resolver without a
            subdomain factory to build the tenants it names.
        """
        if self.middleware.router is not None:
            return self.middleware.router
        rules = list(self.url_map.iter_rules())
        settings = self.settings
        extension = self.extension
        if extension.domain_resolver is not None and extension.subdomain_factory is None:
            raise DispatchConfigError(
                "@dispatch.domain needs a subdomain factory: a custom domain names a"
                " subdomain tenant, built by the @dispatch.subdomain factory."
            )
        return Router(
            Rules(
                domains=settings.domains,
                reserved=settings.reserved,
                name_pattern=settings.name_pattern,
                mounts=dict(extension.mounts),
                own_segments=rule_first_segments(rule.rule for rule in rules),
                own_subdomains=frozenset(
                    r.subdomain for r in rules if r.subdomain and "<" not in r.subdomain
                ),
                subdomain_factory=extension.subdomain_factory,
                path_factory=extension.path_factory,
                custom_domains=extension.domain_resolver is not None,
                trusted_hosts=self._trusted_hosts(),
            ),
            # Room for every held tenant under two spellings of its host.
            memo_size=max(1024, 2 * settings.max_instances),
            slots=self.registry.slot,
        )

    def _invoke(self, factory: Factory, name: str) -> Answer:
        """Build a tenant for the registry: in a process that serves."""
        self.start_background()
        return self._make_tenant(factory, name)

    @contextmanager
    def build_once(self, name: str, factory: Factory) -> Iterator[Answer]:
        """Build tenant ``name`` as a request would (in the host app's
        context, its session scoped, ``tenant_created`` sent), but on this
        thread, with no timeout, without holding it and without starting
        any background work: for a command. When the ``with`` block ends,
        the app is let go as an eviction is, with ``tenant_evicted``
        (``reason="evict"``), so that its receivers release what it holds.

        :param name: the tenant's name.
        :param factory: the factory of its kind.
        :return: a context manager giving the app, or the factory's "no
            such tenant" answer.
        :raises Exception: what the factory raised.

        .. versionadded:: 0.2
        """
        answer = self._make_tenant(factory, name)
        if _is_miss(answer):
            yield answer
            return
        try:  # a created receiver that raises may follow others that ran
            self._send_created(name, answer)
            yield answer
        finally:
            self._send_evicted(name, answer, "evict")

    def start_background(self) -> None:
        """Start this process's background work: the Redis listener, and the
        thread that drops idle and aged tenants without waiting for traffic.
        Called at each factory call and custom domain resolver call, and at
        the first request of a forked child that holds tenants, so both run
        in the processes that serve and hold tenants or domain answers (a
        reloader parent never does)."""
        if self.bus is not None:
            self.bus.ensure_started()
        settings = self.settings
        if (settings.idle_timeout is None and settings.max_age is None) or (
            self._housekeeper_pid == os.getpid()
        ):
            return
        with self._housekeeping_lock:
            if self._housekeeper_pid != os.getpid():
                self._housekeeper_pid = os.getpid()
                bounds = [b for b in (settings.idle_timeout, settings.max_age) if b is not None]
                # Within about a second, but no busy loop for a tiny bound:
                # each sweep takes the registry's lock.
                period = min(1.0, max(0.05, min(bounds) / 2))
                ref = weakref.ref(self.registry)
                name = "flask_dispatch housekeeping"
                threading.Thread(
                    target=_housekeep, args=(ref, period), name=name, daemon=True
                ).start()


def _evicted_elsewhere(ref: weakref.ref[DispatchState], name: str | None) -> None:
    """Apply an eviction another process published."""
    state = ref()
    if state is not None:
        state.evict(name, everywhere=False)


def _close_in_background(bus: EvictionBus) -> None:
    threading.Thread(target=bus.close, name="flask_dispatch-close", daemon=True).start()


def _housekeep(ref: weakref.ref[TenantRegistry], period: float) -> None:
    stop = threading.Event()
    while not stop.wait(period):
        registry = ref()
        if registry is None:  # its app is gone
            return
        try:
            registry.expire()
        except Exception:  # a receiver's failure is logged; keep sweeping
            _log.exception("Expiring idle tenants failed.")
        del registry


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
    :param redis: a Redis client to carry evictions to every process, in
        place of :data:`DISPATCH_REDIS_URL` (see :doc:`/workers`).

    .. versionadded:: 0.1
    .. versionchanged:: 0.2
        The ``redis`` parameter.
    """

    def __init__(self, app: Flask | None = None, *, redis: t.Any = None) -> None:
        #: The factory registered with :meth:`subdomain`, or ``None``.
        self.subdomain_factory: Factory | None = None
        #: The factory registered with :meth:`path`, or ``None``.
        self.path_factory: Factory | None = None
        #: The resolver registered with :meth:`domain`, or ``None``.
        self.domain_resolver: Resolver | None = None
        #: The generator of every tenant name registered with
        #: :meth:`tenant_names`, or ``None``.
        self.tenant_names_function: t.Callable[[], t.Iterable[str]] | None = None
        self._mounts: dict[str, WSGIApplication] = {}
        self._apps: weakref.WeakSet[Flask] = weakref.WeakSet()
        self._redis = redis
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask, *, redis: t.Any = None) -> None:
        """Read the ``DISPATCH_*`` config, create the app's registry and put
        dispatch in front of ``app.wsgi_app``.

        If ``app.wsgi_app`` is a :class:`~werkzeug.middleware.proxy_fix.ProxyFix`
        already, dispatch goes inside it, so it routes by the forwarded host
        whichever order they were applied in.

        :param app: the host app.
        :param redis: as for :class:`Dispatch`.
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
        state = DispatchState(self, app, settings, redis if redis is not None else self._redis)
        app.extensions[_EXTENSION_KEY] = state
        state.middleware = _install(app, state)
        request_started.connect(_route_dispatch_error, app)
        app.after_request(_keep_retry_after)
        app.cli.add_command(dispatch_cli)
        self._apps.add(app)

    def subdomain(self, factory: F) -> F:
        """Register the factory for ``<name>.<DISPATCH_DOMAIN>`` hosts.

        It is called with the tenant name, inside the host app's app context,
        the first time the tenant is asked for, and returns a WSGI app, or
        ``None`` for "no such tenant" (a 404). Returns ``factory`` unchanged.

        :param factory: ``(name: str) -> WSGI app | None``.
        :raises DispatchConfigError: if an app this is registered on has no
            :data:`DISPATCH_DOMAIN` (nor ``SERVER_NAME``).
        """
        for app in self._apps:
            if not _state(app).settings.domains:
                raise _no_domain_error()
        self.subdomain_factory = factory
        self._reroute()
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
        self._reroute()
        return factory

    def mount(self, prefix: str, wsgi_app: WSGIApplication) -> None:
        """Serve every URL under ``prefix`` with ``wsgi_app``, on whole path
        segments, on the host app's side (not on tenant subdomains).

        :param prefix: e.g. ``"/backend"``.
        :param wsgi_app: any WSGI app.
        :raises ValueError: for a malformed, non-ASCII or already mounted
            prefix.
        :raises TypeError: if ``wsgi_app`` cannot be called as a WSGI app.
        """
        prefix = normalize_mount_prefix(prefix)
        try:
            wsgi = _callable_as_wsgi(wsgi_app)
        except Exception:  # a proxy bound per request, say: it cannot tell yet
            wsgi = True
        if not wsgi:
            raise TypeError(f"Cannot mount {wsgi_app!r}: it is not a WSGI app.")
        if prefix in self._mounts:
            # Called in create_app, say: mounts are the Dispatch object's.
            raise ValueError(
                f"Something is already mounted at {prefix!r}. Mounts belong to the"
                " Dispatch object and serve every app it is initialised on: mount"
                " once, at import time, where the factories are registered."
            )
        self._mounts = {**self._mounts, prefix: wsgi_app}
        self._reroute()

    def domain(self, resolver: R) -> R:
        """Register the resolver of custom domains: ``(host) -> tenant name
        or None``, called with a canonical host outside
        :data:`DISPATCH_DOMAIN` (``acme.com``), inside the host app's app
        context. A name it gives is served by the subdomain factory's
        instance of that tenant. Its answers are remembered like misses
        (:data:`DISPATCH_MISS_TTL`, :data:`DISPATCH_MAX_MISSES`), and
        :meth:`evict` forgets a tenant's. Returns ``resolver`` unchanged.

        :param resolver: ``(host: str) -> str | None``.

        .. versionadded:: 0.2
        """
        self.domain_resolver = resolver
        self._reroute()
        return resolver

    def tenant_names(self, function: N) -> N:
        """Register the function that yields the name of every tenant, for
        commands that act on all of them (``flask dispatch run --all``).
        Returns ``function`` unchanged.

        :param function: ``() -> iterable of names``, called in the host
            app's context.

        .. versionadded:: 0.2
        """
        self.tenant_names_function = function
        return function

    @property
    def mounts(self) -> t.Mapping[str, WSGIApplication]:
        """The static mounts, normalised prefix to WSGI app (read-only)."""
        return types.MappingProxyType(self._mounts)

    def _current_state(self) -> DispatchState:
        """The current app's state, if this instance is the one registered
        on it; else, in a tenant's request, the state of the host app that
        handed it on."""
        handed_on_by = request.environ.get(STATE_KEY) if has_request_context() else None
        for state in (current_app.extensions.get(_EXTENSION_KEY), handed_on_by):
            if isinstance(state, DispatchState) and state.extension is self:
                return state
        if _EXTENSION_KEY not in current_app.extensions:
            raise RuntimeError(
                "The current Flask app is not registered with this 'Dispatch' instance,"
                " which did not hand the current request to a tenant either (a mounted"
                " app, or a tenant outside a request). Call it in the host app's context"
                " ('with host_app.app_context():'), or did you forget to call 'init_app'?"
            )
        raise RuntimeError(
            "The current Flask app is registered with another 'Dispatch' instance."
            " Use that one, or call this one inside its own app's context."
        )

    def _reroute(self) -> None:
        """A new factory or mount changes where requests go: every app this
        is registered on builds its router again at its next request."""
        for app in self._apps:
            _state(app).reroute()

    @property
    def registry(self) -> TenantRegistry:
        """The tenant registry of the current app."""
        return self._current_state().registry

    def is_tenant_name(self, name: str, by: By | None = None) -> bool:
        """Whether ``name`` may be a tenant's name in the current app: it
        is ASCII, matches :data:`DISPATCH_NAME_PATTERN`, is not reserved, is
        not the subdomain of one of the host app's own URL rules, and is
        neither the first path segment of one of them nor of a mount; by
        subdomain, requests must be able to reach it (lowercase, labels of at
        most 63 characters, not another dispatch domain). Use it to check a
        name at signup.

        :param name: a candidate tenant name.
        :param by: ``"subdomain"`` or ``"path"``: the kind of tenant (first
            path segments do not shadow a subdomain tenant). By default, the
            kinds that have a factory registered: a name must suit both when
            both do.
        :raises ValueError: for another ``by``.

        .. versionadded:: 0.2
        """
        if by not in (None, "subdomain", "path"):
            raise ValueError(f"by must be 'subdomain' or 'path', not {by!r}.")
        return self._current_state().current_router().is_tenant_name(name, by)

    def evict(self, name: str) -> int:
        """Drop every instance of tenant ``name`` and any remembered "no such
        tenant" answer for it, so the next request builds it afresh (call it
        after a signup or a settings change). With Redis configured, every
        other process sharing it does the same (see :doc:`/workers`).

        It works wherever it is called: in the host app's context it evicts
        from that app; anywhere else (a tenant's own request, a thread with no
        context) from every app this is registered on. Requests already
        inside the evicted app finish normally.

        :param name: the tenant's name.
        :return: how many instances were dropped in this process.
        """
        return sum(state.evict(name) for state in self._states())

    def tenant_url(
        self,
        name: str,
        path: str = "/",
        *,
        by: By | None = None,
        _external: bool = True,
    ) -> str:
        """The URL of a page of tenant ``name``, for links from the host app
        or from another tenant's pages (see :doc:`/domains`):
        ``https://acme.example.com/notes`` by subdomain, or
        ``https://example.com/acme/notes`` by path. It has the scheme and port
        of the current request (outside one: ``SERVER_NAME`` and
        ``PREFERRED_URL_SCHEME``) and the dispatch domain it came in on: on
        another host, and outside a request without ``SERVER_NAME``, the
        first domain of :data:`DISPATCH_DOMAIN`. Only path tenants of a site
        with no dispatch domain get the request's host.

        :param name: the tenant's name.
        :param path: the path inside the tenant.
        :param by: ``"subdomain"`` or ``"path"``; by default the subdomain
            when a subdomain factory is registered.
        :param _external: ``False`` gives a path-only URL (by path only).
        :raises ValueError: ``name`` is not a tenant name, or no factory of
            that kind is registered.

        .. versionadded:: 0.2
        """
        return links.tenant_url(self._current_state(), name, path, by, _external)

    def url_for(self, name: str, endpoint: str, *, by: By | None = None, **values: t.Any) -> str:
        """Build a URL through tenant ``name``'s own URL map, like
        :func:`flask.url_for` inside it; the tenant is created if need be.

        :param name: the tenant's name.
        :param endpoint: an endpoint of the tenant app.
        :param by: as for :meth:`tenant_url`.
        :param values: the rule's arguments, and query arguments.
        :raises LookupError: the tenant is not a Flask app, or not found.

        .. versionadded:: 0.2
        """
        return links.tenant_url_for(self._current_state(), name, endpoint, by, values)

    def _states(self) -> list[DispatchState]:
        if has_app_context():
            state = current_app.extensions.get(_EXTENSION_KEY)
            if isinstance(state, DispatchState) and state.extension is self:
                return [state]
        return [_state(app) for app in self._apps]


def _install(app: Flask, state: DispatchState) -> DispatchMiddleware:
    """Put dispatch in front of ``app.wsgi_app``, or inside the ProxyFix
    already around it, so that it sees the forwarded host."""
    proxy = _innermost_proxy_fix(app)
    if proxy is None:
        app.wsgi_app = middleware = DispatchMiddleware(app.wsgi_app, state)  # type: ignore[method-assign]
        return middleware
    proxy.app = middleware = DispatchMiddleware(proxy.app, state)
    return middleware


def _innermost_proxy_fix(app: Flask) -> ProxyFix | None:
    """The ProxyFix that dispatch goes inside: the innermost of those that
    wrap one another outermost, whatever they wrap; else, under other
    middleware, the innermost of the layers that end at the app's own
    ``wsgi_app`` (the ``app`` of a DispatcherMiddleware, say, may be another
    app, served beside it)."""
    layers = list(middleware_layers(app.wsgi_app))
    outermost = list(itertools.takewhile(lambda layer: isinstance(layer, ProxyFix), layers))
    if outermost:
        layers = outermost
    elif getattr(layers[-1], "__self__", None) is not app:
        layers = []
    proxies = [layer for layer in layers if isinstance(layer, ProxyFix)]
    return proxies[-1] if proxies else None


def _state(app: Flask) -> DispatchState:
    try:
        return t.cast(DispatchState, app.extensions[_EXTENSION_KEY])
    except KeyError:
        raise RuntimeError(
            "The current Flask app is not registered with this 'Dispatch'"
            " instance. Did you forget to call 'init_app', or create"
            " multiple 'Dispatch' instances?"
        ) from None


def _invoker(app: Flask, state: DispatchState) -> t.Callable[[Factory, str], Answer]:
    """Call a factory inside the host app's context. An ``HTTPException`` it
    raises is its answer, like one it returns; anything else that is not a
    WSGI app is an error."""

    def invoke(factory: Factory, name: str) -> Answer:
        with app.app_context():
            try:
                try:
                    answer: object = factory(name)
                except HTTPException as e:
                    answer = e
                if isinstance(answer, HTTPException):
                    # Without the factory's frames; its response's body is read
                    # here, in the context the factory ran in.
                    return read_once(answer)
            except Exception as e:
                e.add_note(f"flask_dispatch: raised by the factory of tenant {name!r}")
                raise
        if answer is not None:
            _adopt(app, state, factory, name, answer)
        return answer

    return invoke


def _callable_as_wsgi(answer: object) -> bool:
    """Whether ``answer`` can be called as ``app(environ, start_response)``
    (a function of no argument is not a WSGI app, and would be held), or
    its signature cannot be read (some callables written in C).

    :raises Exception: what reading its signature raised otherwise: a proxy
        that is bound to nothing here (``current_app``) raises ``RuntimeError``.
    """
    if not callable(answer):
        return False
    try:
        # Not the function a decorator wraps (Request.application's takes a request).
        signature = inspect.signature(answer, follow_wrapped=False)
    except (TypeError, ValueError):
        return True
    try:
        signature.bind(None, None)
    except TypeError:
        return False
    return True


def _adopt(app: Flask, state: DispatchState, factory: Factory, name: str, answer: object) -> None:
    """Check what a factory returned for tenant ``name``, and make a Flask
    tenant in it one: its session scoped, its log records named."""
    if not _callable_as_wsgi(answer):
        raise TypeError(
            f"The factory of tenant {name!r} returned {answer!r}, which is not a WSGI app."
        )
    # ==, as for registry keys: a bound method is made anew each time.
    by_path = factory == state.extension.path_factory
    flask_app = flask_app_in(answer)
    if flask_app is app:
        # The host app is no tenant. By path it gets the rest of the path;
        # by host it would get the same request again, without end.
        if factory == state.extension.subdomain_factory or not by_path:
            raise TypeError(
                f"The factory of tenant {name!r} returned the host app: requests for"
                " the tenant would come back to it without end."
            )
    elif flask_app is not None:
        if state.settings.scope_sessions:
            by: By = "path" if by_path else "subdomain"
            inside = not isinstance(answer, Flask)  # found inside middleware
            scope_session(flask_app, name, app, by=by, inside=inside)
        name_tenant_in_logs(flask_app)


def _ignore(name: str | None) -> None:
    pass


def _is_miss(answer: Answer) -> bool:
    """A factory's ``None`` or ``HTTPException`` means "no such tenant":
    remembered briefly, never held."""
    return answer is None or isinstance(answer, HTTPException)


def _send_created(app: Flask, name: str, tenant: WSGIApplication) -> None:
    with app.app_context():
        try:
            tenant_created.send(app, name=name, tenant_app=tenant)
        except Exception as e:
            e.add_note(f"{CREATED_RECEIVER_NOTE} {name!r}")
            raise
    for watch in created_watchers:
        watch(app, name)


def _send_evicted(app: Flask, name: str, tenant: WSGIApplication, reason: EvictReason) -> None:
    flask_app = flask_app_in(tenant)
    tenant_context = nullcontext() if flask_app is None else flask_app.app_context()
    try:
        with app.app_context(), tenant_context:
            # Each receiver on its own: one that fails must not keep the others
            # (the one that closes the tenant's database, say) from running. A
            # SystemExit too, as in TenantRegistry._notify.
            for receiver in tenant_evicted.receivers_for(app):
                try:
                    receiver(app, name=name, tenant_app=tenant, reason=reason)
                except (Exception, SystemExit) as e:
                    _log.exception("A tenant_evicted receiver failed for tenant %r.", name)
                    _keep_failure(e)
    except (Exception, SystemExit) as e:  # a teardown_appcontext: the registry logs it
        _keep_failure(e)
        raise


def _keep_failure(error: BaseException) -> None:
    failures = receiver_failures.get()
    if failures is not None:
        failures.append(error)


def _route_dispatch_error(sender: Flask, **extra: t.Any) -> None:
    """Put the error dispatch left in the environ where Flask keeps a routing
    error, before any request hook runs: the app's own hooks run with
    ``request.endpoint`` ``None`` and no blueprint's (whatever the host app
    matched the path to), and then Flask raises it like its own 404."""
    error = request.environ.get(ERROR_KEY)
    if error is not None:
        request.url_rule = None
        request.view_args = None
        request.routing_exception = error


def _keep_retry_after(response: Response) -> Response:
    """A 503 of dispatch's keeps its ``Retry-After`` through the site's own
    503 handler."""
    error = request.environ.get(ERROR_KEY)
    if (
        isinstance(error, ServiceUnavailable)
        and error.retry_after is not None
        and response.status_code == 503
        and "Retry-After" not in response.headers
    ):
        response.headers["Retry-After"] = str(error.retry_after)
    return response


def _no_domain_error() -> DispatchConfigError:
    return DispatchConfigError(
        f"A subdomain factory needs {config.DOMAIN} (or SERVER_NAME) to be set,"
        " e.g. app.config['DISPATCH_DOMAIN'] = 'example.com'."
    )
