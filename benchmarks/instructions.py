"""Instructions per request, counted by valgrind's callgrind.

Wall time on a shared 2-core machine moves by a percent or two between runs,
which is the size of the Flask-tenant budget itself. Instruction counts do
not move: the same interpreter, inputs and hash seed give the same count
whatever else the machine is doing. Each case runs twice under callgrind
(``SHORT`` and ``LONG`` requests after the same set-up), and the difference
divided by ``LONG - SHORT`` is the count per request, set-up excluded.

``python -m benchmarks.instructions <case> <requests>`` is what runs under
callgrind; :func:`run` drives it.
"""

from __future__ import annotations

import gc
import os
import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

from .common import no_start_response, table
from .hotpath import FLASK_CASES, flask_cases

SHORT, LONG = 100, 600


def _serve(name: str, requests: int) -> None:
    app, env = flask_cases()[name]
    for _ in range(50):  # create the tenant, warm the interpreter's caches
        app(env.copy(), no_start_response)
    gc.collect()
    gc.disable()
    for _ in range(requests):
        app(env.copy(), no_start_response)


def _count(name: str, requests: int) -> int:
    command = [
        "valgrind",
        "--tool=callgrind",
        "--callgrind-out-file=/dev/null",
        sys.executable,
        "-m",
        "benchmarks.instructions",
        name,
        str(requests),
    ]
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=True)
    found = re.search(r"Collected : (\d+)", done.stderr)
    if found is None:
        raise RuntimeError(f"callgrind printed no count:\n{done.stderr[-2000:]}")
    return int(found.group(1))


def run() -> tuple[str, dict[str, float]]:
    """Return the table and the ratios (not budget checks: wall time is)."""
    if shutil.which("valgrind") is None:
        return "valgrind is not installed (apt-get install valgrind): skipped.", {}
    jobs = [(name, n) for name in FLASK_CASES for n in (SHORT, LONG)]
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        counts = dict(zip(jobs, pool.map(lambda job: _count(*job), jobs), strict=True))
    per = {
        name: (counts[name, LONG] - counts[name, SHORT]) / (LONG - SHORT) for name in FLASK_CASES
    }
    rows = []
    figures: dict[str, float] = {}
    for name, (label, base) in FLASK_CASES.items():
        ratio = per[name] / per[base]
        rows.append((label, f"{per[name]:,.0f}", "" if name == base else f"{ratio:.4f}"))
        if name != base:
            figures[f"instructions {name} ratio"] = ratio
    return table(["Flask tenant", "instructions/request", "÷ its direct call"], rows), figures


if __name__ == "__main__":
    _serve(sys.argv[1], int(sys.argv[2]))
