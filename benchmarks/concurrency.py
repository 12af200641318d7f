"""Throughput from several threads, cold start, and the herd."""

from __future__ import annotations

import threading
import time
import typing as t

from flask import Flask

from flask_dispatch import Dispatch

from .common import environ, leaf, no_start_response, table
from .recipe import SubdomainDispatcher

if t.TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication

TENANTS = 1000


def _dispatch_app(factory: t.Callable[[str], WSGIApplication | None]) -> Flask:
    app = Flask("bench_host")
    app.config.update(DISPATCH_DOMAIN="example.com", DISPATCH_MAX_INSTANCES=TENANTS)
    Dispatch(app).subdomain(factory)
    return app


def _throughput(app: WSGIApplication, threads: int, per_thread: int) -> float:
    envs = [environ(f"t{i}.example.com") for i in range(0, TENANTS, 7)]
    start_response = no_start_response
    barrier = threading.Barrier(threads + 1)

    def worker(offset: int) -> None:
        barrier.wait()
        k = len(envs)
        for i in range(per_thread):
            app(envs[(i + offset) % k].copy(), start_response)

    workers = [threading.Thread(target=worker, args=(n * 13,)) for n in range(threads)]
    for w in workers:
        w.start()
    barrier.wait()
    start = time.perf_counter()
    for w in workers:
        w.join()
    return threads * per_thread / (time.perf_counter() - start)


def run_threads(total: int, rounds: int) -> tuple[str, dict[str, float]]:
    ours = _dispatch_app(lambda name: leaf).wsgi_app
    recipe = SubdomainDispatcher("example.com", lambda name: leaf)
    for i in range(TENANTS):
        ours(environ(f"t{i}.example.com"), no_start_response)
        recipe(environ(f"t{i}.example.com"), no_start_response)
    rows, figures = [], {}
    for threads in (1, 4, 16):
        best = {"flask_dispatch": 0.0, "recipe": 0.0}
        for _ in range(rounds):
            for name, app in (("flask_dispatch", ours), ("recipe", recipe)):
                best[name] = max(best[name], _throughput(app, threads, total // threads))
        figures[f"threads {threads}"] = best["flask_dispatch"]
        rows.append(
            (
                threads,
                f"{best['flask_dispatch']:,.0f}",
                f"{best['recipe']:,.0f}",
                f"{best['flask_dispatch'] / best['recipe']:.2f}",
            )
        )
    text = table(["threads", "flask_dispatch req/s", "recipe req/s", "ratio"], rows)
    return text, figures


def _cold(app: WSGIApplication, names: list[str]) -> float:
    barrier = threading.Barrier(len(names) + 1)

    def worker(name: str) -> None:
        barrier.wait()
        app(environ(f"{name}.example.com"), no_start_response)

    workers = [threading.Thread(target=worker, args=(n,)) for n in names]
    for w in workers:
        w.start()
    barrier.wait()
    start = time.perf_counter()
    for w in workers:
        w.join()
    return time.perf_counter() - start


def _slow_factory(delay: float, calls: list[str]) -> t.Callable[[str], WSGIApplication]:
    lock = threading.Lock()

    def factory(name: str) -> WSGIApplication:
        with lock:
            calls.append(name)
        time.sleep(delay)
        return leaf

    return factory


def run_cold(tenants: int = 32, delay: float = 0.05) -> tuple[str, dict[str, float]]:
    names = [f"c{i}" for i in range(tenants)]
    calls: list[str] = []
    ours = _cold(_dispatch_app(_slow_factory(delay, calls)), names)
    recipe_calls: list[str] = []
    recipe = _cold(SubdomainDispatcher("example.com", _slow_factory(delay, recipe_calls)), names)
    herd_calls: list[str] = []
    _cold(_dispatch_app(_slow_factory(delay, herd_calls)), ["herd"] * tenants)
    recipe_herd: list[str] = []
    _cold(SubdomainDispatcher("example.com", _slow_factory(delay, recipe_herd)), ["herd"] * tenants)
    rows = [
        (f"{tenants} tenants × {delay * 1000:.0f} ms, wall s", f"{ours:.3f}", f"{recipe:.3f}"),
        (f"{tenants}-thread herd on one tenant, factory calls", len(herd_calls), len(recipe_herd)),
    ]
    figures = {"cold start s": ours, "herd calls": float(len(herd_calls))}
    return table(["cold start", "flask_dispatch", "recipe"], rows), figures
