"""The bounded, single-flight registry of tenant apps.

One :class:`TenantRegistry` per host app holds the tenant apps its factories
built. It is where correctness lives, so it has no Flask import:

- A hit takes no lock and touches nothing but its own entry: it stamps the
  entry with a use number (see :meth:`TenantRegistry.hit`). No lock that
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

import heapq
import itertools
import logging
import sys
import threading
import time
import typing as t
from collections import OrderedDict
from operator import attrgetter

from .errors import TenantCreationTimeout, TenantFactoryError, TenantRecursionError

if t.TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication

log = logging.getLogger("flask_dispatch")

#: A tenant factory: takes the tenant's name, returns a WSGI app or ``None``.
Factory = t.Callable[[str], t.Optional["WSGIApplication"]]
#: Why an instance left the registry.
EvictReason = t.Literal["capacity", "idle", "evict"]


class _Entry:
    """One held tenant app. The middleware's memos keep entries, so a hit
    reads the app and stamps the use without looking the name up."""

    __slots__ = ("app", "key", "last_used", "name", "used", "via_wsgi_app")

    def __init__(
        self, app: WSGIApplication, key: str, name: str, last_used: float, used: int
    ) -> None:
        #: The tenant app; ``None`` once it has left the registry.
        self.app: WSGIApplication | None = app
        self.key = key
        self.name = name
        #: Clock time of the last use (kept with an idle timeout).
        self.last_used = last_used
        #: Use number of the last use: the larger, the more recent.
        self.used = used
        #: Whether calling ``app.wsgi_app`` is calling ``app`` (see
        #: ``has_wsgi_app``); set by the registry.
        self.via_wsgi_app = False


_by_use = attrgetter("used")


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
        self._instances: dict[str, _Entry] = {}
        # The use order, as a heap of (use number, entry) with one record per
        # held entry, pushed when it was created or last looked at here. A
        # hit only stamps entry.used, so a record may be older than its
        # entry's last use; _least_recent() puts such records right before
        # trusting the top. Records of entries dropped by evict() stay until
        # they reach the top or the heap is rebuilt.
        self._by_use: list[tuple[int, _Entry]] = []
        #: Hands out use numbers: one call per use, never the same twice.
        self.next_use: t.Callable[[], int] = itertools.count().__next__
        # The first factory seen keys its apps by the bare name.
        self._first_factory: Factory | None = None
        #: The first factory, once seen, if hits take no lock; ``None``
        #: otherwise. Its hit is ``_held(name)`` then ``entry.used =
        #: next_use()``, which the middleware runs inline on entries it
        #: keeps in its memos.
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

        With the GIL and no idle timeout this takes no lock: it stamps the
        entry with the next use number (one atomic call), and eviction
        takes the entry with the smallest, so the order stays an exact record
        of use. On a free-threaded build it takes the registry lock; with an
        idle timeout (which keeps the clock time of each use) it leaves the
        hit to :meth:`get`.

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
                entry.used = self.next_use()
            return entry.app
        entry = self._instances.get(key)
        if entry is None:
            return None
        # None if evicted in between: then get() looks again under the lock.
        app = entry.app
        entry.used = self.next_use()
        return app

    def _held(self, name: str) -> _Entry | None:
        """The entry of ``name`` built by :attr:`lock_free_factory`, if held.
        For the middleware, which keeps it to serve hits inline.

        :param name: the tenant's name.
        """
        return self._instances.get(name)

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
                    entry.used = self.next_use()
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
                entry = _Entry(created, key, name, now, self.next_use())
                entry.via_wsgi_app = self._has_wsgi_app(created)
                self._hold(entry)
                while len(self._instances) > self.max_instances:
                    self._drop(self._least_recent(), "capacity", evicted)
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

    def _hold(self, entry: _Entry) -> None:
        """Hold a new entry; call with the lock held."""
        self._instances[entry.key] = entry
        self._name_counts[entry.name] = self._name_counts.get(entry.name, 0) + 1
        heap = self._by_use
        heapq.heappush(heap, (entry.used, entry))
        if len(heap) > 2 * len(self._instances) + 16:
            # Mostly records of evicted entries: start again from the held.
            self._refile_all()

    def _refile_all(self) -> None:
        """One current record per held entry; call with the lock held."""
        heap = self._by_use
        heap[:] = [(held.used, held) for held in self._instances.values()]
        heapq.heapify(heap)

    def _least_recent(self) -> _Entry:
        """The held entry used least recently; call with the lock held, and
        with at least one entry held. Its record is left at the heap's top.

        Use numbers only grow and each is handed out once, so a record whose
        number is still its entry's is the entry's last use; every other
        held entry has a record numbered at most its last use, and so at
        least this one's. Records that are out of date are put right as they
        reach the top: each hit costs at most one such step, here. After
        a sixteenth of the held entries' worth of steps in one call, one
        record per held entry is filed afresh instead: linear, where going
        on could cost a logarithmic step for every held entry (after a long
        run of hits without an eviction, all of them are out of date)."""
        heap = self._by_use
        steps = (len(self._instances) >> 4) + 16
        while True:
            used, entry = heap[0]
            if entry.app is None:  # dropped by evict()
                heapq.heappop(heap)
                continue
            last = entry.used
            if last == used:
                return entry
            steps -= 1
            if not steps:
                self._refile_all()
                return heap[0][1]
            heapq.heapreplace(heap, (last, entry))

    def _drop(self, entry: _Entry, reason: EvictReason, evicted: _Evicted) -> None:
        """Drop a held entry (its record stays in the heap); call with the
        lock held."""
        del self._instances[entry.key]
        self._forget_name(entry.name)
        app = t.cast("WSGIApplication", entry.app)
        # Memos that still keep the entry see it is gone, and free the app.
        entry.app = None
        evicted.append((entry.name, app, reason))

    def _expire_idle(self, now: float, evicted: _Evicted) -> None:
        assert self.idle_timeout is not None
        deadline = now - self.idle_timeout
        # Least recently used first, so stop at the first one still in use.
        # (With an idle timeout every use stamps both, under the lock.)
        while self._instances:
            entry = self._least_recent()
            if entry.last_used > deadline:
                break
            self._drop(entry, "idle", evicted)

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
                entry = self._instances.get(key)
                if entry is not None:
                    self._drop(entry, "evict", evicted)
                self._misses.pop(key, None)
                flight = self._flights.get(key)
                if flight is not None:
                    flight.stale = True
        self._notify(evicted)
        return len(evicted)

    def clear(self) -> None:
        """Drop every instance and remembered miss (reason ``"evict"``)."""
        evicted: _Evicted = []
        with self._lock:
            for entry in list(self._instances.values()):
                self._drop(entry, "evict", evicted)
            self._by_use.clear()
            self._misses.clear()
            for flight in self._flights.values():
                flight.stale = True
        self._notify(evicted)

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
        # sorted() copies the values in one C call before it calls the key,
        # so a creation under way cannot change the dict during the copy.
        entries = sorted(self._instances.values(), key=_by_use)
        return iter(dict.fromkeys(entry.name for entry in entries))

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} {len(self)}/{self.max_instances} instances,"
            f" {self.miss_count} misses>"
        )
