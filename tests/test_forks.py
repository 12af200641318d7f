"""Renewing per-process state in forked children (``flask_dispatch.forks``)."""

from __future__ import annotations

import gc

from flask_dispatch.forks import renew_in_child

from .conftest import in_forked_child

#: What the objects below did in this process (a forked child has its own copy).
renewed: list[str] = []


class Renewed:
    def __init__(self, name: str, fails: bool = False) -> None:
        self.name, self.fails = name, fails

    def renew(self) -> None:
        if self.fails:
            raise RuntimeError("can't start new thread")
        renewed.append(self.name)


def test_each_live_object_is_renewed_in_order_even_after_one_fails() -> None:
    # One failure must not leave the objects after it with the parent's locks.
    renewed.clear()
    objects = [Renewed("first"), Renewed("broken", fails=True), Renewed("last")]
    for one in objects:
        renew_in_child(one.renew)
    renew_in_child(Renewed("dropped").renew)
    gc.collect()
    in_child, _ = in_forked_child(lambda: list(renewed))
    assert in_child == ["first", "last"]
    assert renewed == []  # only in the child
