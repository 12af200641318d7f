"""A slow or hung factory delays its own tenant only: gunicorn on loopback
serving ``tests/slow_app.py``, whose tenant ``slow`` takes 40 s (or
forever) to create while ``acme`` and ``globex`` are probed every 0.25 s.
``DISPATCH_CREATE_TIMEOUT`` is 2 s, so every case takes a few seconds."""

from __future__ import annotations

import threading
import typing as t

import pytest

from flask_dispatch import TenantRegistry, TenantUnavailable
from flask_dispatch.registry import OVERFLOW_WAIT

from .conftest import NamedApp
from .load import Result, Scenario, run

if t.TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication

TIMEOUT = 2.0
#: Allowance for starting threads and scheduling on a loaded machine.
SLACK = 1.0
#: What a probe of another tenant may take while ``slow`` is being created:
#: a tenth of the factory's 40 s, which a serialised dispatch never meets.
FAST = 1.0

server = pytest.mark.server


def report(result: Result, record_property: t.Callable[[str, object], None]) -> str:
    """Record the probes' figures (they land in JUnit XML) and return them."""
    record_property("probe_p50_ms", round(result.percentile(0.5) * 1000))
    record_property("probe_p99_ms", round(result.percentile(0.99) * 1000))
    record_property("probe_max_ms", round(max(result.probe_seconds()) * 1000))
    return result.summary()


def assert_site_503(result: Result, within: float) -> None:
    """Every slow client got the host app's 503 page with ``Retry-After``,
    within ``within`` seconds."""
    summary = result.summary()
    for seen in result.slow:
        assert (seen.status, seen.retry_after, seen.body) == (503, "2", b"site 503 page"), summary
        assert seen.seconds <= within, summary


def assert_no_worker_killed(result: Result) -> None:
    log = "".join(result.log)
    assert result.worker_timeouts() == 0, log
    assert log.count("Booting worker") == result.scenario.workers, log


@server
@pytest.mark.parametrize(
    "max_waiting",
    [
        pytest.param(None, id="default-max-waiting"),
        pytest.param(2, id="max-waiting-2"),
    ],
)
def test_gthread_others_stay_fast(
    max_waiting: int | None, record_property: t.Callable[[str, object], None]
) -> None:
    result = run(Scenario("gthread", 1, 8, 8, max_waiting=max_waiting))
    summary = report(result, record_property)
    assert not result.failed_probes(), summary
    assert max(result.probe_seconds()) < FAST, summary
    assert_site_503(result, within=TIMEOUT + SLACK)
    # Each slow client waited the timeout, or was turned away at once.
    assert all(s.seconds >= TIMEOUT - 0.1 or s.seconds < FAST for s in result.slow), summary
    assert_no_worker_killed(result)


@server
def test_sync_workers_answer_503_themselves(
    record_property: t.Callable[[str, object], None],
) -> None:
    """Four sync workers, eight requests for ``slow``, gunicorn's timeout at
    10 s: each worker answers 503 itself after 2 s rather than being killed
    while the factory runs 40 s."""
    result = run(Scenario("sync-4", 4, 0, 8, window=5))
    summary = report(result, record_property)
    assert_no_worker_killed(result)
    # A sync worker serves one request at a time: the second slow request in
    # a worker, and any probe queued behind one, waits for the first.
    assert_site_503(result, within=2 * TIMEOUT + SLACK)
    assert not result.failed_probes(), summary
    assert max(result.probe_seconds()) <= 2 * TIMEOUT + SLACK, summary
    # Once the slow requests are answered, the others are served at once.
    last_503 = max(s.end for s in result.slow)
    later = [p for p in result.probes if p.start > last_503]
    assert later, summary
    assert all(p.seconds < FAST for p in later), summary


@server
def test_one_sync_worker_serves_others_between_slow_requests(
    record_property: t.Callable[[str, object], None],
) -> None:
    result = run(Scenario("sync-1", 1, 0, 2, stagger=0.6, window=5))
    summary = report(result, record_property)
    assert_no_worker_killed(result)
    first, second = sorted(result.slow, key=lambda s: s.start)
    assert_site_503(result, within=2 * TIMEOUT + SLACK)
    assert first.seconds <= TIMEOUT + SLACK, summary
    assert not result.failed_probes(), summary
    assert any(first.end <= p.end <= second.end for p in result.probes), summary


@server
def test_hung_factory_is_given_up_and_tried_again(
    record_property: t.Callable[[str, object], None],
) -> None:
    """The first call of the factory of ``slow`` never returns. After four
    times the timeout a request starts a new attempt, logged with the
    tenant's name, and ``slow`` is served; meanwhile it answers 503."""
    give_up = 4 * TIMEOUT
    result = run(Scenario("hang-once", 1, 8, 1, mode="hang-once", retry_for=give_up + 4 * TIMEOUT))
    summary = report(result, record_property)
    ok = result.first_ok()
    assert ok is not None, summary
    assert give_up <= ok.end <= give_up + TIMEOUT + SLACK, summary
    assert all(s.status == 503 and s.retry_after == "2" for s in result.slow if s is not ok)
    assert any("giving up" in line and "'slow'" in line for line in result.log), result.log
    assert result.after is not None
    assert result.after["calls"]["slow"] == 2
    # Threads other than gunicorn's pool: the hung creation and the new one.
    before, after = (
        [n for n in d["threads"] if not n.startswith("ThreadPoolExecutor")]
        for d in (result.before, result.after)
    )
    assert len(after) <= len(before) + 2, (before, after)
    assert not result.failed_probes(), summary
    assert max(result.probe_seconds()) < FAST, summary


@server
def test_beyond_max_waiting_503_at_once(record_property: t.Callable[[str, object], None]) -> None:
    """20 requests for ``slow`` on 24 threads: 4 (DISPATCH_MAX_WAITING)
    wait for the timeout, the other 16 get a 503 after at most
    ``OVERFLOW_WAIT`` (0.5 s)."""
    result = run(Scenario("max-waiting", 1, 24, 20))
    summary = report(result, record_property)
    assert_site_503(result, within=TIMEOUT + SLACK)
    at_once = [s for s in result.slow if s.seconds < OVERFLOW_WAIT + 0.3]
    waited = [s for s in result.slow if s.seconds >= TIMEOUT - 0.1]
    assert (len(at_once), len(waited)) == (16, 4), summary
    assert not result.failed_probes(), summary
    assert max(result.probe_seconds()) < FAST, summary


def test_hung_factory_does_not_take_every_creation_thread() -> None:
    never = threading.Event()
    now = [0.0]

    def factory(name: str) -> WSGIApplication:
        if name == "hung":
            never.wait()
        return NamedApp(name)

    registry = TenantRegistry(create_timeout=0.05, max_creating=2, clock=lambda: now[0])
    try:
        # Each request past the give-up bound starts another attempt.
        for _ in range(3):
            with pytest.raises(TenantUnavailable):
                registry.get("hung", factory)
            now[0] += 1.0
        app = registry.get("fresh", factory)
        assert isinstance(app, NamedApp)
    finally:
        never.set()
