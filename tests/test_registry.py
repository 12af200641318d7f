"""The tenant registry on its own: sampled LRU bound, misses, idle and age expiry,
single flight, parallel creation, re-entrancy, timeouts, back-pressure and
eviction."""

from __future__ import annotations

import contextlib
import functools
import gc
import os
import random
import sys
import threading
import time
import tracemalloc
import typing as t

import pytest

from flask_dispatch import (
    TenantBusy,
    TenantCreationTimeout,
    TenantFactoryError,
    TenantRecursionError,
    TenantRegistry,
    TenantSlot,
)
from flask_dispatch.registry import SAMPLE, TICK

from .conftest import NamedApp, RecordingFactory, in_forked_child, run_workers, wait_for

if t.TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication

    from flask_dispatch.registry import EvictReason


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Events:
    """Collects the registry's callbacks."""

    def __init__(self) -> None:
        self.created: list[str] = []
        self.evicted: list[tuple[str, str]] = []
        self._lock = threading.Lock()

    def on_created(self, name: str, app: WSGIApplication) -> None:
        with self._lock:
            self.created.append(name)

    def on_evicted(self, name: str, app: WSGIApplication, reason: EvictReason) -> None:
        with self._lock:
            self.evicted.append((name, reason))


def make_registry(events: Events | None = None, **kwargs: t.Any) -> TenantRegistry:
    if events is not None:
        kwargs.update(on_created=events.on_created, on_evicted=events.on_evicted)
    return TenantRegistry(**kwargs)


def test_caches_instances() -> None:
    registry = make_registry()
    factory = RecordingFactory()
    first = registry.get("acme", factory)
    assert registry.get("acme", factory) is first
    assert factory.calls == ["acme"]
    assert "acme" in registry and "globex" not in registry
    assert len(registry) == 1 and list(registry) == ["acme"]


@pytest.mark.parametrize(
    ("requests", "evicted"),
    [
        pytest.param(["a", "b", "a", "c"], ["b"], id="used-after-a-creation"),
        pytest.param(["a", "a", "b", "c"], ["a"], id="used-before-a-creation"),
        pytest.param(["a", "b", "a", "c", "a", "d"], ["b", "c"], id="used-after-two"),
        pytest.param(
            ["busy", "idle", "idle", *["busy"] * 2 * TICK, "new"], ["idle"], id="no-creations"
        ),
        pytest.param(
            ["a", "b", "b", *["ghost"] * 2 * TICK, "a", "c"], ["b"], id="remembered-misses"
        ),
    ],
)
def test_recency_follows_creations_and_hits(requests: list[str], evicted: list[str]) -> None:
    # A creation is more recent than every use before it and less recent
    # than every use after it; without creations, the clock moves with hits,
    # remembered "no such tenant" answers ("ghost") included.
    events = Events()
    registry = make_registry(events, max_instances=2)
    factory = RecordingFactory(known=set(requests) - {"ghost"})
    for name in requests:
        registry.get(name, factory)
    assert events.evicted == [(name, "capacity") for name in evicted]


def test_lru_order_up_to_sample_held() -> None:
    events = Events()
    registry = make_registry(events, max_instances=3)
    factory = RecordingFactory()
    for name in ("a", "b", "c"):
        registry.get(name, factory)
    registry.get("a", factory)  # a is now the most recently used
    registry.get("d", factory)  # evicts b, the least recently used
    assert list(registry) == ["c", "a", "d"]
    registry.get("c", factory)
    registry.get("e", factory)  # evicts a
    assert list(registry) == ["d", "c", "e"]
    assert events.evicted == [("b", "capacity"), ("a", "capacity")]
    assert len(registry) == 3


class RecencyModel:
    """When each held app was last used, on the registry's clock, which
    moves on every ``TICK`` hits and at each creation, and each creation
    happens between two moments of it. Each eviction is checked against the
    bound the registry states: while at most ``SAMPLE`` apps were held
    before the creation, none less recent than the one evicted; otherwise
    at least ``SAMPLE - 1`` others (not the new app) at least as recent,
    and nearly always fewer than a quarter less recent."""

    def __init__(self) -> None:
        self.last_use: dict[str, float] = {}
        self.clock = self.hits = 0
        self.in_oldest_quarter = self.evictions = 0

    def used(self, name: str) -> None:
        self.hits += 1
        if self.hits % TICK == 0:
            self.clock += 1
        self.last_use[name] = self.clock

    def created(self, name: str) -> None:
        self.last_use[name] = self.clock + 0.5
        self.clock += 1

    def evicted(self, name: str, new: str) -> None:
        victim = self.last_use.pop(name)
        others = [at for other, at in self.last_use.items() if other != new]
        less_recent = sum(at < victim for at in others)
        if len(others) + 1 <= SAMPLE:
            assert less_recent == 0, f"{name} evicted before a less recent app"
        else:
            at_least_as_recent = len(others) - less_recent
            assert at_least_as_recent >= SAMPLE - 1, f"{name} is among the most recently used"
        self.in_oldest_quarter += less_recent < (len(others) + 2) / 4
        self.evictions += 1


@pytest.mark.parametrize(
    ("capacity", "names", "seed"),
    [
        pytest.param(2, 3, 1, id="tiny"),
        pytest.param(SAMPLE, 40, 2, id="sample-sized"),
        pytest.param(64, 100, 3, id="most-held"),
        pytest.param(64, 1000, 4, id="churn"),
        pytest.param(1000, 3000, 5, id="large"),
    ],
)
def test_lru_bound_over_long_random_runs(capacity: int, names: int, seed: int) -> None:
    # Check every eviction against a model of the registry's recency clock
    # over thousands of requests, with evictions by name mixed in.
    rng = random.Random(seed)
    events = Events()
    registry = make_registry(events, max_instances=capacity)
    factory = RecordingFactory()
    model = RecencyModel()
    for _ in range(10_000):
        name = f"t{rng.randrange(names)}"
        if rng.random() < 0.02:
            held = name in model.last_use
            model.last_use.pop(name, None)
            assert registry.evict(name) == (1 if held else 0)
            continue
        calls, seen = len(factory.calls), len(events.evicted)
        assert registry.get(name, factory) is not None
        hit = len(factory.calls) == calls
        assert hit == (name in model.last_use)
        if hit:
            model.used(name)
        else:
            model.created(name)
        for victim, reason in events.evicted[seen:]:
            assert reason == "capacity"
            model.evicted(victim, name)
    assert sorted(registry) == sorted(model.last_use)
    assert len(registry) <= capacity
    assert model.evictions > 0
    assert model.in_oldest_quarter >= 0.9 * model.evictions


