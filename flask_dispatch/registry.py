"""The bounded, single-flight registry of tenant apps.

One :class:`TenantRegistry` per host app holds the tenant apps its factories
built, keyed by ``(factory, name)``. It has no Flask import, and nothing
outside this module touches its insides.

- **Lookups through a slot.** :meth:`TenantRegistry.slot` gives the one
  :class:`TenantSlot` of a ``(factory, name)``; the router keeps it with its
  decision for a host or path, so a request to a held tenant costs an
  attribute read, whatever the number of tenants, and takes no lock (but
  one in :data:`TICK`, for an instant: see below).
- **Eviction policy: sampled least-recently-used, on a coarse clock.**
  Recency is read from a clock that moves on every :data:`TICK` hits and
  at each creation (as Redis reads it from a clock in milliseconds): a
  creation is more recent than every use before it and less recent than
  every use after it, and the uses within one tick are equally recent.
  A hit stamps its slot with the clock's value, which many hits share, so
  hits allocate nothing per tenant; they count without a lock, so
  concurrent ones may lose a tick. A creation beyond ``max_instances``
  evicts the least recent of :data:`SAMPLE` held apps picked at random (of
  all of them when no more are held; never the app just created). So while
  at most ``SAMPLE`` apps are held, no held app is less recent than the one
  evicted; beyond that, at least ``SAMPLE - 1`` others are at least as
  recent, and with probability ``1 - 0.75 ** SAMPLE`` (99%) fewer than a
  quarter are less recent. Each eviction is O(:data:`SAMPLE`), even right
  after every held app was used.
- **Single flight, bounded waits.** The first request for a name starts its
  factory on a creation thread; later requests for the name wait for that
  result. At most ``max_waiting`` requests wait up to ``create_timeout``
  seconds, the one that started the creation too; more may wait only during
  the creation's first :data:`OVERFLOW_WAIT` seconds, and once its factory
  has run (or it has waited in line) past the timeout, new requests are
  answered at once. So a slow factory holds at most ``max_waiting`` of the
  server's threads. The creation goes on, and its app is kept when it
  arrives. No lock is held while a factory runs, and different names are
  built in parallel, at most ``max_creating`` at a time on creation
  threads; more wait in line. A factory still running after
  :data:`GIVE_UP_AFTER` times the timeout is given up and a new attempt
  starts; its thread is set aside, at most ``max_creating`` of them, so at
  most twice ``max_creating`` factories run at once. A factory that asks
  for another tenant builds it on its own thread.
- **Bounded in time.** An app unused for ``idle_timeout`` seconds (a
  request counted by :meth:`~TenantRegistry.in_use` uses it until it
  ends), or older than ``max_age``, is dropped at its next use or by
  :meth:`~TenantRegistry.expire`;
  a factory's "no such tenant" is remembered for ``miss_ttl`` seconds, at
  most ``max_misses`` of them. Failures are not remembered.
"""

from __future__ import annotations

import logging
import os
import queue
import random
import threading
import time
import typing as t
import weakref
from collections import Counter, OrderedDict
from operator import attrgetter

from .errors import TenantBusy, TenantCreationTimeout, TenantFactoryError, TenantRecursionError
from .forks import renew_in_child

if t.TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication

log = logging.getLogger("flask_dispatch")

#: How long into a creation a request may still wait for it when
#: ``max_waiting`` requests wait already: long enough for a burst of requests
#: to a tenant that is quick to build (a page and its assets), short enough
#: that requests for a slow one give their threads back.
OVERFLOW_WAIT = 0.5

#: How many held apps an eviction compares (see the module's docs).
SAMPLE = 16

#: How many hits make one tick of the recency clock (see the module's
#: docs): the uses within a tick are equally recent.
TICK = 16

#: A factory still running after this many times ``create_timeout`` is
#: given up (see the module's docs).
GIVE_UP_AFTER = 4

#: How many creations may wait in line for each creation thread: a burst of
#: new tenants queues, a flood is refused at once.
PENDING_PER_THREAD = 16

