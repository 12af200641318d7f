"""The example project under gunicorn on loopback, loaded by wrk: requests
per second through dispatch vs the same tenant app served directly."""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile

from tests.servers import gunicorn

from .common import table

_RPS = re.compile(r"Requests/sec:\s+([0-9.]+)")


def _wrk(port: int, seconds: int, connections: int) -> float:
    output = subprocess.run(
        [
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{seconds}s",
            "-H",
            f"Host: acme.localhost:{port}",
            f"http://127.0.0.1:{port}/",
        ],
        capture_output=True,
        text=True,
        timeout=seconds + 30,
        check=True,
    ).stdout
    match = _RPS.search(output)
    if match is None or "Non-2xx" in output:
        raise RuntimeError(f"wrk failed:\n{output}")
    return float(match.group(1))


def run(seconds: int, rounds: int) -> tuple[str, dict[str, float]]:
    if shutil.which("wrk") is None:
        return (
            "wrk is not installed: 'apt-get install wrk' (Debian) to run the server benchmark.",
            {},
        )
    best = {"through dispatch": 0.0, "direct": 0.0}
    with tempfile.TemporaryDirectory() as folder:
        env = {
            "FLASK_TENANT_DIRECTORY": f"{folder}/tenants.sqlite3",
            "FLASK_TENANT_DATA_DIR": f"{folder}/data",
            "FLASK_SECRET_KEY": "bench",
        }
        targets = {
            "through dispatch": "benchmarks.serve:dispatched()",
            "direct": "benchmarks.serve:direct()",
        }
        # One worker: with two on this 2-core machine, whether the kernel gave
        # wrk's keep-alive connections to one worker or to both decided the
        # figure (about 1,100 or 2,450 req/s, for either target). wrk gets
        # the other core.
        for _ in range(rounds):
            for name, target in targets.items():
                with gunicorn(target, env, workers=1, threads=8) as server:
                    _wrk(server.port, 2, 8)  # warm up: tenant created, pages cached
                    best[name] = max(best[name], _wrk(server.port, seconds, 8))
    ratio = best["through dispatch"] / best["direct"]
    rows = [(name, f"{rps:,.0f}") for name, rps in best.items()]
    rows.append(("through dispatch ÷ direct", f"{ratio:.3f}"))
    text = table([f"gunicorn 1×8 gthread, wrk -c8, {seconds} s, best of {rounds}", "req/s"], rows)
    return text, {"server ratio": ratio}
