"""Per-request overhead of dispatch to an already-created tenant."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import typing as t

from flask import Flask
from werkzeug.middleware.dispatcher import DispatcherMiddleware

from flask_dispatch import Dispatch

from .common import (
    best_interleaved,
    environ,
    flask_leaf,
    leaf,
    no_start_response,
    table,
    time_calls,
)
from .recipe import PathDispatcher, SubdomainDispatcher

if t.TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication

# Requests cycle through the same number of distinct tenants at every size
# (spread over the whole range), so only the size of the table changes.
SPREAD = 10


def _picks(n: int) -> list[int]:
    return [i * n // SPREAD for i in range(SPREAD)]


def _host_app(**config: t.Any) -> tuple[Flask, Dispatch]:
    app = Flask("bench_host")
    app.config.update(DISPATCH_DOMAIN="example.com", **config)
    return app, Dispatch(app)


def candidates(n: int) -> dict[str, tuple[WSGIApplication, list[dict[str, t.Any]]]]:
    """name -> (WSGI callable, environs), every tenant already created."""
    picks = _picks(n)
    sub_envs = [environ(f"t{i}.example.com") for i in picks]
    path_envs = [environ("example.com", f"/t{i}/x") for i in picks]

    sub_app, sub = _host_app(DISPATCH_MAX_INSTANCES=n)
    sub.subdomain(lambda name: leaf)
    path_app, path = _host_app(DISPATCH_MAX_INSTANCES=n)
    path.path(lambda name: leaf)
    mount_app, mount = _host_app()
    for i in range(n):
        mount.mount(f"/t{i}", leaf)
    recipe_sub = SubdomainDispatcher("example.com", lambda name: leaf)
    recipe_path = PathDispatcher(leaf, lambda name: leaf)
    werkzeug = DispatcherMiddleware(leaf, {f"/t{i}": leaf for i in range(n)})
    for i in range(n):  # create every tenant up front
        sub_app.wsgi_app(environ(f"t{i}.example.com"), no_start_response)
        path_app.wsgi_app(environ("example.com", f"/t{i}/x"), no_start_response)
        recipe_sub(environ(f"t{i}.example.com"), no_start_response)
        recipe_path(environ("example.com", f"/t{i}/x"), no_start_response)
    return {
        "direct (baseline)": (leaf, sub_envs),
        "werkzeug DispatcherMiddleware": (werkzeug, path_envs),
        "recipe SubdomainDispatcher": (recipe_sub, sub_envs),
        "recipe PathDispatcher": (recipe_path, path_envs),
        "flask_dispatch subdomain": (sub_app.wsgi_app, sub_envs),
        "flask_dispatch path": (path_app.wsgi_app, path_envs),
        "flask_dispatch mount": (mount_app.wsgi_app, path_envs),
    }


#: Path shapes for the path table: what follows ``/t<i>`` (``None``: a new
#: path on every request, so no memo can help).
SHAPES: dict[str, str | None] = {
    "/t/": "/",
    "/t/x": "/x",
    "/t/notes/17/edit": "/notes/17/edit",
    "/t/static/css/site.css": "/static/css/site.css",
    "/t/notes/<n>, every path new": None,
}


def run_paths(n: int, calls: int, rounds: int) -> tuple[str, dict[str, float]]:
    """Path dispatch and werkzeug's DispatcherMiddleware over several path
    shapes at ``n`` tenants. Werkzeug walks the path from its end, one step
    per segment; dispatch cuts the first segment and memoises the paths of
    held tenants, so the last shape shows it with every memo lookup missing."""
    path_app, path = _host_app(DISPATCH_MAX_INSTANCES=n)
    path.path(lambda name: leaf)
    werkzeug = DispatcherMiddleware(leaf, {f"/t{i}": leaf for i in range(n)})
    for i in range(n):
        path_app.wsgi_app(environ("example.com", f"/t{i}/x"), no_start_response)
    base = environ("example.com")
    rows = []
    figures: dict[str, float] = {}
    for label, tail in SHAPES.items():
        if tail is None:
            # As many distinct paths as calls, over the same tenants as the
            # other rows: each request is new to the path memo.
            picks = _picks(n)
            paths = [f"/t{picks[i % SPREAD]}/notes/{i}" for i in range(calls)]
        else:
            paths = [f"/t{i}{tail}" for i in _picks(n)]
        envs = [{**base, "PATH_INFO": p} for p in paths]
        best = best_interleaved(
            {
                "direct": _timer(leaf, envs, calls),
                "werkzeug": _timer(werkzeug, envs, calls),
                "dispatch": _timer(path_app.wsgi_app, envs, calls),
            },
            rounds,
        )
        reference = best["werkzeug"] - best["direct"]
        ours = best["dispatch"] - best["direct"]
        figures[f"path shape {label}"] = ours / reference
        rows.append(
            (label, f"{reference * 1e6:.3f}", f"{ours * 1e6:.3f}", f"{ours / reference:.2f}")
        )
    text = table(
        ["path", "werkzeug overhead µs", "dispatch overhead µs", "dispatch ÷ werkzeug"], rows
    )
    return text, figures


def _timer(app: WSGIApplication, envs: list[dict[str, t.Any]], calls: int) -> t.Callable[[], float]:
    return lambda: time_calls(app, envs, calls)


def _hot_process(sizes: t.Sequence[int], calls: int, rounds: int) -> dict[str, float]:
    """Seconds per request, best of ``rounds``, of every candidate at every
    size, keyed ``"<candidate> @ <size>"``, timed in this process.

    Every candidate at every size is timed in each round, so the sizes are
    compared side by side too: timed one size after another, a slow spell
    of the machine during one size's turn would read as a cost of size."""
    built = {n: candidates(n) for n in sizes}
    return best_interleaved(
        {
            f"{name} @ {n}": _timer(app, envs, calls)
            for n, cands in built.items()
            for name, (app, envs) in cands.items()
        },
        rounds,
    )


