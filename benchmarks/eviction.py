"""What a creation costs when the registry is full and must evict.

Hits only stamp their entry with a use number; the least recently used entry
is worked out when one must go. So the creation that follows a long run of
hits pays for them: the worst case is the first eviction after every held
tenant has been hit since its use record was filed. Measured here next to a
creation that evicts nothing and one in steady churn, through the registry's
public ``get`` and ``hit`` (what a request does, without the HTTP parts).
"""

from __future__ import annotations

import random
import statistics
import time
import typing as t

from flask_dispatch import TenantRegistry

from .common import leaf, table

if t.TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication


def _factory(name: str) -> WSGIApplication:
    return leaf


def _timed_get(registry: TenantRegistry, name: str) -> float:
    start = time.perf_counter()
    registry.get(name, _factory)
    return time.perf_counter() - start


def _case(held: int, seed: int) -> tuple[float, float, float]:
    """Seconds for: a creation with room left, the first eviction after
    every held tenant was hit (in a random order), and the median creation
    of the 100 evicting ones after it."""
    registry = TenantRegistry(max_instances=held)
    for i in range(held - 1):
        registry.get(f"t{i}", _factory)
    with_room = _timed_get(registry, f"t{held - 1}")
    order = list(range(held))
    random.Random(seed).shuffle(order)
    for i in order:
        registry.hit(f"t{i}", _factory)
    after_hits = _timed_get(registry, "new0")
    churn = statistics.median(_timed_get(registry, f"new{k}") for k in range(1, 101))
    return with_room, after_hits, churn


def run(trials: int) -> tuple[str, dict[str, float]]:
    rows = []
    figures: dict[str, float] = {}
    for held in (1_000, 10_000):
        cases = [_case(held, seed) for seed in range(trials)]
        with_room, after_hits, churn = (statistics.median(c) for c in zip(*cases, strict=True))
        rows.append(
            (
                f"{held:,}",
                f"{with_room * 1e6:.1f}",
                f"{churn * 1e6:.1f}",
                f"{after_hits * 1e3:.2f}",
                f"{after_hits / churn:,.0f}",
            )
        )
        figures[f"eviction after hits s @ {held}"] = after_hits
    headers = [
        "held",
        "creation with room, µs",
        "evicting creation, churn, µs",
        "first eviction after every tenant was hit, ms",
        "÷ churn",
    ]
    return table(headers, rows), figures
