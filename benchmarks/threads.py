"""Throughput from several threads: the uniform subdomain mix through
dispatch, 10,000 tenants held, with 1, 4 and 16 threads.

Every thread serves the same list of environs, each from its own starting
point, and every thread count serves the same total of requests, split
evenly. So more threads spread requests over the same tenants, and the
environs the benchmark holds stay the same: given one list of 16,384 each,
16 threads would hold 16 times as many, and the direct call would lose more
to that than dispatch. Under the GIL, threads cannot add throughput; what
this shows is what dispatch's locking loses when they contend. The direct
call of the tenant is timed the same way in the same rounds, as a control:
what it loses, the interpreter and the machine lose.
"""

from __future__ import annotations

import gc
import itertools
import statistics
import threading
import time
import typing as t

from . import mixes
from .common import dispatch_app, leaf, no_start_response, subdomain_environ, table

if t.TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication, WSGIEnvironment

THREADS = (1, 4, 16)


def _throughput(
    app: WSGIApplication, environs: list[WSGIEnvironment], threads: int, total: int
) -> float:
    """Requests per second of ``threads`` threads serving ``total`` requests
    together, each cycling through ``environs`` from its own starting point."""
    each = total // threads
    barrier = threading.Barrier(threads + 1)

    def worker(start: int) -> None:
        start_response = no_start_response
        cycle = itertools.cycle(environs[start:] + environs[:start])
        requests = itertools.islice(cycle, each)
        barrier.wait()
        for environ in requests:
            app(environ.copy(), start_response)

    step = len(environs) // threads
    workers = [threading.Thread(target=worker, args=(i * step,)) for i in range(threads)]
    for w in workers:
        w.start()
    gc.collect()
    barrier.wait()
    start = time.perf_counter()
    for w in workers:
        w.join()
    return threads * each / (time.perf_counter() - start)


def run(total: int, rounds: int) -> tuple[str, dict[str, float]]:
    """``rounds`` rounds, each timing every thread count in turn, through
    dispatch and direct (so a slow spell of the machine is shared); each
    figure is the median over rounds."""
    app, _, _, _ = dispatch_app()
    for name in mixes.held():
        app.wsgi_app(subdomain_environ(name), no_start_response)
    environs = [subdomain_environ(n) for n in mixes.mix("uniform")]
    served = {"dispatch": app.wsgi_app, "direct call": leaf}
    rps: dict[tuple[str, int], list[float]] = {}
    for _ in range(rounds):
        for label, wsgi_app in served.items():
            for n in THREADS:
                rps.setdefault((label, n), []).append(_throughput(wsgi_app, environs, n, total))
    median = {key: statistics.median(each) for key, each in rps.items()}
    rows = [
        (
            label,
            n,
            f"{median[label, n]:,.0f}",
            " ".join(f"{r:,.0f}" for r in rps[label, n]),
            f"{median[label, n] / median[label, 1]:.2f}",
        )
        for label in served
        for n in THREADS
    ]
    headers = ["served", "threads", "req/s (median)", "each round", "÷ 1 thread"]
    text = table(headers, rows) + f"\n{total:,} requests per measurement, {rounds} rounds"
    return text, {"threads 16 ÷ 1": median["dispatch", 16] / median["dispatch", 1]}
