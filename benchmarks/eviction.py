"""What a creation costs when the registry is full: each one evicts one of
the least recently used tenants.

Timed one request at a time with ``time.perf_counter_ns`` through the host
app's ``wsgi_app`` (so a creation is what a request for a new tenant costs),
as a latency distribution, in two states:

steady
    Creations one after another at 10,000 held (after some to warm up).
after every held tenant was hit
    Before each timed creation, every held tenant gets one request, in a
    random order. If hits only mark a tenant as used and the eviction sorts
    that out later, this creation pays for all of them at once.

Garbage collection stays on: a creation allocates, and what a collection
costs is part of it.

A creation hands the factory to a creation thread and waits for it (so that
every request can stop waiting at ``DISPATCH_CREATE_TIMEOUT``). For
reference, the section also times that hand-off alone, in the same run: a
job put on a queue for an idle thread, which sets an event back, steady and
after the main thread has been busy as long as the hits took.
"""

from __future__ import annotations

import queue
import random
import statistics
import threading
import time
import typing as t

from . import mixes
from .common import HELD, dispatch_app, no_start_response, subdomain_environ, table

if t.TYPE_CHECKING:
    from _typeshed.wsgi import WSGIEnvironment

#: Random orders of the hits, cycled (a fresh shuffle every round would
#: only make the section slower).
ORDERS = 8


def _percentiles(nanoseconds: list[int]) -> tuple[float, float, float]:
    """p50, p99 and max, in seconds."""
    cuts = statistics.quantiles(nanoseconds, n=100, method="inclusive")
    return cuts[49] / 1e9, cuts[98] / 1e9, max(nanoseconds) / 1e9


class HandOff:
    """A bare hand-off to a waiting thread and back, as a creation makes
    one, with no registry and no factory."""

    def __init__(self) -> None:
        self.jobs: queue.SimpleQueue[threading.Event] = queue.SimpleQueue()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            self.jobs.get().set()

    def time(self) -> int:
        done = threading.Event()
        start = time.perf_counter_ns()
        self.jobs.put(done)
        done.wait()
        return time.perf_counter_ns() - start


def _busy(nanoseconds: int) -> None:
    """Keep this thread busy, as the hits do, without any request."""
    end = time.perf_counter_ns() + nanoseconds
    while time.perf_counter_ns() < end:
        pass


def run(creations: int) -> tuple[str, dict[str, float]]:
    """Time ``creations`` creations in each state."""
    app, dispatch, created, _ = dispatch_app()
    wsgi_app = app.wsgi_app
    start_response = no_start_response
    for name in mixes.held():
        wsgi_app(subdomain_environ(name), start_response)
    new_names = (f"new{i:05d}" for i in range(3 * creations + 1000))

    def create() -> int:
        name = next(new_names)
        environ = subdomain_environ(name)
        before = len(created)
        start = time.perf_counter_ns()
        wsgi_app(environ, start_response)
        took = time.perf_counter_ns() - start
        if len(created) != before + 1:
            raise RuntimeError(f"a request for new tenant {name!r} did not create it")
        return took

    hand_off = HandOff()
    for _ in range(1000):  # warm up
        create()
    steady, steady_hand_off = [], []
    for _ in range(creations):
        steady.append(create())
        steady_hand_off.append(hand_off.time())

    rng = random.Random(mixes.SEED)
    orders = [rng.sample(range(HELD), HELD) for _ in range(ORDERS)]
    environs: dict[str, WSGIEnvironment] = {}
    after_hits, idle_hand_off = [], []
    for round_ in range(creations):
        with app.app_context():
            held = list(dispatch.registry)  # the names held now
        hits_start = time.perf_counter_ns()
        for i in orders[round_ % ORDERS]:
            name = held[i]
            environ = environs.get(name) or environs.setdefault(name, subdomain_environ(name))
            wsgi_app(environ.copy(), start_response)
        hits_took = time.perf_counter_ns() - hits_start
        after_hits.append(create())
        if round_ % 4 == 0:
            _busy(hits_took)
            idle_hand_off.append(hand_off.time())
    if len(created) != HELD + 1000 + 2 * creations:
        raise RuntimeError("a request to a held tenant created it")

    rows = []
    figures: dict[str, float] = {}
    for label, key, each in (
        ("steady", "steady", steady),
        ("  its hand-off alone, for reference", "", steady_hand_off),
        ("after every held tenant was hit", "after hits", after_hits),
        ("  hand-off alone, after as long busy", "", idle_hand_off),
    ):
        p50, p99, most = _percentiles(each)
        if key:
            figures[f"creation p99 {key}"] = p99
        rows.append(
            (label, f"{len(each):,}", f"{p50 * 1e6:.1f}", f"{p99 * 1e6:.1f}", f"{most * 1e6:.1f}")
        )
    text = table(
        ["creation that evicts, 10,000 held", "creations", "p50 µs", "p99 µs", "max µs"], rows
    )
    return text, figures
