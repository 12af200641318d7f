"""The request mixes: which tenants the requests of a benchmark go to.

Every dispatcher holds the same :data:`~benchmarks.common.HELD` tenants; a
mix is a fixed list of :data:`REQUESTS` tenant names (all held) that a
benchmark cycles through:

``10``
    10 distinct tenants, spread over the held ones.
``zipf``
    Popularity as on a real multi-tenant site: :data:`DRAWS` ranks drawn
    Zipf (s = 1.1) over :data:`NAMES` names, mapped through a fixed random
    permutation so that popularity is not alphabetical. The held tenants are
    the names drawn most; the mix is the draws that land on them, in draw
    order. (Draws that miss would create a tenant; what a creation costs is
    measured apart, in the eviction section.)
``uniform``
    Uniform over all held tenants: every request is likely to a tenant
    whose objects are out of the CPU caches.

Everything comes from fixed seeds, so every process builds the same lists.
"""

from __future__ import annotations

import functools
import itertools
import random
from collections import Counter

from .common import HELD

#: Names Zipf ranks are drawn over.
NAMES = 100_000
#: Zipf exponent.
ZIPF_S = 1.1
#: Zipf draws; the held tenants are the most drawn of them.
DRAWS = 200_000
#: Requests in each mix's list (cycled through by a benchmark).
REQUESTS = 16_384
MIXES = ("10", "zipf", "uniform")
SEED = 14


def name(number: int) -> str:
    return f"t{number:05d}"


@functools.cache
def _zipf_draws() -> list[str]:
    cum_weights = list(itertools.accumulate(rank**-ZIPF_S for rank in range(1, NAMES + 1)))
    ranks = random.Random(SEED).choices(range(NAMES), cum_weights=cum_weights, k=DRAWS)
    permutation = list(range(NAMES))
    random.Random(SEED + 1).shuffle(permutation)
    return [name(permutation[rank]) for rank in ranks]


@functools.cache
def held() -> list[str]:
    """The held tenants: the names drawn most, in order of name (which is
    the order they are created in)."""
    return sorted(n for n, _ in Counter(_zipf_draws()).most_common(HELD))


@functools.cache
def mix(kind: str) -> list[str]:
    """:data:`REQUESTS` tenant names, all held, for mix ``kind``."""
    names = held()
    rng = random.Random(SEED)
    if kind == "10":
        ten = names[:: len(names) // 10][:10]
        return [rng.choice(ten) for _ in range(REQUESTS)]
    if kind == "zipf":
        kept = set(names)
        return [n for n in _zipf_draws() if n in kept][:REQUESTS]
    if kind == "uniform":
        return [rng.choice(names) for _ in range(REQUESTS)]
    raise ValueError(f"unknown mix {kind!r}; pick from {MIXES}")


def describe() -> str:
    """A few lines on the mixes as built, for the report."""
    draws = _zipf_draws()
    kept = set(held())
    on_held = sum(n in kept for n in draws) / len(draws)
    lines = [
        f"mixes: {REQUESTS:,} requests each, cycled; {HELD:,} tenants held by every dispatcher",
        f"  10: {len(set(mix('10')))} distinct tenants",
        f"  zipf: {len(set(mix('zipf'))):,} distinct tenants; s = {ZIPF_S} over {NAMES:,} names,"
        f" {DRAWS:,} draws, {on_held:.1%} of them on held tenants (the rest are not timed)",
        f"  uniform: {len(set(mix('uniform'))):,} distinct tenants",
    ]
    return "\n".join(lines)
