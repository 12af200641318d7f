"""Memory kept by dispatch: bookkeeping per cached instance, and after a
flood of random unknown tenant names."""

from __future__ import annotations

import gc
import random
import string
import tracemalloc
import typing as t

from flask import Flask

from flask_dispatch import Dispatch

from .common import environ, leaf, no_start_response, table
from .recipe import SubdomainDispatcher

if t.TYPE_CHECKING:
    from collections.abc import Callable

    from _typeshed.wsgi import WSGIApplication


def _kept(action: Callable[[], object]) -> tuple[int, object]:
    """Bytes still allocated after ``action`` (what it returns is kept)."""
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    result = action()
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return after - before, result


def _host(max_instances: int = 100) -> Flask:
    app = Flask("bench_host")
    app.config.update(DISPATCH_DOMAIN="example.com", DISPATCH_MAX_INSTANCES=max_instances)
    return app


def per_instance(n: int = 10_000) -> float:
    """Bytes of registry bookkeeping per cached tenant; every tenant is the
    same (pre-existing) app object, so the app itself is not counted."""
    app = _host(n)
    dispatch = Dispatch(app)
    dispatch.subdomain(lambda name: leaf)
    envs = [environ(f"t{i}.example.com") for i in range(n)]
    names_cost, _ = _kept(lambda: [e["HTTP_HOST"][: -len(".example.com")] for e in envs])

    def fill() -> None:
        for env in envs:
            app.wsgi_app(env, no_start_response)

    kept, _ = _kept(fill)
    # Host and segment memos are bounded (1,024 entries) and not per instance.
    return (kept - names_cost) / n


def flood(names: int = 100_000) -> tuple[int, int, int, int]:
    """Kept bytes and entries after ``names`` random unknown subdomains,
    for flask_dispatch and the recipe."""
    rng = random.Random(42)
    alphabet = string.ascii_lowercase + string.digits
    hosts = [
        "".join(rng.choice(alphabet) for _ in range(12)) + ".example.com" for _ in range(names)
    ]

    def unknown(name: str) -> WSGIApplication | None:
        return None

    app = _host()
    dispatch = Dispatch(app)
    dispatch.subdomain(unknown)

    def ours() -> None:
        for host in hosts:
            app.wsgi_app(environ(host), no_start_response)

    from werkzeug.exceptions import NotFound

    recipe = SubdomainDispatcher("example.com", lambda name: NotFound())

    def theirs() -> None:
        for host in hosts:
            recipe(environ(host), no_start_response)

    # Silence the 404 logging of the host app; only memory matters here.
    ours_kept, _ = _kept(ours)
    with app.app_context():
        misses = dispatch.registry.miss_count
    recipe_kept, _ = _kept(theirs)
    return ours_kept, misses, recipe_kept, len(recipe.instances)


def run(flood_names: int) -> tuple[str, dict[str, float]]:
    per = per_instance()
    ours, misses, recipe, recipe_entries = flood(flood_names)
    rows = [
        ("bookkeeping per cached instance (10,000 held)", f"{per:,.0f} B", ""),
        (
            f"kept after {flood_names:,} random unknown subdomains",
            f"{ours / 1e6:.2f} MB ({misses} misses held)",
            f"{recipe / 1e6:.2f} MB ({recipe_entries:,} entries)",
        ),
    ]
    figures = {"bytes per instance": per, "flood bytes": float(ours)}
    return table(["memory", "flask_dispatch", "recipe"], rows), figures
