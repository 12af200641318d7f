"""The bounded, single-flight registry of tenant apps.

One :class:`TenantRegistry` per host app holds the tenant apps its factories
built. It is where correctness lives, so it has no Flask import:

- A hit takes one lock for O(1) bookkeeping (the LRU move); no lock that
  other requests need is held while a factory runs.
- Single flight: concurrent first requests for one name run its factory once
  and share the result or the failure; different names are built in parallel.
- Bounded: at most ``max_instances`` apps in exact least-recently-used order,
  optionally dropped after ``idle_timeout`` seconds unused; a factory's
  "no such tenant" answer is remembered for ``miss_ttl`` seconds, at most
  ``max_misses`` of them. A failed creation is not remembered at all.
- Observable: ``on_created`` and ``on_evicted`` callbacks, which the
  extension turns into signals.

An instance is keyed by its factory and name, so two factories may each hold
an app called ``acme`` and one factory used for both subdomains and paths holds
one. (The key is the name itself for the first factory seen and a prefixed
name for others: a string key hashes once and stays cached, which keeps the
hot path short.)
"""

from __future__ import annotations

import logging
import sys
import threading
import time
import typing as t
from collections import OrderedDict

from .errors import TenantCreationTimeout, TenantFactoryError, TenantRecursionError

if t.TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication

log = logging.getLogger("flask_dispatch")

#: A tenant factory: takes the tenant's name, returns a WSGI app or ``None``.
Factory = t.Callable[[str], t.Optional["WSGIApplication"]]
#: Why an instance left the registry.
EvictReason = t.Literal["capacity", "idle", "evict"]


class _Entry:
    __slots__ = ("app", "last_used", "name", "via_wsgi_app")

    def __init__(
        self, app: WSGIApplication, name: str, last_used: float, via_wsgi_app: bool
    ) -> None:
        self.app = app
        self.name = name
        self.last_used = last_used
        # Whether calling app.wsgi_app is calling app (the has_wsgi_app parameter).
        self.via_wsgi_app = via_wsgi_app


class _Flight:
    """One creation under way; waiters block on ``done``."""

    __slots__ = ("app", "done", "error", "name", "owner", "stale", "waiters")

    def __init__(self, owner: int, name: str) -> None:
        self.owner = owner
        self.name = name
        # Requests waiting on this creation (see TenantRegistry.waiting).
        self.waiters = 0
        self.done = threading.Event()
        self.app: WSGIApplication | None = None
        self.error: BaseException | None = None
        # Set by evict() while the factory runs: the result is not kept.
        self.stale = False


class _Miss(t.NamedTuple):
    expires: float
    name: str
    answer: WSGIApplication | None


def _gil_enabled() -> bool:
    is_enabled = getattr(sys, "_is_gil_enabled", None)
    return True if is_enabled is None else bool(is_enabled())


def _call(factory: Factory, name: str) -> WSGIApplication | None:
    return factory(name)


def _is_none(app: object) -> bool:
    return app is None


def _ignore_created(name: str, app: WSGIApplication) -> None:
    pass


def _ignore_evicted(name: str, app: WSGIApplication, reason: EvictReason) -> None:
    pass


def _never(app: WSGIApplication) -> bool:
    return False


_Evicted = t.List[t.Tuple[str, "WSGIApplication", EvictReason]]


