"""End to end: requests per second under gunicorn, loaded by wrk, through
dispatch vs the same Flask tenant app served directly.

Both targets are in :mod:`benchmarks.serve`. Each runs under its own,
identical gunicorn: one ``gthread`` worker with one thread (it keeps wrk's
connections alive, where ``sync`` closes each), on a loopback port the kernel
picks. The worker and wrk (one thread, 8 connections) each have a core of a
2-core machine. wrk sends the same requests to both: Host headers spread
uniformly over 1,000 tenants by :file:`hosts.lua`, every tenant created
beforehand. Both servers stay up and are loaded in turn, the order swapped
each round, and each round's ratio is taken between its two loads, so a slow
spell of the machine hits both sides of it.
"""

from __future__ import annotations

import contextlib
import http.client
import re
import shutil
import statistics
import subprocess
import typing as t
from pathlib import Path

from tests import servers

from .common import table
from .serve import TENANTS

if t.TYPE_CHECKING:
    from collections.abc import Iterator

LUA = Path(__file__).with_name("hosts.lua")
_RPS = re.compile(r"Requests/sec:\s+([0-9.]+)")
CONNECTIONS = 8


def missing() -> str | None:
    """Why this section cannot run here, or ``None``."""
    if shutil.which("wrk") is None:
        return "wrk is not installed ('apt-get install wrk' on Debian)"
    try:
        import gunicorn  # noqa: F401
    except ImportError:
        return "gunicorn is not installed ('pip install -e \".[bench]\"')"
    return None


@contextlib.contextmanager
def gunicorn(target: str) -> Iterator[int]:
    """Serve ``target`` on 127.0.0.1 with one gthread worker and one thread;
    yields the port once the worker answers."""
    with servers.gunicorn(target, threads=1) as server:
        _get(server.port, "t0000.localhost")  # the app is loaded by now
        yield server.port


def _get(port: int, host: str, connection: http.client.HTTPConnection | None = None) -> None:
    connection = connection or http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    connection.request("GET", "/notes/17", headers={"Host": host})
    response = connection.getresponse()
    body = response.read()
    if response.status != 200:
        raise RuntimeError(f"GET http://{host}/notes/17: {response.status} {body[:200]!r}")


def _warm(port: int) -> None:
    """A request for every tenant: all created before the load."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        for i in range(TENANTS):
            _get(port, f"t{i:04d}.localhost", connection)
    finally:
        connection.close()


def _wrk(port: int, seconds: int, seed: int) -> float:
    done = subprocess.run(
        [
            "wrk",
            "-t1",
            f"-c{CONNECTIONS}",
            f"-d{seconds}s",
            "-s",
            str(LUA),
            f"http://127.0.0.1:{port}/",
            "--",
            str(TENANTS),
            str(seed),
        ],
        capture_output=True,
        text=True,
        timeout=seconds + 30,
        check=True,
    )
    match = _RPS.search(done.stdout)
    if match is None or "Non-2xx" in done.stdout or "Socket errors" in done.stdout:
        raise RuntimeError(f"wrk failed:\n{done.stdout}{done.stderr}")
    return float(match.group(1))


def run(seconds: int, rounds: int) -> tuple[str, dict[str, float]]:
    with (
        gunicorn("benchmarks.serve:dispatched()") as through,
        gunicorn("benchmarks.serve:recipe()") as recipe,
        gunicorn("benchmarks.serve:direct()") as direct,
    ):
        ports = {
            "through dispatch": through,
            "recipe SubdomainDispatcher": recipe,
            "direct": direct,
        }
        for port in ports.values():
            _warm(port)
            _wrk(port, 2, 0)  # warm up under load
        rps: dict[str, list[float]] = {name: [] for name in ports}
        for i in range(rounds):
            for name in sorted(ports, reverse=i % 2 == 1):
                rps[name].append(_wrk(ports[name], seconds, i + 1))
    rows: list[tuple[str, str, str]] = [
        (name, f"{statistics.median(each):,.0f}", " ".join(f"{r:,.0f}" for r in each))
        for name, each in rps.items()
    ]
    medians = {}
    for mine, its in (
        ("through dispatch", "direct"),
        ("recipe SubdomainDispatcher", "direct"),
        ("through dispatch", "recipe SubdomainDispatcher"),
    ):
        ratios = [a / b for a, b in zip(rps[mine], rps[its], strict=True)]
        medians[(mine, its)] = statistics.median(ratios)
        rows.append(
            (f"{mine} ÷ {its}", f"{medians[(mine, its)]:.3f}", " ".join(f"{r:.3f}" for r in ratios))
        )
    ratio = medians[("through dispatch", "direct")]
    title = (
        f"gunicorn 1 gthread worker × 1 thread; wrk -t1 -c{CONNECTIONS}, "
        f"{rounds} rounds of {seconds} s"
    )
    return table([title, "req/s (median)", "each round"], rows), {"server ratio": ratio}
