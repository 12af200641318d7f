"""Concurrency and faults through the WSGI layer: churn with constant
eviction, randomly failing factories, a failing herd."""

from __future__ import annotations

import random
import threading
import typing as t

import pytest

from flask_dispatch import Dispatch, tenant_created, tenant_evicted

from .conftest import NamedApp, call, make_host_app, run_workers, wait_for, waiting_herd

if t.TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication
    from flask import Flask


@pytest.mark.parametrize(
    ("kind", "request_to"),
    [
        pytest.param(
            "subdomain",
            lambda app, name: call(app, "/x", host=f"{name}.example.com"),
            id="subdomain",
        ),
        pytest.param("path", lambda app, name: call(app, f"/{name}/x"), id="path"),
    ],
)
def test_churn_never_answers_for_another_tenant(
    kind: str, request_to: t.Callable[[Flask, str], t.Any]
) -> None:
    # Lock-free hits race evictions: an app may leave the registry between
    # the lookup and the call.
    app = make_host_app(DISPATCH_MAX_INSTANCES=50)
    dispatch = Dispatch(app)
    calls: list[str] = []
    lock = threading.Lock()

    def factory(name: str) -> WSGIApplication | None:
        with lock:
            calls.append(name)
        return NamedApp(name)

    getattr(dispatch, kind)(factory)

    created: list[str] = []
    evicted: list[tuple[str, str]] = []

    def on_created(sender: Flask, name: str, tenant_app: NamedApp) -> None:
        with lock:
            created.append(name)

    def on_evicted(sender: Flask, name: str, tenant_app: NamedApp, reason: str) -> None:
        assert tenant_app.name == name
        with lock:
            evicted.append((name, reason))

    wrong: list[tuple[str, str]] = []
    statuses: dict[int, int] = {}
    per_thread = 1000

    def work(i: int) -> None:
        rng = random.Random(i)
        for _ in range(per_thread):
            # Mostly a hot set of 40, sometimes any of 500: hits and churn.
            n = rng.randrange(40) if rng.random() < 0.7 else rng.randrange(500)
            name = f"t{n}"
            response = request_to(app, name)
            with lock:
                statuses[response.status] = statuses.get(response.status, 0) + 1
            if not response.body.startswith(f"{name}|"):
                with lock:
                    wrong.append((name, response.body))

    with (
        tenant_created.connected_to(on_created, app),
        tenant_evicted.connected_to(on_evicted, app),
    ):
        errors = run_workers(16, work)
    assert errors == []
    assert wrong == [], wrong[:5]  # zero cross-tenant answers
    assert statuses == {200: 16 * per_thread}
    with app.app_context():
        held = len(dispatch.registry)
    assert held == 50
    # Every factory call built an app that is either still held or was evicted.
    assert len(calls) == len(created) == held + len(evicted)
    assert {reason for _, reason in evicted} == {"capacity"}
    assert len(calls) > 500  # the churn really evicted and recreated
    print(
        f"churn: {16 * per_thread} requests, {len(wrong)} cross-tenant answers,"
        f" {len(calls)} factory calls = {held} held + {len(evicted)} evicted"
    )


def test_randomly_failing_factories() -> None:
    app = make_host_app(DISPATCH_MAX_INSTANCES=20)
    dispatch = Dispatch(app)
    rng = random.Random(7)
    lock = threading.Lock()
    outcomes: dict[str, list[str]] = {}

    @dispatch.subdomain
    def flaky(name: str) -> WSGIApplication | None:
        with lock:
            fail = rng.random() < 0.3
            outcomes.setdefault(name, []).append("fail" if fail else "ok")
        if fail:
            raise ConnectionError(f"tenant store unreachable for {name}")
        return NamedApp(name)

    wrong: list[str] = []
    failures = 0

    def work(i: int) -> None:
        nonlocal failures
        local = random.Random(100 + i)
        for _ in range(300):
            name = f"t{local.randrange(40)}"
            response = call(app, "/", host=f"{name}.example.com")
            if response.status == 500:
                assert response.body == "site 500 page"
                with lock:
                    failures += 1
            elif response.status != 200 or not response.body.startswith(f"{name}|"):
                with lock:
                    wrong.append(f"{name}: {response.status} {response.body}")

    errors = run_workers(8, work)
    assert errors == [] and wrong == []
    assert failures > 0
    with app.app_context():
        registry = dispatch.registry
        for name in registry:
            assert outcomes[name][-1] == "ok"  # only successes are held
        stats = registry.stats()
    assert stats.misses == 0
    assert stats.failures == sum(h.count("fail") for h in outcomes.values())
    assert stats.creations == sum(h.count("ok") for h in outcomes.values())
    # A failure is never kept: the next request for a name whose last call
    # failed calls its factory again.
    last_failed = [name for name, history in outcomes.items() if history[-1] == "fail"]
    assert last_failed
    for name in last_failed:
        calls = len(outcomes[name])
        call(app, "/", host=f"{name}.example.com")
        assert len(outcomes[name]) == calls + 1, name


def test_failing_herd_shares_one_failure() -> None:
    app = make_host_app(DISPATCH_MAX_WAITING=16)
    dispatch = Dispatch(app)
    entered, release = threading.Event(), threading.Event()
    calls = []

    @dispatch.subdomain
    def failing(name: str) -> WSGIApplication | None:
        calls.append(name)
        entered.set()
        assert release.wait(10)
        raise ConnectionError("down")

    cached = NamedApp("other")
    dispatch.path(lambda name: cached)
    assert call(app, "/other/").status == 200
    statuses: list[int] = []
    lock = threading.Lock()

    def work(i: int) -> None:
        response = call(app, host="acme.example.com")
        with lock:
            statuses.append(response.status)

    herd = waiting_herd(app, "acme", 16, work)
    assert entered.wait(10)
    # Another tenant is served while the failing factory runs.
    assert call(app, "/other/").body.startswith("other|")
    release.set()
    herd.join(30)
    assert calls == ["acme"]
    assert statuses == [500] * 16
    release.clear()
    entered.clear()
    # Not remembered: the next request calls the factory again.
    worker = threading.Thread(target=call, args=(app,), kwargs={"host": "acme.example.com"})
    worker.start()
    assert entered.wait(10)
    release.set()
    worker.join(10)
    assert calls == ["acme", "acme"]


def test_herd_through_wsgi_calls_factory_once() -> None:
    app = make_host_app(DISPATCH_MAX_WAITING=32)
    dispatch = Dispatch(app)
    calls = []
    release = threading.Event()

    @dispatch.subdomain
    def slow(name: str) -> WSGIApplication | None:
        calls.append(name)
        assert release.wait(10)
        return NamedApp(name)

    bodies: list[str] = []
    lock = threading.Lock()

    def work(i: int) -> None:
        body = call(app, host="acme.example.com").body
        with lock:
            bodies.append(body)

    errors: list[BaseException] = []
    herd = threading.Thread(target=lambda: errors.extend(run_workers(32, work)))
    herd.start()
    with app.app_context():
        wait_for(lambda: dispatch.registry.waiting("acme") == 32)
    release.set()
    herd.join(30)
    assert errors == []
    assert calls == ["acme"] and bodies == ["acme||/|acme"] * 32