class TenantRegistry:
    """Tenant apps by name, built on first use and bounded.

    :param max_instances: most apps held; the least recently used goes first.
    :param idle_timeout: seconds unused after which an app is dropped, or
        ``None`` to keep apps until capacity or :meth:`evict` removes them.
    :param miss_ttl: seconds a miss (see ``is_miss``) is remembered.
    :param max_misses: most misses remembered; the oldest goes first.
    :param create_timeout: seconds a request waits on another request's
        creation of the same name before :exc:`.TenantCreationTimeout`.
    :param invoke: calls a factory; the extension uses it to push the host
        app's context. Defaults to ``factory(name)``.
    :param is_miss: whether a factory's result means "no such tenant" (kept
        for ``miss_ttl``, never as an instance). Defaults to ``result is None``.
    :param on_created: called with ``(name, app)`` after a factory built an
        app, before anyone is served by it. An exception fails the creation.
    :param on_evicted: called with ``(name, app, reason)`` after an app left
        the registry, outside any lock. Exceptions are logged, not raised.
    :param has_wsgi_app: whether calling ``app`` only calls
        ``app.wsgi_app`` (true of a Flask app), asked once per created app:
        the middleware then calls ``app.wsgi_app`` itself, one call less.
    :param clock: monotonic clock in seconds, replaceable in tests.

    .. versionadded:: 0.1
    """

    def __init__(
        self,
        *,
        max_instances: int = 100,
        idle_timeout: float | None = None,
        miss_ttl: float = 5.0,
        max_misses: int = 1000,
        create_timeout: float = 30.0,
        invoke: t.Callable[[Factory, str], WSGIApplication | None] = _call,
        is_miss: t.Callable[[object], bool] = _is_none,
        on_created: t.Callable[[str, WSGIApplication], None] = _ignore_created,
        on_evicted: t.Callable[[str, WSGIApplication, EvictReason], None] = _ignore_evicted,
        has_wsgi_app: t.Callable[[WSGIApplication], bool] = _never,
        clock: t.Callable[[], float] = time.monotonic,
    ) -> None:
        if max_instances < 1:
            raise ValueError("max_instances must be at least 1.")
        self.max_instances = max_instances
        self.idle_timeout = idle_timeout
        self.miss_ttl = miss_ttl
        self.max_misses = max_misses
        self.create_timeout = create_timeout
        self._invoke = invoke
        self._is_miss = is_miss
        self._on_created = on_created
        self._on_evicted = on_evicted
        self._has_wsgi_app = has_wsgi_app
        self._clock = clock
        self._lock = threading.Lock()
        # See hit(): lock-free hits need the GIL and no use stamps.
        self._locked_hits = idle_timeout is not None or not _gil_enabled()
        # Key prefix of each factory: "" for the first, "<n>\x00" after.
        self._prefixes: dict[Factory, str] = {}
        # Least recently used first.
        self._instances: OrderedDict[str, _Entry] = OrderedDict()
        # The hot path's operations, bound once (the dict is never replaced).
        # DispatchMiddleware inlines hit() with them for lock_free_factory.
        self._get_entry = self._instances.get
        self._move_to_end = self._instances.move_to_end
        # The first factory seen keys its apps by the bare name.
        self._first_factory: Factory | None = None
        #: The first factory, once seen, if hits take no lock: its hit is
        #: ``_get_entry(name)`` then ``_move_to_end(name)``, which the
        #: middleware runs inline. ``None`` otherwise.
        self.lock_free_factory: Factory | None = None
        # Oldest first.
        self._misses: OrderedDict[str, _Miss] = OrderedDict()
        self._flights: dict[str, _Flight] = {}
        # How many instances each name has, for O(1) ``name in registry``.
        self._name_counts: dict[str, int] = {}

    def get(self, name: str, factory: Factory) -> WSGIApplication | None:
        """Return the app for ``name``, building it with ``factory`` on first
        use. Returns ``None`` (or whatever ``is_miss`` accepts) when the
        factory says there is no such tenant.

        :param name: the tenant's name, already validated.
        :param factory: builds the app; one long-lived function per kind.
        :raises TenantCreationTimeout: waited too long on another request.
        :raises TenantRecursionError: the factory asked for its own tenant.
        :raises TenantFactoryError: another request's creation failed.
        """
        app = self.hit(name, factory)
        if app is not None:
            return app
        return self._lookup(name, factory)

    def hit(self, name: str, factory: Factory) -> WSGIApplication | None:
        """The held app for ``name``, marked as most recently used, or
        ``None`` when it is not held (then call :meth:`get`). Never calls the
        factory; this is the whole cost of a request to a created tenant.

        With the GIL and no idle timeout this takes no lock: the lookup and
        the LRU move are each one atomic ``OrderedDict`` operation, so the
        order stays an exact record of use. On a free-threaded build it takes
        the registry lock; with an idle timeout (which stamps each use) it
        leaves the hit to :meth:`get`.

        :param name: the tenant's name.
        :param factory: the factory it was built with.
        """
        if factory is self._first_factory:
            key = name
        else:
            prefix = self._prefixes.get(factory)
            if prefix is None:
                return None
            key = prefix + name
        if self._locked_hits:
            if self.idle_timeout is not None:
                return None
            with self._lock:
                entry = self._instances.get(key)
                if entry is None:
                    return None
                self._instances.move_to_end(key)
            return entry.app
        entry = self._get_entry(key)
        if entry is None:
            return None
        # Not contextlib.suppress: a context manager costs more than the move.
        try:  # noqa: SIM105
            self._move_to_end(key)
        except KeyError:
            # Evicted in between: serve it anyway, like requests already in it.
            pass
        return entry.app

    def _key(self, name: str, factory: Factory) -> str:
        """The key of ``name`` built by ``factory``; call with the lock held."""
        prefix = self._prefixes.get(factory)
        if prefix is None:
            prefix = f"{len(self._prefixes)}\x00" if self._prefixes else ""
            self._prefixes[factory] = prefix
            if not prefix:
                self._first_factory = factory
                if not self._locked_hits:
                    self.lock_free_factory = factory
        # The first factory's key is the name object itself, which its entry
        # keeps too: the middleware's memos hold it (see _path_target there).
        return prefix + name if prefix else name

    def _lookup(self, name: str, factory: Factory) -> WSGIApplication | None:
        evicted: _Evicted = []
        try:
            with self._lock:
                key = self._key(name, factory)
                now = self._clock()
                if self.idle_timeout is not None:
                    self._expire_idle(now, evicted)
                entry = self._instances.get(key)
                if entry is not None:
                    entry.last_used = now
                    self._instances.move_to_end(key)
                    return entry.app
                miss = self._misses.get(key)
                if miss is not None:
                    if miss.expires > now:
                        return miss.answer
                    del self._misses[key]
                me = threading.get_ident()
                flight = self._flights.get(key)
                owner = flight is None
                if flight is None:
                    flight = self._flights[key] = _Flight(me, name)
                elif flight.owner == me:
                    raise TenantRecursionError(name)
                else:
                    flight.waiters += 1
        finally:
            self._notify(evicted)
        if owner:
            return self._create(key, name, factory, flight)
        if not flight.done.wait(self.create_timeout):
            raise TenantCreationTimeout(name, self.create_timeout)
        if flight.error is not None:
            raise TenantFactoryError(name) from flight.error
        return flight.app

    def _create(
        self, key: str, name: str, factory: Factory, flight: _Flight
    ) -> WSGIApplication | None:
        try:
            app = self._invoke(factory, name)
            is_miss = self._is_miss(app)
            if not is_miss:
                self._on_created(name, t.cast("WSGIApplication", app))
        except BaseException as e:
            with self._lock:
                del self._flights[key]
            flight.error = e
            flight.done.set()
            raise
        evicted: _Evicted = []
        with self._lock:
            del self._flights[key]
            now = self._clock()
            if flight.stale:
                if not is_miss:
                    evicted.append((name, t.cast("WSGIApplication", app), "evict"))
            elif is_miss:
                self._remember_miss(key, _Miss(now + self.miss_ttl, name, app), now)
            else:
                created = t.cast("WSGIApplication", app)
                self._instances[key] = _Entry(created, name, now, self._has_wsgi_app(created))
                self._name_counts[name] = self._name_counts.get(name, 0) + 1
                while len(self._instances) > self.max_instances:
                    _, old = self._instances.popitem(last=False)
                    self._forget_name(old.name)
                    evicted.append((old.name, old.app, "capacity"))
        flight.app = app
        flight.done.set()
        self._notify(evicted)
        return app

    def _remember_miss(self, key: str, miss: _Miss, now: float) -> None:
        if self.miss_ttl <= 0 or self.max_misses <= 0:
            return
        misses = self._misses
        # Every miss lives equally long, so the oldest expires first.
        while misses and next(iter(misses.values())).expires <= now:
            misses.popitem(last=False)
        misses[key] = miss
        misses.move_to_end(key)
        while len(misses) > self.max_misses:
            misses.popitem(last=False)

    def _expire_idle(self, now: float, evicted: _Evicted) -> None:
        assert self.idle_timeout is not None
        deadline = now - self.idle_timeout
        instances = self._instances
        # Least recently used first, so stop at the first one still in use.
        while instances:
            entry = next(iter(instances.values()))
            if entry.last_used > deadline:
                break
            instances.popitem(last=False)
            self._forget_name(entry.name)
            evicted.append((entry.name, entry.app, "idle"))

    def _forget_name(self, name: str) -> None:
        count = self._name_counts[name] - 1
        if count:
            self._name_counts[name] = count
        else:
            del self._name_counts[name]

    def _notify(self, evicted: _Evicted) -> None:
        for name, app, reason in evicted:
            try:
                self._on_evicted(name, app, reason)
            except Exception:
                log.exception("A tenant_evicted receiver failed for tenant %r.", name)

    def evict(self, name: str) -> int:
        """Drop every instance called ``name`` and any remembered miss for it,
        so the next request builds it afresh. A creation of ``name`` under way
        still serves the requests waiting on it, but is not kept. Requests
        already inside an evicted app finish normally.

        :param name: the tenant's name.
        :return: how many instances were dropped.
        """
        evicted: _Evicted = []
        with self._lock:
            for prefix in self._prefixes.values():
                key = prefix + name
                entry = self._instances.pop(key, None)
                if entry is not None:
                    evicted.append((name, entry.app, "evict"))
                self._misses.pop(key, None)
                flight = self._flights.get(key)
                if flight is not None:
                    flight.stale = True
            self._name_counts.pop(name, None)
        self._notify(evicted)
        return len(evicted)

    def clear(self) -> None:
        """Drop every instance and remembered miss (reason ``"evict"``)."""
        with self._lock:
            # list() copies in one C call, safe against lock-free LRU moves.
            entries = list(self._instances.values())
            self._instances.clear()
            self._misses.clear()
            self._name_counts.clear()
            for flight in self._flights.values():
                flight.stale = True
        self._notify([(entry.name, entry.app, "evict") for entry in entries])

    def expire_idle(self) -> int:
        """Drop the apps unused for ``idle_timeout`` seconds now, rather than
        at the next lookup.

        :return: how many were dropped.
        """
        evicted: _Evicted = []
        if self.idle_timeout is not None:
            with self._lock:
                self._expire_idle(self._clock(), evicted)
        self._notify(evicted)
        return len(evicted)

    def waiting(self, name: str) -> int:
        """How many requests are waiting on a creation of ``name`` under way
        (not counting the one running the factory)."""
        with self._lock:
            return sum(f.waiters for f in self._flights.values() if f.name == name)

    @property
    def miss_count(self) -> int:
        """How many "no such tenant" answers are remembered now."""
        return len(self._misses)

    def __len__(self) -> int:
        """How many tenant apps are held."""
        return len(self._instances)

    def __contains__(self, name: object) -> bool:
        """Whether an app called ``name`` is held."""
        return name in self._name_counts

    def __iter__(self) -> t.Iterator[str]:
        """The names held, least recently used first (a snapshot)."""
        # list() copies in one C call, safe against lock-free LRU moves.
        entries = list(self._instances.values())
        return iter(dict.fromkeys(entry.name for entry in entries))

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} {len(self)}/{self.max_instances} instances,"
            f" {self.miss_count} misses>"
        )