@pytest.mark.parametrize(
    ("hit_share", "oldest_first"),
    [
        pytest.param(1.0, True, id="all"),
        pytest.param(0.5, True, id="oldest-half"),
        pytest.param(0.05, True, id="oldest-few"),
        pytest.param(0.5, False, id="random-half"),
    ],
)
def test_lru_bound_after_a_long_run_of_hits(hit_share: float, oldest_first: bool) -> None:
    # After a long run of hits, evictions still follow the order of last use
    # within the stated bound.
    capacity = 320
    rng = random.Random(7)
    events = Events()
    registry = make_registry(events, max_instances=capacity)
    factory = RecordingFactory()
    model = RecencyModel()
    names = [f"t{i}" for i in range(capacity)]
    for name in names:
        registry.get(name, factory)
        model.created(name)
    count = int(capacity * hit_share)
    hit = names[:count] if oldest_first else rng.sample(names, count)
    rng.shuffle(hit)
    for name in hit:
        assert registry.get(name, factory) is not None
        model.used(name)
    for i in range(capacity):
        seen = len(events.evicted)
        registry.get(f"new{i}", factory)
        model.created(f"new{i}")
        assert len(events.evicted) == seen + 1
        model.evicted(events.evicted[-1][0], f"new{i}")
    assert model.in_oldest_quarter >= 0.9 * model.evictions
    assert sorted(registry) == sorted(model.last_use)


def test_stats_count_what_happened() -> None:
    clock = FakeClock()
    registry = make_registry(max_instances=2, idle_timeout=10.0, clock=clock)
    factory = RecordingFactory(known={"a", "b", "c", "boom"})

    def failing(name: str) -> WSGIApplication:
        raise LookupError(name)

    for name in ("a", "a", "b", "c", "ghost", "ghost"):
        registry.get(name, factory)
    with pytest.raises(TenantFactoryError):
        registry.get("boom", failing)
    registry.evict("b")
    stats = registry.stats()
    assert (stats.held, stats.misses, stats.creations, stats.failures) == (1, 1, 4, 1)
    assert stats.hits == 2  # the second "a" and the second "ghost"
    clock.now += 11
    registry.expire()
    stats = registry.stats()
    assert (stats.held, stats.misses) == (0, 0)
    assert stats.evictions == {"capacity": 1, "evict": 1, "idle": 1}


def test_one_slot_per_factory_and_name() -> None:
    registry = make_registry()
    factory = RecordingFactory()
    slot = registry.slot("acme", factory)
    assert registry.slot("acme", factory) is slot
    assert registry.slot("globex", factory) is not slot
    assert registry.slot("acme", RecordingFactory()) is not slot
    # A slot made by hand is looked up through the registry's own.
    app = registry.fetch(TenantSlot(factory, "acme"))
    assert registry.fetch(slot) is app and registry.get("acme", factory) is app
    assert factory.calls == ["acme"] and len(registry) == 1


def test_two_factories_hold_separate_instances() -> None:
    registry = make_registry()
    sub, path = RecordingFactory(prefix="sub:"), RecordingFactory(prefix="path:")
    a, b = registry.get("acme", sub), registry.get("acme", path)
    assert isinstance(a, NamedApp) and isinstance(b, NamedApp)
    assert (a.name, b.name) == ("sub:acme", "path:acme")
    assert len(registry) == 2 and list(registry) == ["acme"]
    assert registry.evict("acme") == 2
    assert len(registry) == 0 and "acme" not in registry


def test_miss_remembered_for_ttl_then_asked_again() -> None:
    clock = FakeClock()
    registry = make_registry(miss_ttl=5.0, clock=clock)
    factory = RecordingFactory(known=())
    assert registry.get("ghost", factory) is None
    assert registry.get("ghost", factory) is None
    assert factory.calls == ["ghost"]
    clock.now += 5.01
    assert registry.get("ghost", factory) is None
    assert factory.calls == ["ghost", "ghost"]
    assert len(registry) == 0 and registry.stats().misses == 1


def test_misses_bounded_in_count() -> None:
    registry = make_registry(max_misses=10)
    factory = RecordingFactory(known=())
    for i in range(1000):
        registry.get(f"n{i}", factory)
    assert registry.stats().misses == 10
    assert len(registry) == 0


def test_expired_misses_pruned_on_insert() -> None:
    clock = FakeClock()
    registry = make_registry(miss_ttl=1.0, max_misses=1000, clock=clock)
    factory = RecordingFactory(known=())
    for i in range(50):
        registry.get(f"n{i}", factory)
    clock.now += 2
    registry.get("late", factory)
    assert registry.stats().misses == 1


def test_miss_ttl_zero_remembers_nothing() -> None:
    registry = make_registry(miss_ttl=0.0)
    factory = RecordingFactory(known=())
    registry.get("ghost", factory)
    registry.get("ghost", factory)
    assert factory.calls == ["ghost", "ghost"] and registry.stats().misses == 0


def test_evict_forgets_miss() -> None:
    registry = make_registry()
    known: set[str] = set()
    factory = RecordingFactory(known=known)
    assert registry.get("acme", factory) is None
    known.add("acme")  # the signup
    assert registry.get("acme", factory) is None  # still the remembered miss
    assert registry.evict("acme") == 0
    assert registry.get("acme", factory) is not None