def _in_processes(args: t.Sequence[object], processes: int) -> list[t.Any]:
    """Run ``python -m benchmarks.hotpath *args`` in ``processes`` fresh
    interpreters, one after another, and return what each printed (JSON)."""
    command = [sys.executable, "-m", "benchmarks.hotpath", *map(str, args)]
    return [
        json.loads(subprocess.run(command, capture_output=True, text=True, check=True).stdout)
        for _ in range(processes)
    ]


def run(
    sizes: t.Sequence[int], calls: int, rounds: int, processes: int
) -> tuple[str, dict[str, float]]:
    """Return the table and the figures the budget checks: the hot path
    timed in ``processes`` fresh interpreters, each figure the median over
    them.

    The direct call is the same work at every size, so in each interpreter
    its best time over all sizes is the one baseline: an overhead is a
    difference of two timings, and a baseline timed less well at one size
    would move that size's overhead by several per cent. Each interpreter
    has its own hash seed and memory layout, which decide how often the
    tenants' names collide in the registry's table and which of their
    objects share cache lines; that alone moved the 10,000 ÷ 10 ratio by
    several per cent between interpreters, so no single one decides it."""
    runs = _in_processes(["hot", calls, rounds, *sizes], processes)
    suffix = f" @ {sizes[0]}"
    names = [
        key.removesuffix(suffix)
        for key in runs[0]
        if key.endswith(suffix) and not key.startswith("direct (baseline)")
    ]
    overheads: dict[str, list[float]] = {}
    bases = []
    for best in runs:
        base = min(best[f"direct (baseline) @ {n}"] for n in sizes)
        bases.append(base)
        for n in sizes:
            for name in names:
                overheads.setdefault(f"{name} @ {n}", []).append(best[f"{name} @ {n}"] - base)
    figures = {key: statistics.median(each) for key, each in overheads.items()}
    scaling_lines = []
    for kind in ("subdomain", "path"):
        # The scaling check pairs sizes within each interpreter.
        big, small = (overheads[f"flask_dispatch {kind} @ {n}"] for n in (sizes[-1], sizes[0]))
        each = [b / s for b, s in zip(big, small, strict=True)]
        figures[f"{kind} scaling"] = statistics.median(each)
        scaling_lines.append(
            f"{kind} overhead @ {sizes[-1]:,} ÷ @ {sizes[0]:,}, each interpreter: "
            + " ".join(f"{r:.3f}" for r in each)
        )
    rows = []
    for n in sizes:
        reference = figures[f"werkzeug DispatcherMiddleware @ {n}"]
        for name in names:
            overhead = figures[f"{name} @ {n}"]
            rows.append((f"{n:,}", name, f"{overhead * 1e6:.3f}", f"{overhead / reference:.2f}"))
    base = statistics.median(bases)
    rows.append(("all", "direct (baseline), µs per request", f"{base * 1e6:.3f}", ""))
    headers = ["tenants", "candidate", "overhead µs", "overhead ÷ werkzeug"]
    return "\n".join([table(headers, rows), *scaling_lines]), figures


