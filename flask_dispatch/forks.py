"""Renew what belongs to one process in a forked child.

A lock held by a thread that did not survive a fork stays locked in the
child, and threads, pending work and connections are the parent's. Objects
that hold such state register a method here; each forked child calls the
methods of those still alive, in the order they were registered. Only the
methods' objects are weakly referenced, so an object dropped (one app per
test, say) leaves nothing behind: ``os.register_at_fork`` offers no way to
remove a hook, so one hook serves them all.
"""

from __future__ import annotations

import logging
import os
import threading
import typing as t
import weakref

_methods: list[weakref.WeakMethod[t.Callable[[], None]]] = []
_lock = threading.Lock()


def renew_in_child(method: t.Callable[[], None]) -> None:
    """Call the bound ``method`` in every forked child while its object lives.

    :param method: a bound method, e.g. ``self._after_fork``.
    """
    with _lock:
        _methods[:] = [m for m in _methods if m() is not None]
        _methods.append(weakref.WeakMethod(method))


def _in_child() -> None:
    global _lock
    _lock = threading.Lock()
    for ref in list(_methods):
        method = ref()
        if method is not None:
            # One failure (a thread that cannot start, say) must not leave
            # the objects after it with the parent's locks.
            try:
                method()
            except Exception:
                logging.getLogger("flask_dispatch").exception(
                    "Renewing %r in a forked child failed.", method
                )


os.register_at_fork(after_in_child=_in_child)
