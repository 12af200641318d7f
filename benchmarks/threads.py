"""Throughput from several threads: the uniform subdomain mix through
dispatch, 10,000 tenants held, with 1, 4 and 16 threads.

Each thread cycles through its own list of environs (same distribution,
its own seed); every thread count serves the same total of requests, split
evenly. Under the GIL, threads cannot add throughput; what this shows is
what dispatch's locking loses when they contend.
"""

from __future__ import annotations

import gc
import itertools
import statistics
import threading
import time
import typing as t

from . import mixes
from .common import dispatch_app, no_start_response, subdomain_environ, table

if t.TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication, WSGIEnvironment

THREADS = (1, 4, 16)


def _throughput(app: WSGIApplication, lists: list[list[WSGIEnvironment]], total: int) -> float:
    """Requests per second of ``len(lists)`` threads serving ``total``
    requests together."""
    threads = len(lists)
    each = total // threads
    barrier = threading.Barrier(threads + 1)

    def worker(environs: list[WSGIEnvironment]) -> None:
        start_response = no_start_response
        requests = itertools.islice(itertools.cycle(environs), each)
        barrier.wait()
        for environ in requests:
            app(environ.copy(), start_response)

    workers = [threading.Thread(target=worker, args=(environs,)) for environs in lists]
    for w in workers:
        w.start()
    gc.collect()
    barrier.wait()
    start = time.perf_counter()
    for w in workers:
        w.join()
    return threads * each / (time.perf_counter() - start)


def run(total: int, rounds: int) -> tuple[str, dict[str, float]]:
    """``rounds`` rounds, each timing every thread count in turn (so a slow
    spell of the machine is shared); each figure is the median over rounds."""
    app, _, _, _ = dispatch_app()
    for name in mixes.held():
        app.wsgi_app(subdomain_environ(name), no_start_response)
    lists = [
        [subdomain_environ(n) for n in mixes.mix("uniform", seed=mixes.SEED + i)]
        for i in range(max(THREADS))
    ]
    rps: dict[int, list[float]] = {n: [] for n in THREADS}
    for _ in range(rounds):
        for n in THREADS:
            rps[n].append(_throughput(app.wsgi_app, lists[:n], total))
    median = {n: statistics.median(rps[n]) for n in THREADS}
    rows = [
        (
            n,
            f"{median[n]:,.0f}",
            " ".join(f"{r:,.0f}" for r in rps[n]),
            f"{median[n] / median[1]:.2f}",
        )
        for n in THREADS
    ]
    headers = ["threads", "req/s (median)", "each round", "÷ 1 thread"]
    text = table(headers, rows) + f"\n{total:,} requests per measurement, {rounds} rounds"
    return text, {"threads 16 ÷ 1": median[16] / median[1]}