#: The Flask-tenant cases: name -> (label, the case it is compared with).
FLASK_CASES = {
    "direct": ("direct", "direct"),
    "subdomain": ("subdomain", "direct"),
    "direct-script": ("direct, SCRIPT_NAME=/acme", "direct-script"),
    "path": ("path", "direct-script"),
    "werkzeug": ("werkzeug DispatcherMiddleware", "direct-script"),
}


def flask_cases() -> dict[str, tuple[WSGIApplication, dict[str, t.Any]]]:
    """One Flask tenant app, called directly or through dispatch, each case
    with its environ. For path dispatch it is compared with a direct call
    with ``SCRIPT_NAME="/acme"``: a script root costs Flask the same under
    any prefix mount, so it is not counted against dispatch."""
    tenant = flask_leaf("acme")
    app, dispatch = _host_app()
    dispatch.subdomain(lambda name: tenant)
    path_app, path = _host_app()
    path.path(lambda name: tenant)
    mounted = environ("example.com", "/x")
    mounted["SCRIPT_NAME"] = "/acme"
    return {
        "direct": (tenant, environ("acme.example.com")),
        "subdomain": (app, environ("acme.example.com")),
        "direct-script": (tenant, mounted),
        "path": (path_app, environ("example.com", "/acme/x")),
        "werkzeug": (
            DispatcherMiddleware(leaf, {"/acme": tenant}),
            environ("example.com", "/acme/x"),
        ),
    }


def _flask_process(calls: int, rounds: int) -> dict[str, t.Any]:
    """The Flask-tenant cases in this process: ``rounds`` rounds, each case
    timed over ``calls`` requests in turn. Returns each case's best time and
    each dispatched case's median over rounds of its time ÷ its direct
    call's time in the same round."""
    timers = {name: _timer(app, [env], calls) for name, (app, env) in flask_cases().items()}
    times: dict[str, list[float]] = {name: [] for name in timers}
    for _ in range(rounds):
        for name, timer in timers.items():
            times[name].append(timer())
    ratios = {
        name: statistics.median(
            mine / its for mine, its in zip(times[name], times[base], strict=True)
        )
        for name, (_, base) in FLASK_CASES.items()
        if name != base
    }
    return {"best": {name: min(ts) for name, ts in times.items()}, "ratios": ratios}


def run_flask(calls: int, rounds: int, processes: int) -> tuple[str, dict[str, float]]:
    """The Flask-tenant cases, timed in ``processes`` fresh interpreters one
    after another; each figure is the median over them.

    A Flask request takes about 80 µs and dispatch adds 1 to 3 % to it,
    which is the size of the machine's noise. Two things keep it out: each
    round times every case over a few hundred requests, and the ratio is
    taken within the round, so a slow spell of the machine hits both sides
    of it; and each interpreter lays its objects out differently in memory,
    which alone moves one case's time by up to 1 %, so no single layout
    decides the figure."""
    runs = _in_processes(["flask", calls, rounds], processes)
    rows = []
    figures: dict[str, float] = {}
    for name, (label, base) in FLASK_CASES.items():
        best = min(run["best"][name] for run in runs)
        if name == base:
            rows.append((label, f"{best * 1e6:.2f}", "", ""))
            continue
        each = [run["ratios"][name] for run in runs]
        ratio = statistics.median(each)
        figures[f"flask {name} ratio"] = ratio
        rows.append(
            (label, f"{best * 1e6:.2f}", " ".join(f"{r:.3f}" for r in each), f"{ratio:.3f}")
        )
    headers = ["Flask tenant", "best µs/request", "÷ its direct call, each process", "median"]
    return table(headers, rows), figures


if __name__ == "__main__":
    # One interpreter's share of run() or run_flask().
    mode, calls_arg, rounds_arg, *size_args = sys.argv[1:]
    if mode == "hot":
        found = _hot_process([int(n) for n in size_args], int(calls_arg), int(rounds_arg))
    else:
        found = _flask_process(int(calls_arg), int(rounds_arg))
    print(json.dumps(found))