def test_failed_creation_not_remembered() -> None:
    registry = make_registry()
    calls = []

    def flaky(name: str) -> WSGIApplication:
        calls.append(name)
        if len(calls) == 1:
            raise LookupError("database down")
        return NamedApp(name)

    with pytest.raises(TenantFactoryError) as info:
        registry.get("acme", flaky)
    assert isinstance(info.value.__cause__, LookupError)
    assert len(registry) == 0 and registry.stats().misses == 0
    assert registry.get("acme", flaky) is not None
    assert calls == ["acme", "acme"]


def test_idle_timeout() -> None:
    clock = FakeClock()
    events = Events()
    registry = make_registry(events, idle_timeout=10.0, clock=clock)
    factory = RecordingFactory()
    first = registry.get("a", factory)
    registry.get("b", factory)
    clock.now += 6
    registry.get("b", factory)  # b used again, a not
    clock.now += 6
    assert registry.get("b", factory) is not None
    assert registry.expire() == 1  # what the housekeeping thread calls
    assert list(registry) == ["b"]
    assert events.evicted == [("a", "idle")]
    assert registry.get("a", factory) is not first
    assert factory.calls == ["a", "b", "a"]


def test_an_app_in_use_is_not_idle_until_its_requests_end() -> None:
    clock = FakeClock()
    registry = make_registry(idle_timeout=10.0, clock=clock)
    factory = RecordingFactory()
    slot = registry.slot("a", factory)
    app = registry.fetch(slot)
    first, second = registry.in_use(slot, app), registry.in_use(slot, app)  # two long requests
    clock.now += 60
    assert registry.expire() == 0 and list(registry) == ["a"]
    first()
    assert registry.expire() == 0  # one is still under way
    second()  # the last ends: idle from now on
    clock.now += 9
    assert registry.expire() == 0
    clock.now += 1
    assert registry.expire() == 1 and len(registry) == 0


@pytest.mark.parametrize(
    "let_go",
    [
        pytest.param(lambda registry, factory: registry.evict("a"), id="evicted"),
        pytest.param(lambda registry, factory: registry.get("b", factory), id="over-capacity"),
    ],
)
def test_a_request_on_an_app_let_go_does_not_keep_the_next_app_in_use(
    let_go: t.Callable[[TenantRegistry, RecordingFactory], object],
) -> None:
    clock = FakeClock()
    registry = make_registry(idle_timeout=10.0, max_instances=1, clock=clock)
    factory = RecordingFactory()
    slot = registry.slot("a", factory)
    first = registry.fetch(slot)
    done = registry.in_use(slot, first)  # a long request (a stream) on the first app
    let_go(registry, factory)
    assert registry.fetch(slot) is not first  # the next app, used once
    clock.now += 10
    assert registry.expire() == 1 and "a" not in registry  # idle all the same
    third = registry.fetch(slot)
    clock.now += 9
    done()  # the stream ends: no use of the third app
    clock.now += 1
    assert registry.expire() == 1 and "a" not in registry
    assert registry.fetch(slot) is not third


def test_a_request_on_an_app_the_factory_returns_again_keeps_it_in_use() -> None:
    clock = FakeClock()
    registry = make_registry(idle_timeout=10.0, clock=clock)
    factory = functools.cache(RecordingFactory())  # one app per name, for good
    slot = registry.slot("a", factory)
    app = registry.fetch(slot)
    done = registry.in_use(slot, app)  # a stream on it ...
    registry.evict("a")  # ... outlives its eviction, and it is held again
    assert registry.fetch(slot) is app
    clock.now += 60
    assert registry.expire() == 0 and "a" in registry  # still serving the stream
    done()
    clock.now += 10
    assert registry.expire() == 1 and "a" not in registry


def test_a_request_keeps_only_its_own_tenant_in_use_when_tenants_share_an_app() -> None:
    clock = FakeClock()
    registry = make_registry(idle_timeout=10.0, clock=clock)
    shared = NamedApp("shared")  # one app object, for every tenant
    a, b = registry.slot("a", lambda name: shared), registry.slot("b", lambda name: shared)
    assert registry.fetch(a) is registry.fetch(b) is shared
    done = registry.in_use(a, shared)  # a stream to tenant a
    clock.now += 10
    assert registry.expire() == 1 and list(registry) == ["a"]  # b was unused: idle
    done()
    clock.now += 10
    assert registry.expire() == 1 and "a" not in registry


def test_a_request_whose_app_was_let_go_before_it_was_counted_counts_nowhere() -> None:
    clock = FakeClock()
    registry = make_registry(idle_timeout=10.0, clock=clock)
    factory = RecordingFactory()
    slot = registry.slot("a", factory)
    first = registry.fetch(slot)  # a request looks the app up ...
    registry.evict("a")  # ... the tenant is evicted and built again ...
    second = registry.fetch(slot)
    done = registry.in_use(slot, first)  # ... before the request is counted
    clock.now += 10
    assert registry.expire() == 1 and "a" not in registry  # the second app is idle
    done()
    assert registry.fetch(slot) is not second


class SweepingClock(FakeClock):
    """A clock that runs a sweep when it is read while armed: as the
    background thread may, at any moment."""

    def __init__(self) -> None:
        super().__init__()
        self.sweep: t.Callable[[], object] | None = None

    def __call__(self) -> float:
        sweep, self.sweep = self.sweep, None
        if sweep is not None:
            sweep()
        return self.now


def test_a_sweep_as_a_long_request_ends_keeps_the_app() -> None:
    clock = SweepingClock()
    registry = make_registry(idle_timeout=10.0, clock=clock)
    slot = registry.slot("a", RecordingFactory())
    done = registry.in_use(slot, registry.fetch(slot))
    clock.now += 60  # a long request
    clock.sweep = registry.expire  # at the moment it ends
    done()
    assert list(registry) == ["a"]


def test_a_forked_child_does_not_inherit_requests_under_way() -> None:
    clock = FakeClock()
    registry = make_registry(idle_timeout=10.0, clock=clock)
    slot = registry.slot("a", RecordingFactory())
    done = registry.in_use(slot, registry.fetch(slot))  # the parent's, under way at the fork

    def in_child() -> list[str]:
        done()  # the child's copy of the response, closed there: no count below 0
        clock.now += 60
        registry.expire()
        return list(registry)

    assert in_forked_child(in_child)[0] == []
    assert registry.expire() == 0  # the parent's request is still under way


