"""Helpers shared by the benchmarks: tiny WSGI apps, environs, timing."""

from __future__ import annotations

import gc
import platform
import time
import typing as t

from flask import Flask
from werkzeug.test import EnvironBuilder

if t.TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Sequence

    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

BODY = [b"ok"]


def leaf(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    """The cheapest WSGI app: what is left over it is dispatch."""
    start_response("200 OK", [])
    return BODY


def _ignore(status: str, headers: list[tuple[str, str]], exc_info: t.Any = None) -> t.Any:
    return None


#: A start_response that does nothing.
no_start_response = t.cast("StartResponse", _ignore)


def environ(host: str, path: str = "/x") -> dict[str, t.Any]:
    """The environ a WSGI server would give for ``GET http://<host><path>``:
    built by Werkzeug's EnvironBuilder, so it holds the keys a server sets
    (17 of them), not a hand-picked few."""
    return EnvironBuilder(path=path, base_url=f"http://{host}/").get_environ()


def time_calls(app: WSGIApplication, environs: Sequence[dict[str, t.Any]], n: int) -> float:
    """Seconds per call of ``app`` over ``n`` calls cycling ``environs``
    (each call gets a fresh copy, as a server would give)."""
    k = len(environs)
    start_response = no_start_response
    gc_was = gc.isenabled()
    # Start every candidate from a clean heap: with GC off, garbage left by
    # the candidate timed before would slow down the one timed after.
    gc.collect()
    gc.disable()
    try:
        start = time.perf_counter()
        for i in range(n):
            app(environs[i % k].copy(), start_response)
        return (time.perf_counter() - start) / n
    finally:
        if gc_was:
            gc.enable()


def best_interleaved(candidates: dict[str, Callable[[], float]], rounds: int) -> dict[str, float]:
    """Run each candidate once per round, in turn, and keep its best time:
    noise from the machine hits all of them alike."""
    best = {name: float("inf") for name in candidates}
    for _ in range(rounds):
        for name, run in candidates.items():
            best[name] = min(best[name], run())
    return best


def flask_leaf(name: str) -> Flask:
    app = Flask(f"bench_{name}")

    @app.route("/x")
    def x() -> str:
        return "ok"

    return app


def machine() -> str:
    import os

    return (
        f"{platform.node()} · {platform.machine()} · {os.cpu_count()} cores · "
        f"Python {platform.python_version()} · {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"
    )


def table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    cells = [[str(c) for c in row] for row in rows]
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]
    line = "  ".join("-" * w for w in widths)
    out = [line, "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)), line]
    out += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in cells]
    out.append(line)
    return "\n".join(out)
