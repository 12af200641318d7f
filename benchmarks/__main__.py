"""Run the benchmarks and check the performance budget.

``python -m benchmarks`` (or ``tox -e bench``) from a checkout, after
``pip install -e ".[bench]"``. ``--quick`` runs a short version; ``--only
hot,eviction,threads,server`` picks sections. The hot path is timed by
pyperf, whose options work too (``python -m benchmarks --help``); e.g.
``-o hot.json`` keeps its results for ``python -m pyperf compare_to``.

The sections, each in its own module: :mod:`~benchmarks.hotpath`,
:mod:`~benchmarks.eviction`, :mod:`~benchmarks.threads`,
:mod:`~benchmarks.server`. The exit status is 1 if a budget line fails.
"""

from __future__ import annotations

import sys
import typing as t
from dataclasses import dataclass

# pyperf has no type hints, and the typing env (CI's) does not install it.
import pyperf  # type: ignore[import-untyped,import-not-found,unused-ignore]

from . import eviction, hotpath, mixes, server, threads
from .common import machine, table

SECTIONS = ("hot", "eviction", "threads", "server")


@dataclass(frozen=True)
class Effort:
    """How long each section runs."""

    #: pyperf worker processes per hot-path benchmark (3 values each).
    processes: int
    #: Timed creations in each state of the eviction section.
    creations: int
    #: Requests per measurement, and rounds, in the threads section.
    thread_requests: int
    thread_rounds: int
    #: Seconds per load, and rounds, in the server section.
    server_seconds: int
    server_rounds: int


FULL = Effort(
    processes=12,
    creations=2_000,
    thread_requests=320_000,
    thread_rounds=5,
    server_seconds=4,
    server_rounds=8,
)
QUICK = Effort(
    processes=3,
    creations=300,
    thread_requests=64_000,
    thread_rounds=2,
    server_seconds=2,
    server_rounds=2,
)


def main() -> int:
    runner = pyperf.Runner(processes=FULL.processes, program_args=("-m", "benchmarks"))
    parser = runner.argparser
    parser.prog = "python -m benchmarks"
    parser.description = __doc__.split("\n\n")[0] if __doc__ else None
    parser.add_argument("--quick", action="store_true", help="a short run")
    parser.add_argument("--only", default=",".join(SECTIONS), help="comma-separated sections")
    args = runner.parse_args()
    if args.worker:
        # A pyperf worker, started by the run below for one benchmark.
        hotpath.run(runner)
        return 0
    only = set(args.only.split(","))
    if not only <= set(SECTIONS):
        parser.error(f"unknown sections {sorted(only - set(SECTIONS))}; pick from {SECTIONS}")
    effort = QUICK if args.quick else FULL
    if args.processes == parser.get_default("processes"):
        args.processes = effort.processes

    print(f"flask_dispatch benchmarks · {machine()}")
    print(f"command: python -m benchmarks {' '.join(sys.argv[1:])}".rstrip())
    figures: dict[str, float] = {}

    if "hot" in only:
        print(f"\n1. Hot path, raw WSGI tenants\n{mixes.describe()}")
        print(
            f"pyperf: {args.processes} processes × {args.values} values per benchmark;"
            " mean ± standard deviation\n"
        )
        text, found = hotpath.report(hotpath.run(runner))
        print("\nOverhead per request over calling the tenant directly\n" + text)
        figures.update(found)
    if "eviction" in only:
        text, found = eviction.run(effort.creations)
        print("\n2. A creation in a full registry (subdomain tenants)\n" + text)
        figures.update(found)
    if "threads" in only:
        text, found = threads.run(effort.thread_requests, effort.thread_rounds)
        print("\n3. Threads: uniform subdomain mix through dispatch, 10,000 held\n" + text)
        figures.update(found)
    if "server" in only:
        print("\n4. End to end: gunicorn + wrk, Flask tenant apps, 1,000 tenants")
        reason = server.missing()
        if reason is None:
            text, found = server.run(effort.server_seconds, effort.server_rounds)
            print(text)
            figures.update(found)
        else:
            print(f"skipped: {reason}")

    rows = budget(figures)
    print("\nBudget\n" + table(["check", "measured", "limit", "result"], rows))
    return 1 if any(row[3] == "FAIL" for row in rows) else 0


def budget(f: dict[str, float]) -> list[tuple[str, str, str, str]]:
    """One row per check: what, measured, limit, PASS/FAIL (``-`` when its
    section did not run)."""
    rows: list[tuple[str, str, str, str]] = []

    def line(
        name: str,
        value: float | None,
        limit: float | None,
        show: t.Callable[[float], str],
        at_least: bool = False,
    ) -> None:
        sign = "≥" if at_least else "≤"
        if value is None or limit is None:
            rows.append((name, "not run", "" if limit is None else f"{sign} {show(limit)}", "-"))
            return
        ok = value >= limit if at_least else value <= limit
        rows.append((name, show(value), f"{sign} {show(limit)}", "PASS" if ok else "FAIL"))

    def us(seconds: float) -> str:
        return f"{seconds * 1e6:.3f} µs"

    def ms(seconds: float) -> str:
        return f"{seconds * 1e3:.3f} ms"

    def ratio(value: float) -> str:
        return f"{value:.3f}"

    for mix in mixes.MIXES:
        for ours, reference in hotpath.REFERENCES.items():
            mine = hotpath.bench_name(ours, mix)
            line(
                f"{mine} overhead ≤ {reference}'s",
                f.get(mine),
                f.get(hotpath.bench_name(reference, mix)),
                us,
            )
    for kind in ("subdomain", "path"):
        uniform, ten = (
            f.get(hotpath.bench_name(f"flask_dispatch {kind}", m)) for m in ("uniform", "10")
        )
        scaling = uniform / ten if uniform is not None and ten is not None else None
        line(f"flask_dispatch {kind} overhead, uniform ÷ 10", scaling, 1.25, ratio)
    for state in ("steady", "after hits"):
        line(f"creation that evicts, p99, {state}", f.get(f"creation p99 {state}"), 100e-6, ms)
    line("16 threads ÷ 1 thread, req/s", f.get("threads 16 ÷ 1"), 0.8, ratio, at_least=True)
    line("end to end, through dispatch ÷ direct", f.get("server ratio"), 0.95, ratio, at_least=True)
    return rows


if __name__ == "__main__":
    sys.exit(main())