def test_expire_without_lookup() -> None:
    clock = FakeClock()
    registry = make_registry(idle_timeout=1.0, clock=clock)
    registry.get("a", RecordingFactory())
    clock.now += 2
    assert registry.expire() == 1 and len(registry) == 0


def test_max_age_rebuilds_an_app_in_use() -> None:
    clock = FakeClock()
    events = Events()
    registry = make_registry(events, max_age=60.0, clock=clock)
    factory = RecordingFactory()
    first = registry.get("a", factory)
    registry.get("b", factory)
    for _ in range(5):  # in use all the time: idle expiry would never drop it
        clock.now += 10
        assert registry.get("a", factory) is first
    clock.now += 11
    assert registry.get("a", factory) is not first  # rebuilt at its next use
    assert events.evicted == [("a", "max_age")]
    assert registry.expire() == 1  # b, found by the sweep without a request
    assert events.evicted[-1] == ("b", "max_age") and list(registry) == ["a"]


def test_clear() -> None:
    events = Events()
    registry = make_registry(events)
    factory = RecordingFactory(known={"a"})
    registry.get("a", factory)
    registry.get("ghost", factory)
    assert registry.clear() == 1
    assert len(registry) == 0 and registry.stats().misses == 0
    assert events.evicted == [("a", "evict")]


def test_created_callback_failure_fails_creation() -> None:
    def refuse(name: str, app: WSGIApplication) -> None:
        raise RuntimeError("no")

    evicted: list[tuple[str, WSGIApplication, EvictReason]] = []
    registry = TenantRegistry(on_created=refuse, on_evicted=lambda *args: evicted.append(args))
    with pytest.raises(TenantFactoryError) as info:
        registry.get("a", RecordingFactory())
    assert isinstance(info.value.__cause__, RuntimeError)
    assert len(registry) == 0
    # Let go as it may have been acted on in part; never held, so no eviction counted.
    assert [(name, reason) for name, _, reason in evicted] == [("a", "evict")]
    assert isinstance(evicted[0][1], NamedApp)
    stats = registry.stats()
    assert (stats.creations, stats.failures, stats.evictions) == (0, 1, {})


def test_evicted_callback_failure_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    def broken(name: str, app: WSGIApplication, reason: EvictReason) -> None:
        raise RuntimeError("receiver broke")

    registry = TenantRegistry(max_instances=1, on_evicted=broken)
    factory = RecordingFactory()
    registry.get("a", factory)
    registry.get("b", factory)  # evicts a; must not fail this lookup
    assert list(registry) == ["b"]
    assert "tenant 'a'" in caplog.text


class Gate:
    """A factory that blocks until released, counting its calls."""

    def __init__(self, fail: bool = False) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        self.calls = 0
        self.fail = fail
        self._lock = threading.Lock()

    def __call__(self, name: str) -> WSGIApplication:
        with self._lock:
            self.calls += 1
        self.entered.set()
        assert self.release.wait(10)
        if self.fail:
            raise ValueError(f"cannot build {name}")
        return NamedApp(name)


@pytest.mark.parametrize(
    "fail", [pytest.param(False, id="success"), pytest.param(True, id="failure")]
)
def test_single_flight(fail: bool) -> None:
    registry = make_registry(max_waiting=32)
    gate = Gate(fail=fail)
    results: list[object] = [None] * 32
    barrier = threading.Barrier(32)

    def worker(i: int) -> None:
        barrier.wait()
        try:
            results[i] = registry.get("acme", gate)
        except Exception as e:
            results[i] = e

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(32)]
    for thread in threads:
        thread.start()
    assert gate.entered.wait(10)
    wait_for(lambda: registry.waiting("acme") == 32)
    gate.release.set()
    for thread in threads:
        thread.join(10)
    assert gate.calls == 1
    if fail:
        assert all(
            isinstance(r, TenantFactoryError) and isinstance(r.__cause__, ValueError)
            for r in results
        )
        assert len(registry) == 0
    else:
        assert all(r is results[0] for r in results) and isinstance(results[0], NamedApp)
        assert len(registry) == 1


def test_a_lookup_that_finds_the_app_kept_while_it_waited_for_the_lock() -> None:
    # The creation keeps its app under the registry's lock; a lookup that
    # found no app and then waited for that lock must serve the app kept,
    # not start a second creation (the first one is over by then).
    keeping, release = threading.Event(), threading.Event()
    built = threading.Event()

    def clock() -> float:
        # The first call after the factory returned: the creation keeping
        # its app, with the lock held.
        if built.is_set() and not keeping.is_set():
            keeping.set()
            assert release.wait(10)
        return 1000.0

    recording = RecordingFactory()

    def factory(name: str) -> WSGIApplication | None:
        app = recording(name)
        built.set()
        return app

    registry = make_registry(clock=clock)
    answers: list[object] = []
    first = threading.Thread(target=lambda: answers.append(registry.get("acme", factory)))
    first.start()
    assert keeping.wait(10)
    second = threading.Thread(target=lambda: answers.append(registry.get("acme", factory)))
    second.start()
    time.sleep(0.3)  # it finds no app and waits for the lock
    release.set()
    first.join(10)
    second.join(10)
    assert recording.calls == ["acme"]
    assert len(answers) == 2 and answers[0] is answers[1]
    stats = registry.stats()
    assert (stats.creations, stats.hits) == (1, 1)


def test_different_names_created_in_parallel() -> None:
    registry = make_registry(max_creating=16)
    # Every factory waits until all 16 are running at once: serialised
    # creation could never get past the barrier.
    all_running = threading.Barrier(16)

    def together(name: str) -> WSGIApplication:
        all_running.wait(10)
        return NamedApp(name)

    def worker(i: int) -> None:
        assert registry.get(f"t{i}", together) is not None

    assert run_workers(16, worker) == []
    assert len(registry) == 16


