"""Load on a slow tenant under gunicorn on loopback, and what everyone saw.

:func:`run` serves ``tests/slow_app.py`` with gunicorn, sends requests to
tenant ``slow`` (whose factory sleeps or hangs) while it probes tenants
``acme`` and ``globex`` on a fixed schedule, and returns every answer with
its timing. ``tests/test_slow_tenants.py`` asserts on the result;
``benchmarks/slow_tenant.py`` prints it, for this checkout and an older one.
"""

from __future__ import annotations

import http.client
import json
import os
import threading
import time
import typing as t
from dataclasses import dataclass, field

from .servers import gunicorn

#: The directory of ``slow_app.py``, put on gunicorn's ``--pythonpath``.
TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
#: Seconds between probes of each other tenant.
PROBE_EVERY = 0.25
OTHERS = ("acme", "globex")


@dataclass(frozen=True)
class Scenario:
    """One load case.

    :param id: short name.
    :param workers: gunicorn workers.
    :param threads: threads per gthread worker; ``0`` for sync workers.
    :param slow_requests: requests sent to ``slow`` together.
    :param mode: ``SLOW_MODE`` of the app: ``sleep``, ``hang``, ``hang-once``.
    :param stagger: seconds between the starts of the slow requests.
    :param retry_for: seconds each slow client keeps asking again after any
        answer but a 200; ``0`` asks once.
    :param create_timeout: ``DISPATCH_CREATE_TIMEOUT``.
    :param max_waiting: ``DISPATCH_MAX_WAITING``, or the default.
    :param window: seconds of probing, at least; it goes on until every slow
        client has its answer.
    :param worker_timeout: gunicorn's ``--timeout``.
    :param sleep: seconds the factory of ``slow`` sleeps in ``sleep`` mode.
    :param client_timeout: seconds a client waits for an answer.
    """

    id: str
    workers: int
    threads: int
    slow_requests: int
    mode: str = "sleep"
    stagger: float = 0.0
    retry_for: float = 0.0
    create_timeout: float = 2.0
    max_waiting: int | None = None
    window: float = 3.0
    worker_timeout: int = 10
    sleep: float = 40.0
    client_timeout: float = 30.0

    @property
    def server(self) -> str:
        if self.threads:
            return f"gthread -w {self.workers} --threads {self.threads}"
        return f"sync -w {self.workers}"


@dataclass(frozen=True)
class Seen:
    """One answer: ``status`` is ``None`` when none came (``error`` says why);
    ``start`` and ``end`` are seconds since the load began."""

    tenant: str
    status: int | None
    retry_after: str | None
    body: bytes
    start: float
    end: float
    error: str = ""

    @property
    def seconds(self) -> float:
        return self.end - self.start


@dataclass
class Result:
    scenario: Scenario
    slow: list[Seen] = field(default_factory=list)
    probes: list[Seen] = field(default_factory=list)
    log: list[str] = field(default_factory=list)
    before: dict[str, t.Any] = field(default_factory=dict)
    after: dict[str, t.Any] | None = None

    def probe_seconds(self, started_before: float = float("inf")) -> list[float]:
        """The probes' times, sorted; only those started before
        ``started_before`` seconds if given."""
        return sorted(p.seconds for p in self.probes if p.start < started_before)

    def percentile(self, q: float, started_before: float = float("inf")) -> float:
        """The ``q`` quantile (0 to 1) of the probes' times, nearest rank."""
        times = self.probe_seconds(started_before)
        return times[min(len(times) - 1, max(0, round(q * len(times) + 0.5) - 1))]

    def failed_probes(self) -> list[Seen]:
        return [p for p in self.probes if p.status != 200]

    def worker_timeouts(self) -> int:
        return sum("WORKER TIMEOUT" in line for line in self.log)

    def first_ok(self) -> Seen | None:
        """The first 200 the slow tenant gave."""
        oks = [s for s in self.slow if s.status == 200]
        return min(oks, key=lambda s: s.end) if oks else None

    def summary(self) -> str:
        slow = ", ".join(f"{s.status or s.error} {s.seconds:.2f}s" for s in self.slow)
        return (
            f"{self.scenario.id} ({self.scenario.server}): probes p50 "
            f"{self.percentile(0.5) * 1000:.0f} ms, p99 {self.percentile(0.99) * 1000:.0f} ms,"
            f" max {max(self.probe_seconds()) * 1000:.0f} ms over {len(self.probes)};"
            f" slow: {slow}"
        )