#: A tenant factory: takes the tenant's name, returns a WSGI app or ``None``.
Factory = t.Callable[[str], t.Optional["WSGIApplication"]]
#: Why an app left the registry.
EvictReason = t.Literal["capacity", "idle", "max_age", "evict"]
#: What a lookup gives: the app, ``None``, or another remembered miss answer.
Answer = t.Any
_Key = tuple[Factory, str]
_Evicted = list[tuple[str, "WSGIApplication", EvictReason]]


class RegistryStats(t.NamedTuple):
    """Counts from :meth:`TenantRegistry.stats`, since the registry was made.

    :param held: apps held now.
    :param misses: "no such tenant" answers remembered now.
    :param hits: lookups served by a held app or a remembered miss (hits
        take no lock, so concurrent ones may be counted short).
    :param creations: creations that gave an app or a "no such tenant"
        answer (with dispatch: ``None``, or an HTTP error the factory
        returned or raised).
    :param failures: creations that raised: ``invoke`` or ``on_created``
        (with dispatch: the factory raised another exception, returned no
        WSGI app, or a ``tenant_created`` receiver raised).
    :param evictions: apps that left, by reason.
    """

    held: int
    misses: int
    hits: int
    creations: int
    failures: int
    evictions: dict[str, int]


class TenantSlot:
    """The place of one ``(factory, name)`` in a :class:`TenantRegistry`,
    and its app while the app is held. Get it from
    :meth:`TenantRegistry.slot`, look up through :meth:`TenantRegistry.fetch`;
    its attributes are the registry's.

    .. versionadded:: 0.2
    """

    __slots__ = (
        "__weakref__",
        "app",
        "born",
        "factory",
        "index",
        "key",
        "name",
        "seen",
        "used",
    )

    def __init__(self, factory: Factory, name: str) -> None:
        self.factory, self.name = factory, name
        self.key: _Key = (factory, name)
        self.app: WSGIApplication | None = None
        self.born = self.seen = 0.0
        self.used = 0  # the registry's recency clock at its last use
        self.index = -1  # where in the held list, while held

    def __repr__(self) -> str:
        return f"<TenantSlot {self.name!r} {'held' if self.app else 'empty'}>"


_used = attrgetter("used")


class _Creation:
    """One factory call under way; requests wait on ``done``."""

    __slots__ = (
        "answer",
        "done",
        "error",
        "pooled",
        "refused",
        "reported",
        "running_since",
        "set_aside",
        "stale",
        "started",
        "thread",
        "waiters",
    )

    def __init__(self, started: float) -> None:
        self.started = started  # asked for
        self.running_since: float | None = None  # its factory called
        self.done = threading.Event()
        self.answer: Answer = None
        self.error: BaseException | None = None
        # One item per request waiting for it. Appended under the lock; a
        # request that stops waiting pops one without it (list.pop is
        # atomic), so that leaving a wait never queues on the lock.
        self.waiters: list[None] = []
        self.thread: int | None = None
        # Evicted or given up while running: serve the waiters, keep nothing.
        self.stale = False
        # Could not start: too many creations were pending.
        self.refused = False
        # Logged as hung with no creation thread to spare.
        self.reported = False
        # Run by the creation threads, unless a factory asking for another
        # tenant claims it to run inline; given up, and no longer counted
        # against them.
        self.pooled, self.set_aside = True, False


_Job = tuple[_Creation, t.Callable[[], None]]


