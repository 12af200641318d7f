"""How long an eviction takes to reach every process through Redis.

``python -m benchmarks.redis_latency`` from a checkout, with ``redis-server``
on the PATH and ``pip install -e ".[redis]"``. Starts a redis-server on
loopback and forks 8 processes, each with an :class:`EvictionBus` whose
``on_evict`` reports when it was called; the parent publishes 200 evictions
one at a time and times "publish → all 8 received". Times are
``time.perf_counter()`` in each process: on Linux that is CLOCK_MONOTONIC,
one clock for every process. Goal: p99 ≤ 100 ms.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import tempfile
import time
import typing as t
from pathlib import Path

from flask_dispatch.redis_bus import EvictionBus
from tests.redis_server import missing, started

if t.TYPE_CHECKING:
    from multiprocessing.synchronize import Event

    Received = multiprocessing.Queue[tuple[int, str | None, float]]

GOAL_P99 = 0.100


def _listen(url: str, received: Received, done: Event) -> None:
    """A serving process: apply evictions (here: report them) until done."""

    def on_evict(name: str | None) -> None:
        received.put((os.getpid(), name, time.perf_counter()))

    bus = EvictionBus(url, "bench", on_evict)
    bus.ensure_started()
    done.wait(300)
    bus.close()


def _round(publisher: EvictionBus, received: Received, name: str, processes: int) -> float:
    """Publish ``name``; seconds until the last process had it."""
    start = time.perf_counter()
    publisher.publish(name)
    seen: dict[int, float] = {}
    while len(seen) < processes:
        pid, got, at = received.get(timeout=10)
        if got == name:
            seen[pid] = at
    return max(seen.values()) - start


def run(processes: int = 8, evictions: int = 200, warmup: int = 10) -> list[float]:
    """Seconds from publish to the last of ``processes`` receiving, per eviction."""
    context = multiprocessing.get_context("fork")
    with tempfile.TemporaryDirectory() as directory:
        server = started(Path(directory))
        received: Received = context.Queue()
        done = context.Event()
        children = [
            context.Process(target=_listen, args=(server.url, received, done))
            for _ in range(processes)
        ]
        publisher = None
        try:
            for child in children:
                child.start()
            publisher = EvictionBus(server.url, "bench", lambda name: None)
            publisher.ensure_started()
            # Until every child has connected and read once.
            for i in range(warmup):
                _round(publisher, received, f"warm-up {i}", processes)
            return [_round(publisher, received, f"t{i}", processes) for i in range(evictions)]
        finally:
            done.set()
            for child in children:
                child.join(10)
                if child.is_alive():
                    child.kill()
            if publisher is not None:
                publisher.close()
            received.close()
            server.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.redis_latency", description=__doc__)
    parser.add_argument("--processes", type=int, default=8)
    parser.add_argument("--evictions", type=int, default=200)
    args = parser.parse_args(argv)
    reason = missing()
    if reason is not None:
        parser.error(reason)
    latencies = run(args.processes, args.evictions)
    p50 = statistics.median(latencies)
    p99 = statistics.quantiles(latencies, n=100, method="inclusive")[98]
    print(
        f"publish → all {args.processes} processes received, {len(latencies)} evictions: "
        f"p50 {p50 * 1000:.2f} ms, p99 {p99 * 1000:.2f} ms, max {max(latencies) * 1000:.2f} ms"
    )
    met = p99 <= GOAL_P99
    print(f"goal p99 ≤ {GOAL_P99 * 1000:.0f} ms: {'met' if met else 'MISSED'}")
    return 0 if met else 1


if __name__ == "__main__":
    raise SystemExit(main())
