"""Hot path: what a request to an already created tenant costs on top of
calling the tenant directly, timed by pyperf.

Every tenant is the same bare WSGI callable (:func:`~benchmarks.common.leaf`)
and every dispatcher holds the same 10,000 tenants (see
:mod:`benchmarks.mixes`). Each case is timed in pyperf's worker processes,
each with its own hash seed and memory layout, and only what a worker's own
benchmark needs is built there. A timed call is ``app(environ.copy(),
start_response)`` over the mix's list of environs (dispatch rewrites
``SCRIPT_NAME`` and ``PATH_INFO``, so each call gets a fresh copy); the
direct call is timed the same way, so the copy cancels out of the overhead.
Garbage collection is off while timing, as in :mod:`timeit`.

A case is one function decorated with :func:`case`: it gets the names of
the tenants to hold and returns the WSGI callable to time, with those
tenants created. E.g. a later "background listener on" case is a copy of
:func:`dispatch_subdomain` that connects the listener first.
"""

from __future__ import annotations

import gc
import itertools
import sys
import time
import typing as t
from dataclasses import dataclass

from werkzeug.middleware.dispatcher import DispatcherMiddleware

from . import mixes
from .common import (
    DOMAIN,
    MOUNT,
    dispatch_app,
    leaf,
    mount_environ,
    no_start_response,
    path_environ,
    subdomain_environ,
    table,
)
from .recipe import PathDispatcher, SubdomainDispatcher

if t.TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    import pyperf  # type: ignore[import-untyped,import-not-found,unused-ignore]
    from _typeshed.wsgi import WSGIApplication, WSGIEnvironment

    Build: t.TypeAlias = Callable[[Sequence[str]], WSGIApplication]

#: Which environs a case is timed with: ``subdomain`` (``<name>.example.com/
#: notes/17``), ``path`` (``example.com/<name>/notes/17``) or ``mount``
#: (``example.com/backend/<name>/notes/17``).
Shape = t.Literal["subdomain", "path", "mount"]

ENVIRON: dict[Shape, Callable[[str], WSGIEnvironment]] = {
    "subdomain": subdomain_environ,
    "path": path_environ,
    "mount": mount_environ,
}


@dataclass(frozen=True)
class Case:
    """One thing timed on the hot path, under every mix."""

    name: str
    shape: Shape
    #: names of the tenants to hold -> the WSGI callable to time.
    build: Build


CASES: list[Case] = []
#: The baseline every overhead is measured from.
DIRECT = "direct call of the tenant"
#: flask_dispatch case -> the case its overhead must not exceed.
REFERENCES = {
    "flask_dispatch subdomain": "recipe SubdomainDispatcher",
    "flask_dispatch path": "recipe PathDispatcher",
    "flask_dispatch mount": "werkzeug DispatcherMiddleware",
}


def case(name: str, shape: Shape) -> Callable[[Build], Build]:
    """Register a hot-path case; it is timed under every mix, in the order
    registered."""

    def register(build: Build) -> Build:
        CASES.append(Case(name, shape, build))
        return build

    return register


# What the case being set up has its factory record (see _setup).
_watched: list[list[str]] = []


def _watch(created: list[str]) -> None:
    """Have :func:`_setup` check that the factory that records in
    ``created`` creates nothing once the held tenants are: every timed
    request must be a hit."""
    created.clear()
    _watched.append(created)


def _create_all(app: WSGIApplication, environs: Sequence[WSGIEnvironment]) -> None:
    for environ in environs:
        app(environ.copy(), no_start_response)


@case(DIRECT, "subdomain")
def direct(held: Sequence[str]) -> WSGIApplication:
    return leaf


@case("flask_dispatch subdomain", "subdomain")
def dispatch_subdomain(held: Sequence[str]) -> WSGIApplication:
    app, _, created, _ = dispatch_app()
    _create_all(app.wsgi_app, [subdomain_environ(n) for n in held])
    _watch(created)
    return app.wsgi_app


@case("recipe SubdomainDispatcher", "subdomain")
def recipe_subdomain(held: Sequence[str]) -> WSGIApplication:
    app = SubdomainDispatcher(DOMAIN, lambda name: leaf)
    _create_all(app, [subdomain_environ(n) for n in held])
    return app


@case("flask_dispatch path", "path")
def dispatch_path(held: Sequence[str]) -> WSGIApplication:
    app, _, _, created = dispatch_app()
    _create_all(app.wsgi_app, [path_environ(n) for n in held])
    _watch(created)
    return app.wsgi_app


@case("recipe PathDispatcher", "path")
def recipe_path(held: Sequence[str]) -> WSGIApplication:
    app = PathDispatcher(leaf, lambda name: leaf)
    _create_all(app, [path_environ(n) for n in held])
    return app


