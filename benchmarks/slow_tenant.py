"""A slow or hung tenant factory under gunicorn on loopback, before and after.

``python -m benchmarks.slow_tenant`` runs each case against this checkout's
``flask_dispatch`` and against an older one (by default commit ``bf118ca``,
the core before factories ran on creation threads), and prints them side by
side: what the other tenants' probes saw (p50, p99, max, how many took over
1 s, how many got no 200) and what the slow tenant's clients saw.

The server is ``tests/slow_app.py``: tenant ``slow``'s factory sleeps 40 s
(or, in the last case, its first call never returns) while ``acme`` and
``globex`` are probed every 0.25 s each. ``DISPATCH_CREATE_TIMEOUT`` is 2 s
and gunicorn's ``--timeout`` 10 s. A full run takes about four minutes, most
of it waiting for the old version's stuck requests (clients give up after
45 s).
"""

from __future__ import annotations

import argparse
import io
import os
import subprocess
import sys
import tarfile
import tempfile
import typing as t
from collections import Counter
from dataclasses import replace

from tests.load import Result, Scenario, run

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BEFORE = "bf118ca"
CLIENT_TIMEOUT = 45.0

CASES = {
    "gthread": (
        "gthread -w 1 --threads 8, 8 requests to slow",
        Scenario("gthread", 1, 8, 8, window=6, client_timeout=CLIENT_TIMEOUT),
    ),
    "sync4": (
        "sync -w 4, 8 requests to slow",
        Scenario("sync4", 4, 0, 8, window=6, client_timeout=CLIENT_TIMEOUT),
    ),
    "sync1": (
        "sync -w 1, 2 requests to slow",
        Scenario("sync1", 1, 0, 2, window=6, client_timeout=CLIENT_TIMEOUT),
    ),
    "hung": (
        "gthread -w 1 --threads 8, factory never returns (first call), 2 clients retrying 14 s",
        Scenario(
            "hung",
            1,
            8,
            2,
            mode="hang-once",
            retry_for=14,
            window=6,
            client_timeout=CLIENT_TIMEOUT,
        ),
    ),
}


#: Extra rows for this checkout: the same case with other settings.
VARIANTS: dict[str, list[tuple[str, t.Callable[[Scenario], Scenario]]]] = {
    "gthread": [("after, MAX_WAITING 4", lambda s: replace(s, max_waiting=4))],
}


def export(revision: str, into: str) -> str:
    """Write ``flask_dispatch`` as it was at ``revision`` under ``into``."""
    archive = subprocess.run(
        ["git", "-C", ROOT, "archive", "--format=tar", revision, "flask_dispatch"],
        capture_output=True,
        check=True,
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return into


def describe(result: Result) -> list[str]:
    """One table row's cells for a result."""
    # The same span in every run, however long its slow clients waited.
    window = result.scenario.window
    times = result.probe_seconds(started_before=window)
    over = sum(s > 1.0 for s in times)
    statuses = Counter(str(s.status) if s.status else f"none ({s.error})" for s in result.slow)
    answered = [s.seconds for s in result.slow if s.status is not None]
    retry_after = sorted({s.retry_after or "-" for s in result.slow if s.status == 503})
    first_ok = result.first_ok()
    return [
        f"{result.percentile(0.5, window) * 1000:.0f}",
        f"{result.percentile(0.99, window) * 1000:.0f}",
        f"{max(times) * 1000:.0f}",
        f"{over}/{len(times)}",
        f"{len(result.failed_probes())}/{len(result.probes)}",
        ", ".join(f"{n}x {status}" for status, n in sorted(statuses.items())),
        f"{min(answered):.1f}-{max(answered):.1f}" if answered else "-",
        ",".join(retry_after) or "-",
        f"{first_ok.end:.1f}" if first_ok else "never",
        str(result.worker_timeouts()),
    ]


HEAD = [
    "version",
    "p50 ms",
    "p99 ms",
    "max ms",
    ">1 s",
    "no 200 (run)",
    "slow answers",
    "slow s",
    "Retry-After",
    "slow 200 at s",
    "WORKER TIMEOUT",
]


def table(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in [HEAD, *rows]) for i in range(len(HEAD))]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True))
        for row in [HEAD, *rows]
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.slow_tenant", description=__doc__)
    parser.add_argument("--before", default=BEFORE, help="git revision to compare with")
    parser.add_argument("--before-tree", help="a checkout to compare with, instead of --before")
    parser.add_argument("--no-before", action="store_true", help="this checkout only")
    parser.add_argument("--cases", default=",".join(CASES), help="comma-separated cases")
    args = parser.parse_args(argv)
    cases = args.cases.split(",")
    unknown = set(cases).difference(CASES)
    if unknown:
        parser.error(f"unknown cases {sorted(unknown)}; pick from {list(CASES)}")
    with tempfile.TemporaryDirectory(prefix="flask_dispatch_before_") as scratch:
        trees = [("after", ROOT)]
        if not args.no_before:
            before = args.before_tree or export(args.before, scratch)
            trees.insert(0, (f"before ({args.before_tree or args.before})", before))
        print("Slow tenant under gunicorn on loopback: probes of acme and globex every 0.25 s;")
        print("DISPATCH_CREATE_TIMEOUT 2 s, gunicorn --timeout 10 s, clients wait at most 45 s.")
        print("p50/p99/max and >1 s: probes started in the first 6 s; no 200: in the whole run.")
        for case in cases:
            title, scenario = CASES[case]
            rows = []
            runs = [(label, tree, scenario) for label, tree in trees]
            runs += [(label, ROOT, vary(scenario)) for label, vary in VARIANTS.get(case, [])]
            for label, tree, variant in runs:
                result = run(variant, tree)
                served = (result.before or {}).get("flask_dispatch", "?")
                print(f"  [{case} / {label}: {served}]", file=sys.stderr)
                rows.append([label, *describe(result)])
            print(f"\n{title}\n{table(rows)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