class _CreationThreads:
    """Run factories on ``limit`` daemon threads, with at most
    :data:`PENDING_PER_THREAD` times ``limit`` creations pending; the rest
    wait in line.

    A creation given up on (its factory hangs, or its tenant was evicted
    while it ran) may be set aside: it stops counting against the limit, so
    other tenants can still be created, and at most ``limit`` are set aside
    at once, so threads stay bounded.
    Threads start on demand in the process that needs them: threads do not
    survive a fork, so a process that finds it was forked starts its own.
    They end with their registry (see :meth:`stop`). Daemon threads, because
    a factory that never returns must not stop the process from exiting."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._lock = threading.Lock()
        self._pid = -1

    def submit(self, creation: _Creation, run: t.Callable[[], None]) -> bool:
        """Run ``run`` on a creation thread; ``False`` if too many are pending."""
        with self._lock:
            if self._pid != os.getpid():
                self._pid = os.getpid()
                self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
                self._threads = self._pending = self._set_aside = 0
            if self._pending >= PENDING_PER_THREAD * self.limit:
                return False
            self._pending += 1
            self._jobs.put((creation, run))
            self._start_if_needed()
        return True

    def _start_if_needed(self) -> None:
        """Start a thread unless one is free for the pending jobs: one is
        while no more jobs are pending than there are threads not stuck in
        a set-aside job. Call with the lock held."""
        if self._threads - self._set_aside < min(self.limit, self._pending):
            self._threads += 1
            threading.Thread(target=self._serve, args=(self._jobs,), daemon=True).start()

    def set_aside(self, creation: _Creation) -> bool:
        """Stop counting ``creation`` against the limit; ``False`` if it is
        not running on one of the threads (it is waiting in line, or runs
        inline: setting it aside would free no thread) or ``limit``
        creations are set aside already. Call with the registry's lock held."""
        with self._lock:
            running = creation.pooled and creation.thread is not None
            if creation.set_aside or not running or self._set_aside >= self.limit:
                return False
            creation.set_aside = True
            self._set_aside += 1
            self._pending -= 1
            self._start_if_needed()  # for the jobs waiting behind it
            return True

    def forked(self) -> None:
        """In a forked child: the parent's threads, jobs and lock are not
        this process's."""
        self._lock = threading.Lock()
        self._pid = -1

    def stop(self) -> None:
        """End each thread once it is done with the jobs before: called when
        the registry is garbage collected, so an app dropped (one per test,
        say) does not leave its threads behind."""
        with self._lock:
            if self._pid == os.getpid():
                for _ in range(self._threads):
                    self._jobs.put(None)

    def _serve(self, jobs: queue.SimpleQueue[_Job | None]) -> None:
        surplus = False
        while not surplus and (job := jobs.get()) is not None:
            creation, run = job
            try:
                run()
            finally:
                with self._lock:
                    if jobs is self._jobs:
                        if creation.set_aside:
                            self._set_aside -= 1
                        else:
                            self._pending -= 1
                        # Another thread was started while this job was set
                        # aside: with it done, one of them is one too many.
                        surplus = self._threads - self._set_aside > self.limit
                        if surplus:
                            self._threads -= 1
                # Its creation holds an app that may be evicted meanwhile.
                del creation, run, job


class _Creating(threading.local):
    #: Whether this thread runs a factory now.
    active = False


_creating = _Creating()


def _call(factory: Factory, name: str) -> Answer:
    return factory(name)


def _is_none(answer: Answer) -> bool:
    return answer is None


def _ignore(*args: t.Any) -> None:
    pass