@case("flask_dispatch mount", "mount")
def dispatch_mount(held: Sequence[str]) -> WSGIApplication:
    # The registry full of path tenants, as on a site that has both.
    app, dispatch, _, created = dispatch_app()
    dispatch.mount(MOUNT, leaf)
    _create_all(app.wsgi_app, [path_environ(n) for n in held])
    _watch(created)
    return app.wsgi_app


@case("werkzeug DispatcherMiddleware", "mount")
def werkzeug_mount(held: Sequence[str]) -> WSGIApplication:
    return DispatcherMiddleware(leaf, {MOUNT: leaf})


def time_requests(loops: int, app: WSGIApplication, environs: Sequence[WSGIEnvironment]) -> float:
    """Seconds for ``loops`` requests, cycling through ``environs``."""
    start_response = no_start_response
    requests = itertools.islice(itertools.cycle(environs), loops)
    gc_was = gc.isenabled()
    gc.disable()
    try:
        start = time.perf_counter()
        for environ in requests:
            app(environ.copy(), start_response)
        return time.perf_counter() - start
    finally:
        if gc_was:
            gc.enable()


_built: dict[tuple[str, str], tuple[WSGIApplication, list[WSGIEnvironment]]] = {}


def _setup(one: Case, mix: str) -> tuple[WSGIApplication, list[WSGIEnvironment]]:
    """Build a case for a mix, once per process: only the worker that times
    it pays for it, not the manager nor the other workers."""
    key = (one.name, mix)
    if key not in _built:
        _watched.clear()
        app = one.build(mixes.held())
        environs = [ENVIRON[one.shape](n) for n in mixes.mix(mix)]
        # A warm-up pass that also checks every timed request is a hit.
        time_requests(len(environs), app, environs)
        for created in _watched:
            if created:
                print(
                    f"WARNING: {one.name} [{mix}]: {len(created)} tenants created by requests"
                    " to held tenants: the timing includes creations",
                    file=sys.stderr,
                )
        _built[key] = app, environs
    return _built[key]


def _timer(one: Case, mix: str) -> Callable[[int], float]:
    def timed(loops: int) -> float:
        app, environs = _setup(one, mix)
        return time_requests(loops, app, environs)

    return timed


def bench_name(name: str, mix: str) -> str:
    return f"{name} [{mix}]"


def run(runner: pyperf.Runner) -> dict[str, pyperf.Benchmark]:
    """Run (in the manager) or serve (in a worker) every case under every
    mix. In the manager, returns the benchmarks by :func:`bench_name`."""
    found: dict[str, pyperf.Benchmark] = {}
    for mix in mixes.MIXES:
        for one in CASES:
            name = bench_name(one.name, mix)
            bench = runner.bench_time_func(name, _timer(one, mix))
            if bench is not None:
                found[name] = bench
    return found


def _stdev(bench: pyperf.Benchmark) -> float:
    # pyperf's stdev needs two values; a one-value run (-n 1 -p 1) has none.
    return float(bench.stdev()) if bench.get_nvalue() > 1 else 0.0


def report(found: dict[str, pyperf.Benchmark]) -> tuple[str, dict[str, float]]:
    """The overhead table, and the figures the budget checks: ``"<case>
    [<mix>]"`` -> overhead in seconds per request (its mean minus the direct
    call's)."""
    figures: dict[str, float] = {}
    for mix in mixes.MIXES:
        base = found[bench_name(DIRECT, mix)].mean()
        for one in CASES:
            if one.name != DIRECT:
                name = bench_name(one.name, mix)
                figures[name] = found[name].mean() - base
    rows = []
    for mix in mixes.MIXES:
        base_sd = _stdev(found[bench_name(DIRECT, mix)])
        for one in CASES:
            name = bench_name(one.name, mix)
            bench = found[name]
            timing = f"{bench.mean() * 1e6:.3f} ± {_stdev(bench) * 1e6:.3f}"
            if one.name == DIRECT:
                rows.append((mix, one.name, timing, "", ""))
                continue
            # The two spreads add up: an overhead is a difference of means.
            spread = (_stdev(bench) ** 2 + base_sd**2) ** 0.5
            overhead = f"{figures[name] * 1e6:.3f} ± {spread * 1e6:.3f}"
            reference = REFERENCES.get(one.name)
            versus = (
                ""
                if reference is None
                else f"{figures[name] / figures[bench_name(reference, mix)]:.2f} × {reference}"
            )
            rows.append((mix, one.name, timing, overhead, versus))
    headers = ["mix", "case", "µs per request", "overhead µs", "overhead ÷ reference's"]
    return table(headers, rows), figures