def fetch(port: int, tenant: str, path: str = "/", timeout: float = 30.0, t0: float = 0.0) -> Seen:
    """GET ``path`` from ``tenant``, or from the host app for ``""``; times
    are seconds since ``t0``."""
    host = f"{tenant}.example.com" if tenant else "example.com"
    start = time.monotonic() - t0
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("GET", path, headers={"Host": host, "Connection": "close"})
        response = connection.getresponse()
        body = response.read()
        status, retry_after = response.status, response.getheader("Retry-After")
    except (OSError, http.client.HTTPException) as e:
        return Seen(tenant, None, None, b"", start, time.monotonic() - t0, type(e).__name__)
    finally:
        connection.close()
    return Seen(tenant, status, retry_after, body, start, time.monotonic() - t0)


def debug(port: int) -> dict[str, t.Any] | None:
    """The worker's ``/_debug`` answer, or ``None`` if it gives none."""
    seen = fetch(port, "", "/_debug", timeout=10)
    return json.loads(seen.body) if seen.status == 200 else None


def run(scenario: Scenario, tree: str | None = None) -> Result:
    """Serve the slow app as ``scenario`` says and load it.

    :param tree: a checkout whose ``flask_dispatch`` the server imports (its
        ``--chdir``); by default whichever this interpreter finds.
    """
    env = {
        "SLOW_MODE": scenario.mode,
        "SLOW_SECONDS": str(scenario.sleep),
        "SLOW_CREATE_TIMEOUT": str(scenario.create_timeout),
    }
    if scenario.max_waiting is not None:
        env["SLOW_MAX_WAITING"] = str(scenario.max_waiting)
    extra = ["--timeout", str(scenario.worker_timeout), "--pythonpath", TESTS_DIR]
    if not scenario.threads:
        extra += ["--worker-class", "sync"]
    if tree is not None:
        extra += ["--chdir", tree]
    with gunicorn(
        "slow_app:create()",
        env,
        workers=scenario.workers,
        threads=max(1, scenario.threads),
        extra_args=extra,
    ) as server:
        result = Result(scenario, log=server.log)
        port = server.port
        # The others are created before the load: probes time serving, not creating.
        for _ in range(scenario.workers * 2):
            for name in OTHERS:
                fetch(port, name)
        result.before = debug(port) or {}
        _load(port, scenario, result)
        result.after = debug(port)
    return result


def _load(port: int, scenario: Scenario, result: Result) -> None:
    t0 = time.monotonic()
    lock = threading.Lock()

    def slow_client(delay: float) -> None:
        time.sleep(delay)  # the schedule itself, not synchronisation
        while True:
            seen = fetch(port, "slow", timeout=scenario.client_timeout, t0=t0)
            with lock:
                result.slow.append(seen)
            if seen.status == 200 or seen.end >= scenario.retry_for:
                return

    def probe(name: str) -> None:
        seen = fetch(port, name, timeout=scenario.client_timeout, t0=t0)
        with lock:
            result.probes.append(seen)

    clients = [
        threading.Thread(target=slow_client, args=(i * scenario.stagger,), daemon=True)
        for i in range(scenario.slow_requests)
    ]
    for client in clients:
        client.start()
    probes: list[threading.Thread] = []
    tick = 0
    while time.monotonic() - t0 < scenario.window or any(c.is_alive() for c in clients):
        for name in OTHERS:
            probes.append(threading.Thread(target=probe, args=(name,), daemon=True))
            probes[-1].start()
        tick += 1
        # Fire on a fixed schedule, however long earlier probes take.
        time.sleep(max(0.0, t0 + tick * PROBE_EVERY - time.monotonic()))
    for thread in [*clients, *probes]:
        thread.join(scenario.client_timeout + 5)