def test_slow_factory_does_not_delay_cached_tenants() -> None:
    registry = make_registry()
    factory = RecordingFactory()
    cached = registry.get("fast", factory)
    gate = Gate()
    creator = threading.Thread(target=get_quietly, args=(registry, "slow", gate))
    creator.start()
    assert gate.entered.wait(10)
    try:
        # The slow factory is running; hits for another tenant are served.
        for _ in range(1000):
            assert registry.get("fast", factory) is cached
    finally:
        gate.release.set()
        creator.join(10)


def test_recursion_is_an_error_not_a_deadlock() -> None:
    registry = make_registry(create_timeout=30)

    def recursive(name: str) -> WSGIApplication | None:
        registry.get(name, recursive)
        return NamedApp(name)

    with pytest.raises(TenantFactoryError) as info:
        registry.get("acme", recursive)
    assert isinstance(info.value.__cause__, TenantRecursionError)
    assert "'acme'" in str(info.value.__cause__)
    assert len(registry) == 0


@pytest.mark.parametrize("depth", [pytest.param(1, id="one"), pytest.param(3, id="chain")])
def test_a_factory_may_ask_for_other_tenants_with_every_creation_thread_busy(depth: int) -> None:
    # One creation thread, busy with the factory that asks: the tenants it
    # asks for are built on its thread rather than waiting in line for it.
    registry = make_registry(max_creating=1, create_timeout=2)
    built: list[str] = []

    def factory(name: str) -> WSGIApplication:
        level = int(name.removeprefix("t"))
        if level < depth:
            assert isinstance(registry.get(f"t{level + 1}", factory), NamedApp)
        built.append(name)
        return NamedApp(name)

    assert isinstance(registry.get("t0", factory), NamedApp)
    assert built == [f"t{i}" for i in range(depth, -1, -1)]
    assert sorted(registry) == sorted(built)


def test_a_factory_takes_over_a_creation_waiting_in_line_for_its_thread() -> None:
    # A request has put tenant y in line behind the only creation thread,
    # which runs x's factory; x's factory then asks for y, and builds it.
    registry = make_registry(max_creating=1, create_timeout=2)
    y_in_line = threading.Event()
    built: list[str] = []

    def factory(name: str) -> WSGIApplication:
        if name == "x":
            assert y_in_line.wait(10)
            assert isinstance(registry.get("y", factory), NamedApp)
        built.append(name)
        return NamedApp(name)

    results: dict[str, object] = {}

    def request(name: str) -> None:
        results[name] = registry.get(name, factory)

    first = threading.Thread(target=request, args=("x",))
    first.start()
    wait_for(lambda: registry.waiting("x") == 1)
    second = threading.Thread(target=request, args=("y",))
    second.start()
    wait_for(lambda: registry.waiting("y") == 1)
    y_in_line.set()
    first.join(10)
    second.join(10)
    assert built == ["y", "x"]
    assert isinstance(results["x"], NamedApp) and results["y"] is registry.get("y", factory)