class TenantRegistry:
    """Tenant apps by factory and name, built on first use and bounded.

    :param max_instances: most apps held; past that, one of the least
        recently used goes (see the module's docs).
    :param idle_timeout: seconds unused after which an app is dropped.
    :param max_age: seconds after its creation at which an app is dropped.
    :param miss_ttl: seconds a miss (see ``is_miss``) is remembered.
    :param max_misses: most misses remembered; the oldest goes first.
    :param create_timeout: seconds a request waits for a creation, at most.
    :param max_waiting: most requests that may wait ``create_timeout`` for
        one creation; more wait at most :data:`OVERFLOW_WAIT`.
    :param max_creating: most factories running at once on creation
        threads, besides as many given up on; up to
        :data:`PENDING_PER_THREAD` times as many creations wait in line.
    :param invoke: calls a factory; the extension uses it to push the host
        app's context. Defaults to ``factory(name)``.
    :param is_miss: whether an answer means "no such tenant": remembered
        for ``miss_ttl``, never held. Defaults to ``answer is None``.
    :param on_created: called with ``(name, app)`` on the creation thread
        before the app is held. An exception fails the creation, and the
        app goes to ``on_evicted`` (reason ``"evict"``), as it may have
        been acted on in part.
    :param on_evicted: called with ``(name, app, reason)`` after an app left
        the registry (or ``on_created`` raised for it: not counted in
        :meth:`stats`), outside the lock. Exceptions are logged.
    :param broadcast: called with the name (``None`` for all) after
        :meth:`evict` or :meth:`clear`, to tell the other processes.
    :param clock: monotonic clock in seconds, replaceable in tests.

    .. versionchanged:: 0.2
        Keyed by ``(factory, name)``, looked up through slots, sampled LRU;
        factories run on creation threads; :meth:`stats`, ``max_age``,
        ``max_waiting`` and ``max_creating``.
    """

    def __init__(
        self,
        *,
        max_instances: int = 100,
        idle_timeout: float | None = None,
        max_age: float | None = None,
        miss_ttl: float = 5.0,
        max_misses: int = 1000,
        create_timeout: float = 10.0,
        max_waiting: int = 4,
        max_creating: int = 8,
        invoke: t.Callable[[Factory, str], Answer] = _call,
        is_miss: t.Callable[[Answer], bool] = _is_none,
        on_created: t.Callable[[str, WSGIApplication], None] = _ignore,
        on_evicted: t.Callable[[str, WSGIApplication, EvictReason], None] = _ignore,
        broadcast: t.Callable[[str | None], None] = _ignore,
        clock: t.Callable[[], float] = time.monotonic,
    ) -> None:
        if max_instances < 1:
            raise ValueError("max_instances must be at least 1.")
        self.max_instances, self.max_waiting = max_instances, max_waiting
        self.idle_timeout, self.max_age = idle_timeout, max_age
        self.miss_ttl, self.max_misses = miss_ttl, max_misses
        self.create_timeout, self._broadcast = create_timeout, broadcast
        self._invoke, self._is_miss, self._clock = invoke, is_miss, clock
        self._on_created, self._on_evicted = on_created, on_evicted
        self._lock, self._in_use_lock = threading.Lock(), threading.Lock()
        # Under way, by tenant and id() of their app: see in_use.
        self._requests: dict[tuple[_Key, int], int] = {}
        self._slots: weakref.WeakValueDictionary[_Key, TenantSlot] = weakref.WeakValueDictionary()
        self._held: list[TenantSlot] = []  # in no order: evictions sample it
        self._misses: OrderedDict[_Key, tuple[float, Answer]] = OrderedDict()  # oldest first
        self._creations: dict[_Key, _Creation] = {}
        self._threads = _CreationThreads(max_creating)
        self._recency = 0  # the recency clock (see the module's docs)
        self._hits = self._created = self._failed = 0
        self._evictions: Counter[str] = Counter()
        # Only a registry with a time bound reads the clock on a hit.
        self._timed = idle_timeout is not None or max_age is not None
        self._follow_the_process()

    def _follow_the_process(self) -> None:
        """Start afresh in a forked child, and end the creation threads once
        the registry is collected (an idle one holds no job, so nothing of
        the registry). Not at exit: the process is ending."""
        renew_in_child(self._after_fork)
        weakref.finalize(self, self._threads.stop).atexit = False

    def _after_fork(self) -> None:
        """In a forked child: the lock may have been held by a thread that
        did not survive the fork, and so were the creations and the
        requests under way."""
        self._lock = threading.Lock()
        self._in_use_lock = threading.Lock()
        self._requests = {}  # the requests are the parent's
        self._creations.clear()
        self._threads.forked()

    def slot(self, name: str, factory: Factory) -> TenantSlot:
        """The one slot of ``(factory, name)``, for :meth:`fetch`. It lives
        while it is held by the registry or by its caller.

        :param name: the tenant's name, already validated.
        :param factory: builds the app; one long-lived function per kind.
        """
        key = (factory, name)
        found = self._slots.get(key)
        if found is None:
            with self._lock:
                found = self._slots.get(key)
                if found is None:
                    found = self._slots[key] = TenantSlot(factory, name)
        return found

    def get(self, name: str, factory: Factory) -> Answer:
        """The app for ``name``, built with ``factory`` on first use, or the
        factory's remembered "no such tenant" answer (``None`` by default).
        See :meth:`fetch` for what it raises.

        :param name: the tenant's name, already validated.
        :param factory: builds the app; one long-lived function per kind.
        """
        return self.fetch(self.slot(name, factory))

    def fetch(self, slot: TenantSlot) -> Answer:
        """The app of ``slot``, built on first use, or its factory's
        remembered "no such tenant" answer (``None`` by default).

        :param slot: from :meth:`slot`.
        :raises TenantCreationTimeout: not created within ``create_timeout``.
        :raises TenantBusy: ``max_waiting`` requests already wait for it,
            its factory ran (or it waited in line) past the timeout, or
            too many are pending.
        :raises TenantRecursionError: the factory asked for its own tenant.
        :raises TenantFactoryError: the factory raised; it is the ``__cause__``.
        """
        # A hit takes no lock, but for one in TICK that moves the clock: with
        # many threads, a lock taken on every hit makes them queue behind
        # whichever one the GIL switched away from. An app evicted meanwhile
        # serves this request and is then let go.
        app = slot.app
        if app is not None and (not self._timed or self._fresh(slot)):
            self._hits = hits = self._hits + 1
            if not hits % TICK:
                # Under the lock, or it could undo a creation's move of the clock.
                with self._lock:
                    self._recency += 1
            slot.used = self._recency
            return app
        return self._fetch_slowly(slot)

    def _hit(self) -> None:
        """Count a hit, and move the recency clock on every :data:`TICK`, as
        :meth:`fetch` does; call with the lock held."""
        self._hits = hits = self._hits + 1
        if not hits % TICK:
            self._recency += 1

    def _fresh(self, slot: TenantSlot) -> bool:
        """Whether a held app is within its time bounds, and stamp the time
        of its use."""
        now = self._clock()
        if self._expired(slot, now):
            return False
        slot.seen = now
        return True

    def _expired(self, slot: TenantSlot, now: float) -> EvictReason | None:
        idle_timeout = self.idle_timeout
        # The count before the time: a request ends by stamping the time,
        # then dropping the count, so one that ends meanwhile is seen.
        if (
            idle_timeout is not None
            and (slot.key, id(slot.app)) not in self._requests
            and now - slot.seen >= idle_timeout
        ):
            return "idle"
        if self.max_age is not None and now - slot.born >= self.max_age:
            return "max_age"
        return None

    def in_use(self, slot: TenantSlot, app: WSGIApplication) -> t.Callable[[], None]:
        """Count a request as using ``app`` until the function returned is
        called, once (when its response is closed): an app with a request
        under way is not idle, however long the request takes. Counted by
        tenant and app: a stream on an app let go does not keep the tenant's
        next app in use, unless the factory returned that same app; nor does
        it keep other tenants that the factory gave the same app object.

        :param slot: the slot :meth:`fetch` served the request from.
        :param app: the app :meth:`fetch` returned.

        .. versionadded:: 0.2
        """
        # done() refers to app: while counted, no other app can take its id().
        key = (slot.key, id(app))
        with self._in_use_lock:
            self._requests[key] = self._requests.get(key, 0) + 1
        pid = os.getpid()

        def done() -> None:
            if os.getpid() != pid:  # a forked child: the request is the parent's
                return
            now = self._clock()
            with self._in_use_lock:
                # Stamped before the count drops: a sweep in between must not
                # see the request over and the app unused since it began.
                if slot.app is app:
                    slot.seen = now
                left = self._requests.get(key, 0) - 1
                if left > 0:
                    self._requests[key] = left
                else:
                    self._requests.pop(key, None)

        return done

    def _fetch_slowly(self, slot: TenantSlot) -> Answer:
        """A lookup that found no fresh app: a remembered miss, or start or
        join a creation, then wait for it."""
        # Only the registry's own slot for the key is ever held.
        slot = self.slot(slot.name, slot.factory)
        key, name = slot.key, slot.name
        evicted: _Evicted = []
        try:
            with self._lock:
                now = self._clock()
                self._expire_misses(now)
                if slot.app is not None:
                    reason = self._expired(slot, now)
                    if not reason:  # created since the first look
                        self._hit()
                        slot.seen, slot.used = now, self._recency
                        return slot.app
                    self._drop(slot, reason, evicted)
                miss = self._misses.get(key)
                if miss is not None:
                    self._hit()
                    return miss[1]
                creation, start, overflow = self._join(key, name, now)
        finally:
            self._notify(evicted)
        try:
            if _creating.active:
                # A factory asking for another tenant builds it on its own
                # thread unless a creation thread has begun it: in line
                # behind them, it could wait for one of them to finish,
                # which may be itself.
                self._create(slot, creation)
            elif start and not self._threads.submit(creation, lambda: self._create(slot, creation)):
                self._abandon(key, creation)
            return self._wait(creation, name, overflow)
        finally:
            creation.waiters.pop()

    def _join(self, key: _Key, name: str, now: float) -> tuple[_Creation, bool, bool]:
        """The creation of ``key`` to wait for, whether it is new, and whether
        ``max_waiting`` requests wait for it already; call with the lock held."""
        creation = self._creations.get(key)
        if creation is not None:
            creation = self._worth_waiting_for(creation, name, now)
        start = creation is None
        if creation is None:
            creation = self._creations[key] = _Creation(now)
        overflow = len(creation.waiters) >= self.max_waiting
        creation.waiters.append(None)
        return creation, start, overflow

    def _worth_waiting_for(self, creation: _Creation, name: str, now: float) -> _Creation | None:
        """``creation``, or ``None`` once it is given up (a new one starts);
        raises :exc:`TenantBusy` when a request should not wait for it. Call
        with the lock held."""
        if creation.thread == threading.get_ident():
            raise TenantRecursionError(name)
        age = now - creation.started
        # Time spent in line for a creation thread is not the factory's.
        ran = 0.0 if creation.running_since is None else now - creation.running_since
        hung = ran > GIVE_UP_AFTER * self.create_timeout
        if (creation.stale or hung) and self._threads.set_aside(creation):
            if not creation.stale:
                log.error(
                    "The factory for tenant %r has run for %.1f s; giving up on it and"
                    " starting a new creation (its result will not be kept).",
                    name,
                    ran,
                )
            creation.stale = True
            return None
        if creation.stale:  # evicted, but no creation thread is free for another
            raise TenantBusy(name, "it was evicted while it was being created")
        if hung and creation.pooled and not creation.reported:
            creation.reported = True
            log.error(
                "The factory for tenant %r has run for %.1f s, but %d given-up factories"
                " still hold their creation threads: no new attempt starts until one"
                " returns, and new tenants may wait in line. Restart the worker.",
                name,
                ran,
                self._threads.limit,
            )
        # Waiting would only tie up a thread until the timeout again; a
        # factory that has only just begun is worth waiting for.
        if creation.running_since is None and age > self.create_timeout:
            raise TenantBusy(name, f"its creation has waited {age:.1f} s in line")
        if ran > self.create_timeout:
            raise TenantBusy(name, f"its creation has run for {ran:.1f} s")
        return creation

    def _abandon(self, key: _Key, creation: _Creation) -> None:
        """A creation that could not start: requests that joined it are told
        at once."""
        with self._lock:
            if self._creations.get(key) is creation:
                del self._creations[key]
        creation.refused = True
        creation.done.set()

    def _wait(self, creation: _Creation, name: str, overflow: bool) -> Answer:
        if overflow:
            # Only in the creation's first moments: a flood of requests for a
            # slow tenant must not keep taking threads.
            patience = creation.started + min(OVERFLOW_WAIT, self.create_timeout) - self._clock()
            if not creation.done.wait(max(0.0, patience)):
                raise TenantBusy(name, f"{self.max_waiting} requests already wait for it")
        elif not creation.done.wait(self.create_timeout):
            raise TenantCreationTimeout(name, self.create_timeout)
        if creation.refused:
            raise TenantBusy(name, "too many creations are pending")
        if creation.error is not None:
            raise TenantFactoryError(name) from creation.error
        return creation.answer

    def _create(self, slot: TenantSlot, creation: _Creation) -> None:
        """Run the factory on this thread, unless another has begun it, then
        keep what it gave."""
        with self._lock:
            if creation.thread is not None:
                return
            creation.thread = threading.get_ident()
            creation.running_since = self._clock()
            # Run inline by a factory asking for another tenant, not by the
            # creation thread whose job this was: that job will do nothing.
            creation.pooled = not _creating.active
        key, name = slot.key, slot.name
        answer: Answer = None
        announced = False
        nested, _creating.active = _creating.active, True
        try:
            answer = self._invoke(slot.factory, name)
            miss = self._is_miss(answer)
            if not miss:
                announced = True
                self._on_created(name, answer)
        except BaseException as e:  # handed to the waiting requests
            creation.error = e
        finally:
            _creating.active = nested
        evicted: _Evicted = []
        with self._lock:
            if self._creations.get(key) is creation:
                del self._creations[key]
            if creation.error is not None:
                self._failed += 1
                if announced:  # on_created may have acted on it before it raised
                    evicted.append((name, answer, "evict"))
            else:
                self._created += 1
                self._keep(slot, answer, miss, creation.stale, evicted)
        self._notify(evicted)
        creation.answer = answer
        creation.done.set()

    def _keep(
        self, slot: TenantSlot, answer: Answer, miss: bool, stale: bool, evicted: _Evicted
    ) -> None:
        """Hold a new app or remember a miss; call with the lock held."""
        now = self._clock()
        if stale:
            if not miss:
                self._evictions["evict"] += 1
                evicted.append((slot.name, answer, "evict"))
        elif miss:
            if self.miss_ttl > 0 and self.max_misses > 0:
                self._misses.pop(slot.key, None)
                self._misses[slot.key] = (now + self.miss_ttl, answer)
                while len(self._misses) > self.max_misses:
                    self._misses.popitem(last=False)
        else:
            slot.app, slot.born, slot.seen = answer, now, now
            # After the uses before it, before those after it.
            slot.used = self._recency + 1
            self._recency += 2
            slot.index = len(self._held)
            self._held.append(slot)
            while len(self._held) > self.max_instances:
                self._drop(self._least_recently_used(), "capacity", evicted)

    def _least_recently_used(self) -> TenantSlot:
        """The least recently used of :data:`SAMPLE` held apps picked at
        random, never the one held last (the app just created); call with
        the lock held."""
        held = self._held
        if len(held) - 1 > SAMPLE:
            return min((held[i] for i in random.sample(range(len(held) - 1), SAMPLE)), key=_used)
        return min(held[:-1], key=_used)

    def _drop(self, slot: TenantSlot, reason: EvictReason, evicted: _Evicted) -> None:
        """Let go of a held app; call with the lock held."""
        last = self._held.pop()
        if last is not slot:  # the last one fills its place
            self._held[slot.index] = last
            last.index = slot.index
        evicted.append((slot.name, t.cast("WSGIApplication", slot.app), reason))
        slot.app, slot.index = None, -1
        self._evictions[reason] += 1

    def _expire_misses(self, now: float) -> None:
        # Every miss lives equally long, so the oldest expires first.
        misses = self._misses
        while misses and next(iter(misses.values()))[0] <= now:
            misses.popitem(last=False)

    def _notify(self, evicted: _Evicted) -> None:
        for name, app, reason in evicted:
            # A SystemExit too: the thread announcing may be the idle sweep or
            # the Redis listener, which must go on, and the apps after this
            # one must be announced all the same. (Not Ctrl-C: it stops a
            # command.)
            try:
                self._on_evicted(name, app, reason)
            except (Exception, SystemExit):
                log.exception("Announcing the eviction of tenant %r failed.", name)

    def expire(self) -> int:
        """Drop the apps past ``idle_timeout`` or ``max_age`` now, and the
        misses past ``miss_ttl``, rather than at the next lookup.

        :return: how many apps were dropped.
        """
        evicted: _Evicted = []
        with self._lock:
            now = self._clock()
            self._expire_misses(now)
            for slot in list(self._held):
                reason = self._expired(slot, now)
                if reason:
                    self._drop(slot, reason, evicted)
        self._notify(evicted)
        return len(evicted)

    def evict(self, name: str, *, everywhere: bool = True) -> int:
        """Drop every app called ``name`` and any remembered miss for it, so
        the next request builds it afresh. A creation of ``name`` under way
        still serves the requests waiting for it, but is not kept; should
        ``max_creating`` creations be set aside already, requests for
        ``name`` get :exc:`TenantBusy` until it ends. A creation still in
        line for a creation thread builds after the eviction, and is kept.
        Requests already inside an evicted app finish normally.

        :param name: the tenant's name.
        :param everywhere: also tell the other processes (see ``broadcast``).
        :return: how many apps were dropped in this process.
        """
        dropped = self._evict_where(lambda key: key[1] == name)
        if everywhere:
            self._broadcast(name)
        return dropped

    def clear(self, *, everywhere: bool = True) -> int:
        """Drop every app and remembered miss (reason ``"evict"``).

        :param everywhere: also tell the other processes (see ``broadcast``).
        :return: how many apps were dropped in this process.
        """
        dropped = self._evict_where(lambda key: True)
        if everywhere:
            self._broadcast(None)
        return dropped

    def _evict_where(self, matches: t.Callable[[_Key], bool]) -> int:
        evicted: _Evicted = []
        with self._lock:
            for slot in [s for s in self._held if matches(s.key)]:
                self._drop(slot, "evict", evicted)
            for key in [k for k in self._misses if matches(k)]:
                del self._misses[key]
            for key in [k for k in self._creations if matches(k)]:
                creation = self._creations[key]
                if creation.thread is None:
                    continue  # still in line: it will build after the eviction
                # Its waiters are still served by it; later requests start
                # afresh once it stops counting against the creation threads
                # (else evicting a hung creation again and again would take
                # them all). Until then they are told it is busy.
                creation.stale = True
                if self._threads.set_aside(creation):
                    del self._creations[key]
        self._notify(evicted)
        return len(evicted)

    def waiting(self, name: str) -> int:
        """How many requests wait for a creation of ``name`` under way."""
        with self._lock:
            return sum(len(c.waiters) for key, c in self._creations.items() if key[1] == name)

    def stats(self) -> RegistryStats:
        """Counts of what the registry holds and has done."""
        with self._lock:
            return RegistryStats(
                held=len(self._held),
                misses=len(self._misses),
                hits=self._hits,
                creations=self._created,
                failures=self._failed,
                evictions=dict(self._evictions),
            )

    def __len__(self) -> int:
        """How many apps are held."""
        return len(self._held)

    def __contains__(self, name: object) -> bool:
        """Whether an app called ``name`` is held."""
        with self._lock:
            return any(slot.name == name for slot in self._held)

    def __iter__(self) -> t.Iterator[str]:
        """The names held, least recent first (a snapshot; see the module's
        docs for how recency is counted)."""
        with self._lock:
            names = [slot.name for slot in sorted(self._held, key=_used)]
        return iter(dict.fromkeys(names))

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {len(self)}/{self.max_instances} held>"