class FirstCallWaits:
    """A factory whose first call waits for ``release``, then returns the
    app it made first; later calls return a new app at once. ``built``
    holds every app it made."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.built: list[NamedApp] = []

    def __call__(self, name: str) -> WSGIApplication:
        self.built.append(NamedApp(f"{name} #{len(self.built) + 1}"))
        if len(self.built) == 1:
            assert self.release.wait(10)
            return self.built[0]
        return self.built[-1]


def get_quietly(registry: TenantRegistry, name: str, factory: t.Any) -> None:
    """A request in a thread whose own outcome the test does not need."""
    with contextlib.suppress(Exception):
        registry.get(name, factory)


def test_every_request_waits_at_most_the_timeout_and_the_app_is_kept() -> None:
    registry = make_registry(create_timeout=0.2)
    gate = Gate()
    # The request that starts the creation times out like the others.
    with pytest.raises(TenantCreationTimeout) as info:
        registry.get("acme", gate)
    assert info.value.name == "acme" and gate.entered.is_set()
    # Older than the timeout: a later request is answered at once, instead
    # of tying up a thread until the timeout again.
    with pytest.raises(TenantBusy, match="its creation has run for"):
        registry.get("acme", gate)
    gate.release.set()  # the creation finishes in the background
    wait_for(lambda: len(registry) == 1)
    assert isinstance(registry.get("acme", gate), NamedApp)
    assert gate.calls == 1


def test_waiting_requests_are_bounded() -> None:
    registry = make_registry(max_waiting=3, create_timeout=30)
    gate = Gate()
    threads = [
        threading.Thread(target=get_quietly, args=(registry, "acme", gate)) for _ in range(3)
    ]
    for thread in threads:
        thread.start()
    wait_for(lambda: registry.waiting("acme") == 3)
    with pytest.raises(TenantBusy, match="3 requests already wait"):
        registry.get("acme", gate)  # at once, not after the timeout
    gate.release.set()
    for thread in threads:
        thread.join(10)
    assert gate.calls == 1 and len(registry) == 1


def test_creation_threads_are_bounded() -> None:
    registry = make_registry(max_creating=2, create_timeout=0.1)
    gates = {name: Gate() for name in ("a", "b", "c")}
    for name in ("a", "b", "c"):
        with pytest.raises(TenantCreationTimeout):
            registry.get(name, gates[name])
    assert gates["c"].calls == 0  # in line: two factories run at once
    gates["a"].release.set()
    wait_for(lambda: gates["c"].calls == 1)  # a's thread took it
    for gate in gates.values():
        gate.release.set()
    wait_for(lambda: len(registry) == 3)


def test_creations_in_line_are_bounded() -> None:
    registry = make_registry(max_creating=1, create_timeout=0.01)
    gate = Gate()
    for i in range(16):  # one running, fifteen in line
        with pytest.raises(TenantCreationTimeout):
            registry.get(f"t{i}", gate)
    with pytest.raises(TenantBusy, match="too many creations are pending"):
        registry.get("t16", gate)
    assert gate.calls == 1
    gate.release.set()
    wait_for(lambda: len(registry) == 16)
    assert isinstance(registry.get("t16", gate), NamedApp)


def test_a_hung_factory_is_given_up_and_tried_again(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    registry = make_registry(create_timeout=0.05, clock=clock)
    hangs_once = FirstCallWaits()
    built, release = hangs_once.built, hangs_once.release

    with pytest.raises(TenantCreationTimeout):
        registry.get("acme", hangs_once)
    clock.now += 0.06
    with pytest.raises(TenantBusy):
        registry.get("acme", hangs_once)  # within the bound: at once, not tried again
    assert len(built) == 1
    clock.now += 0.05 * 4
    # A later request starts a new attempt, logged with the tenant's name.
    assert registry.get("acme", hangs_once) is built[1]
    assert "tenant 'acme'" in caplog.text
    release.set()  # the hung call returns at last: its app is not kept
    wait_for(lambda: registry.stats().creations == 2)
    assert registry.get("acme", hangs_once) is built[1]


def test_hung_factories_past_the_set_aside_bound_are_logged_once_each(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # With max_creating given-up factories still hanging, another one cannot
    # be given up: its thread is needed, and the log says so, once.
    clock = FakeClock()
    registry = make_registry(create_timeout=0.05, max_creating=1, clock=clock)
    factory = Peak(registry, ("acme",))
    try:
        with pytest.raises(TenantCreationTimeout):
            registry.get("acme", factory)
        clock.now += 1.0
        with pytest.raises(TenantCreationTimeout):
            registry.get("acme", factory)  # given up; the new attempt hangs too
        assert "giving up on it" in caplog.text
        clock.now += 1.0
        for _ in range(3):
            with pytest.raises(TenantBusy, match=r"its creation has run for 1\.0 s"):
                registry.get("acme", factory)
        assert caplog.text.count("given-up factories still hold their creation threads") == 1
        assert "tenant 'acme' has run for 1.0 s, but 1 given-up factories" in caplog.text
        with pytest.raises(TenantCreationTimeout):
            registry.get("other", factory)  # in line: no thread is free
    finally:
        factory.gates["acme"].set()
    wait_for(lambda: registry.stats().creations == 3)


def test_evict_during_creation_serves_but_does_not_keep() -> None:
    events = Events()
    registry = make_registry(events)
    gate = Gate()
    result: list[object] = []
    creator = threading.Thread(target=lambda: result.append(registry.get("acme", gate)))
    creator.start()
    assert gate.entered.wait(10)
    registry.evict("acme")
    gate.release.set()
    creator.join(10)
    assert isinstance(result[0], NamedApp)
    assert len(registry) == 0
    assert events.created == ["acme"] and events.evicted == [("acme", "evict")]


def test_stale_miss_not_kept_after_evict() -> None:
    registry = make_registry()
    started, release = threading.Event(), threading.Event()
    known: set[str] = set()

    def lookup(name: str) -> WSGIApplication | None:
        exists = name in known  # read before the signup commits
        started.set()
        assert release.wait(10)
        return NamedApp(name) if exists else None

    creator = threading.Thread(target=registry.get, args=("acme", lookup))
    creator.start()
    assert started.wait(10)
    known.add("acme")
    registry.evict("acme")  # the signup
    release.set()
    creator.join(10)
    assert registry.stats().misses == 0
    assert registry.get("acme", lookup) is not None


def test_waiting_counts_waiters() -> None:
    registry = make_registry()
    gate = Gate()
    threads = [threading.Thread(target=registry.get, args=("acme", gate)) for _ in range(3)]
    for thread in threads:
        thread.start()
    assert gate.entered.wait(10)
    wait_for(lambda: registry.waiting("acme") == 3)
    assert registry.waiting("other") == 0
    gate.release.set()
    for thread in threads:
        thread.join(10)
    assert registry.waiting("acme") == 0


def test_invalid_capacity() -> None:
    with pytest.raises(ValueError, match="max_instances"):
        TenantRegistry(max_instances=0)


def test_repr() -> None:
    assert repr(TenantRegistry(max_instances=7)) == "<TenantRegistry 0/7 held>"


def test_past_max_waiting_requests_wait_only_in_a_creations_first_moments() -> None:
    clock = FakeClock()
    registry = make_registry(max_waiting=1, create_timeout=30, clock=clock)
    gate = Gate()
    first = threading.Thread(target=get_quietly, args=(registry, "acme", gate))
    first.start()
    wait_for(lambda: registry.waiting("acme") == 1)
    clock.now += 0.6  # past OVERFLOW_WAIT into the creation
    start = time.monotonic()
    with pytest.raises(TenantBusy, match="1 requests already wait"):
        registry.get("acme", gate)
    assert time.monotonic() - start < 0.4  # answered at once, thread given back
    gate.release.set()
    first.join(10)


def test_hits_race_evictions_iterations_and_expiry() -> None:
    # Hits move their app in the use order while another thread goes over
    # that order (iterating, evicting, expiring): none of them may fail.
    clock = FakeClock()
    registry = make_registry(max_instances=500, max_age=1000.0, clock=clock)
    factory = RecordingFactory()
    hot = [f"t{i}" for i in range(400)]
    for name in hot:
        registry.get(name, factory)
    stop = threading.Event()
    errors: list[BaseException] = []

    def hit(i: int) -> None:
        rng = random.Random(i)
        while not stop.is_set():
            registry.get(rng.choice(hot), factory)

    def go_over() -> None:
        for i in range(300):
            list(registry)
            assert "nobody" not in registry
            registry.evict(f"nobody{i}")  # goes over every held app
            registry.expire()  # so does the max_age sweep

    def guarded(work: t.Callable[[], None]) -> None:
        try:
            work()
        except BaseException as e:  # collected, then asserted on
            errors.append(e)

    hitters = [threading.Thread(target=guarded, args=(lambda i=i: hit(i),)) for i in range(3)]
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)  # threads take turns often: races show up
    try:
        for thread in hitters:
            thread.start()
        guarded(go_over)
    finally:
        stop.set()
        for thread in hitters:
            thread.join(10)
        sys.setswitchinterval(interval)
    assert errors == []
    assert len(factory.calls) == len(hot)  # every hit was a hit


def test_a_request_after_evict_does_not_join_the_stale_creation() -> None:
    registry = make_registry(create_timeout=30)
    factory = FirstCallWaits()  # the first build began before the signup
    built, release = factory.built, factory.release

    first = threading.Thread(target=get_quietly, args=(registry, "acme", factory))
    first.start()
    wait_for(lambda: len(built) == 1)
    registry.evict("acme")  # e.g. a settings change while it is being built
    assert registry.get("acme", factory) is built[1]  # built afresh
    release.set()
    first.join(10)
    assert registry.get("acme", factory) is built[1]
    assert registry.stats().evictions == {"evict": 1}  # the stale one, dropped


def test_evicting_hung_creations_leaves_creation_threads_for_other_tenants() -> None:
    # "acme is stuck: evict it", twice, with two creation threads: each hung
    # creation is given up, so beta is still built, at once.
    hang = threading.Event()

    def factory(name: str) -> WSGIApplication:
        if name == "acme":
            hang.wait(30)
        return NamedApp(name)

    registry = make_registry(max_creating=2, create_timeout=0.3)
    try:
        for _ in range(2):
            with pytest.raises(TenantCreationTimeout):
                registry.get("acme", factory)
            registry.evict("acme")
        assert registry.get("beta", factory).name == "beta"
        # A third hung one cannot be given up (two are, the limit): acme is
        # busy until it ends, and other tenants are still built.
        with pytest.raises(TenantCreationTimeout):
            registry.get("acme", factory)
        registry.evict("acme")
        with pytest.raises(TenantBusy, match="evicted while it was being created"):
            registry.get("acme", factory)
        assert registry.get("gamma", factory).name == "gamma"
    finally:
        hang.set()
    wait_for(lambda: registry.stats().creations == 5)
    assert registry.get("acme", factory).name == "acme"  # built afresh
    assert registry.stats().creations == 6


def test_evicting_a_tenant_built_inside_another_factory_gives_up_nothing() -> None:
    # b is built inline, on a's creation thread, not by the creation threads:
    # evicting it must not be counted as giving up one of theirs, or later
    # hung creations could no longer be given up.
    registry = make_registry(max_creating=1, create_timeout=0.3)
    in_b, release = threading.Event(), threading.Event()
    hang = threading.Event()

    def factory(name: str) -> WSGIApplication:
        if name == "a":
            registry.get("b", factory)
        elif name == "b":
            in_b.set()
            assert release.wait(10)
        elif name == "c" and not hang.is_set():
            hang.wait(30)
        return NamedApp(name)

    first = threading.Thread(target=registry.get, args=("a", factory))
    first.start()
    assert in_b.wait(10)
    registry.evict("b")
    release.set()
    first.join(10)
    try:
        with pytest.raises(TenantCreationTimeout):
            registry.get("c", factory)
        registry.evict("c")  # given up: a new attempt at once
        with pytest.raises(TenantCreationTimeout):
            registry.get("c", factory)
    finally:
        hang.set()


class Peak:
    """A factory that records how many of its calls run at once; a name in
    ``gates`` waits for its event, one starting with ``slow`` sleeps."""

    def __init__(self, registry: TenantRegistry, gates: t.Iterable[str] = ()) -> None:
        self.registry = registry
        self.gates = {name: threading.Event() for name in gates}
        self.entered: set[str] = set()
        self.running: set[str] = set()
        self.peak = 0
        self._lock = threading.Lock()

    def __call__(self, name: str) -> WSGIApplication:
        with self._lock:
            self.entered.add(name)
            self.running.add(name)
            self.peak = max(self.peak, len(self.running))
        try:
            if name == "outer":  # asks for a tenant waiting in line
                assert self.gates[name].wait(10)
                self.registry.get("inner", self)
            elif name in self.gates:
                assert self.gates[name].wait(10)
            elif name.startswith("slow"):
                time.sleep(0.3)
            return NamedApp(name)
        finally:
            with self._lock:
                self.running.discard(name)


def requested(registry: TenantRegistry, factory: t.Any, *names: str) -> list[threading.Thread]:
    """A request for each of ``names``, each on a thread of its own, started."""
    threads = [threading.Thread(target=get_quietly, args=(registry, n, factory)) for n in names]
    for thread in threads:
        thread.start()
    return threads


def test_max_creating_holds_after_a_creation_was_given_up() -> None:
    # While a is set aside (evicted mid-creation) a second creation thread
    # serves b; once a ends, only one factory may run at a time again.
    registry = make_registry(max_creating=1, create_timeout=5)
    factory = Peak(registry, ("a", "c", "d"))
    (first,) = requested(registry, factory, "a")
    wait_for(lambda: "a" in factory.entered)
    registry.evict("a")
    assert registry.get("b", factory).name == "b"
    factory.gates["a"].set()
    first.join(10)
    wait_for(lambda: not factory.running)
    factory.peak = 0
    later = requested(registry, factory, "c", "d")
    wait_for(lambda: bool(factory.running))
    time.sleep(0.3)  # time for a second factory to start, were it allowed to
    assert factory.peak == 1
    for name in ("c", "d"):
        factory.gates[name].set()
    for thread in later:
        thread.join(10)
    assert registry.stats().creations == 4


def test_a_creation_run_inline_then_evicted_gives_up_no_thread() -> None:
    registry = make_registry(max_creating=2, create_timeout=5)
    factory = Peak(registry, ("outer", "blocker", "inner"))
    requests = requested(registry, factory, "outer", "blocker")
    wait_for(lambda: factory.entered == {"outer", "blocker"})
    (inner,) = requested(registry, factory, "inner")
    wait_for(lambda: registry.waiting("inner") == 1)  # in line behind both threads
    factory.gates["outer"].set()
    wait_for(lambda: "inner" in factory.entered)  # run by outer's factory, inline
    factory.gates["blocker"].set()
    requests[1].join(10)  # its thread then finds inner's job begun
    registry.evict("inner")
    factory.gates["inner"].set()
    for request in [requests[0], inner]:
        request.join(10)
    factory.peak = 0
    later = requested(registry, factory, "slow0", "slow1", "slow2")
    for request in later:
        request.join(10)
    assert factory.peak == 2  # max_creating


def test_a_request_stops_waiting_at_the_timeout_while_the_registry_is_busy() -> None:
    # Under load the registry's lock is often taken; a request whose wait
    # ended must not then queue for it.
    busy, holding, release = threading.Event(), threading.Event(), threading.Event()

    def clock() -> float:
        if busy.is_set() and not holding.is_set():
            holding.set()  # this caller holds the registry's lock until released
            assert release.wait(10)
        return 1000.0

    registry = make_registry(create_timeout=0.3, clock=clock)
    gate = Gate()
    waiter = threading.Thread(target=get_quietly, args=(registry, "acme", gate))
    waiter.start()
    assert gate.entered.wait(10)
    busy.set()
    other = threading.Thread(target=get_quietly, args=(registry, "other", RecordingFactory()))
    other.start()
    try:
        assert holding.wait(10)
        waiter.join(5)  # its 0.3 s wait is over long before
        assert not waiter.is_alive()
    finally:
        release.set()
        gate.release.set()
        other.join(10)
        waiter.join(10)


def test_a_creation_waiting_in_line_is_not_given_up() -> None:
    # Giving up a creation that never started frees no thread: another
    # would start beside the one still busy.
    registry = make_registry(max_creating=1, create_timeout=0.1)
    factory = Peak(registry, ("busy",))
    requests = requested(registry, factory, "busy", "next", "last")
    wait_for(lambda: registry.waiting("next") == registry.waiting("last") == 1)
    time.sleep(0.5)  # past four times the timeout, still in line
    for name in ("next", "last"):
        with pytest.raises(TenantBusy, match=r"its creation has waited \d+\.\d s in line"):
            registry.get(name, factory)
    factory.gates["busy"].set()
    for request in requests:
        request.join(10)
    wait_for(lambda: registry.stats().creations == 3)
    assert factory.peak == 1


def test_a_creation_that_waited_in_line_is_not_given_up_as_it_starts() -> None:
    # Its time in line is not its factory's: started at last, it gets four
    # times the timeout of its own before it is given up.
    registry = make_registry(max_creating=1, create_timeout=0.1)
    factory = Peak(registry, ("busy", "next"))
    calls: list[str] = []

    def counted(name: str) -> WSGIApplication:
        calls.append(name)
        return factory(name)

    requests = requested(registry, counted, "busy", "next")
    wait_for(lambda: registry.waiting("next") == 1)
    time.sleep(0.5)  # past four times the timeout, in line
    factory.gates["busy"].set()
    wait_for(lambda: "next" in factory.entered)
    # Neither given up nor refused at once: its factory has only just begun.
    with pytest.raises(TenantCreationTimeout):
        registry.get("next", counted)
    factory.gates["next"].set()
    for request in requests:
        request.join(10)
    wait_for(lambda: registry.stats().creations == 2)
    assert registry.get("next", counted) is not None
    assert calls == ["busy", "next"]


def test_evicting_a_hung_creation_frees_the_creations_in_line_behind_it() -> None:
    registry = make_registry(max_creating=1, create_timeout=0.3)
    hang = threading.Event()

    def factory(name: str) -> WSGIApplication:
        if name == "hung":
            hang.wait(30)
        return NamedApp(name)

    try:
        with pytest.raises(TenantCreationTimeout):
            registry.get("hung", factory)
        with pytest.raises(TenantCreationTimeout):
            registry.get("next", factory)  # in line behind it
        registry.evict("hung")
        wait_for(lambda: "next" in registry)  # its creation, in line, now runs
        assert registry.get("next", factory).name == "next"
    finally:
        hang.set()


def test_registries_dropped_leave_no_memory_behind() -> None:
    # One app per test is the usual test suite: each registry renews itself
    # in forked children, and must not be remembered for that once dropped.
    TenantRegistry()
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        for _ in range(2000):
            TenantRegistry()
        gc.collect()
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    # Only what flask_dispatch allocated: threads left by other tests (an
    # idle sweep, say) allocate meanwhile too.
    ours = [tracemalloc.Filter(True, f"*{os.sep}flask_dispatch{os.sep}*")]
    growth = after.filter_traces(ours).compare_to(before.filter_traces(ours), "filename")
    kept = sum(stat.size_diff for stat in growth)
    assert kept < 20_000, f"2,000 registries dropped kept {kept:,} bytes"


def test_a_forked_child_does_not_inherit_creations_under_way() -> None:
    parent = os.getpid()
    release = threading.Event()

    def factory(name: str) -> WSGIApplication:
        if os.getpid() == parent:
            assert release.wait(10)
        return NamedApp(name)

    registry = make_registry(create_timeout=5)
    first = threading.Thread(target=get_quietly, args=(registry, "acme", factory))
    first.start()
    wait_for(lambda: registry.waiting("acme") == 1)

    try:
        kind, seconds = in_forked_child(lambda: type(registry.get("acme", factory)).__name__)
    finally:
        release.set()
        first.join(10)
    assert kind == "NamedApp" and seconds < 1


def test_a_creation_in_line_when_its_tenant_is_evicted_is_kept() -> None:
    # It has not begun, so what it builds comes after the eviction: keeping
    # it spares a second factory call.
    events = Events()
    registry = make_registry(events, max_creating=1, create_timeout=5)
    factory = Peak(registry, ("a",))
    first, second = requested(registry, factory, "a", "b")
    wait_for(lambda: "a" in factory.entered and registry.waiting("b") == 1)
    registry.evict("b")
    factory.gates["a"].set()
    for thread in (first, second):
        thread.join(10)
    assert "b" in registry
    assert registry.get("b", factory).name == "b"
    assert events.created == ["a", "b"]


def test_a_factory_that_raises_tenant_busy_fails_as_a_factory_error() -> None:
    # A factory that looks up a busy tenant fails; that is not the registry
    # refusing to start the creation, so it is not told as such.
    registry = make_registry()

    def factory(name: str) -> WSGIApplication:
        raise TenantBusy("other", "its creation has run for 12 s")

    with pytest.raises(TenantFactoryError) as caught:
        registry.get("acme", factory)
    assert isinstance(caught.value.__cause__, TenantBusy)
    assert registry.stats().failures == 1
