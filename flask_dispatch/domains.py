"""Customer domains: the answers of the user's ``@dispatch.domain`` resolver.

``acme.com`` and ``www.acme.com`` may both name tenant ``acme``. Answers,
names and "not ours" alike, are remembered for ``ttl`` seconds, at most
``max_size`` of them (the oldest goes first), and a tenant's are forgotten
when it is evicted. Concurrent requests for one host share one call of the
resolver and its answer; if it raises, each of them asks for itself.
"""

from __future__ import annotations

import logging
import threading
import time
import typing as t
from collections import OrderedDict

from .forks import renew_in_child

log = logging.getLogger("flask_dispatch")

#: A custom domain resolver: takes a canonical host, returns a tenant name
#: or ``None``.
Resolver = t.Callable[[str], str | None]


class _Asking:
    """One call of the resolver under way, and its answer once it has one."""

    __slots__ = ("answered", "done", "name")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.answered = False
        self.name: str | None = None


class DomainAnswers:
    """Remembered answers of a resolver.

    :param resolve: calls the user's resolver (in the host app's context).
    :param is_tenant_name: whether an answer is a valid tenant name.
    :param ttl: seconds an answer is remembered.
    :param max_size: most answers remembered.
    :param wait: most seconds a request waits for another's call of the
        resolver before it calls it itself.
    :param clock: monotonic clock in seconds.

    .. versionadded:: 0.2
    """

    def __init__(
        self,
        resolve: Resolver,
        is_tenant_name: t.Callable[[str], bool],
        ttl: float,
        max_size: int,
        wait: float = 10.0,
        clock: t.Callable[[], float] = time.monotonic,
    ) -> None:
        self._resolve = resolve
        self._is_tenant_name = is_tenant_name
        self._ttl = ttl
        self._max_size = max_size
        self._wait = wait
        self._clock = clock
        self._lock = threading.Lock()
        self._answers: OrderedDict[str, tuple[float, str | None]] = OrderedDict()
        # Hosts being asked about now, each with the answer its waiters share.
        self._pending: dict[str, _Asking] = {}
        # Counts calls of forget: an answer asked for before one is not kept,
        # as the resolver may have read what the eviction was about.
        self._forgets = 0
        renew_in_child(self._after_fork)

    def _after_fork(self) -> None:
        """In a forked child: the lock may have been held by a thread that
        did not survive the fork, and so were the resolver calls under way."""
        self._lock = threading.Lock()
        self._pending.clear()

    def name_for(self, host: str) -> str | None:
        """The tenant that ``host`` belongs to, or ``None``.

        :param host: a canonical host outside the dispatch domains.
        """
        now = self._clock()
        with self._lock:
            answer = self._answers.get(host)
            if answer is not None and answer[0] > now:
                return answer[1]
            asking = self._pending.get(host)
            if asking is None:
                asking = self._pending[host] = _Asking()
                first = True
            else:
                first = False
        if not first:
            # Another request is asking: share its answer. If it failed, or
            # takes longer than a creation may, ask for ourselves.
            if asking.done.wait(self._wait) and asking.answered:
                return asking.name
            return self._ask(host)
        try:
            asking.name = self._ask(host)
            asking.answered = True
            return asking.name
        finally:
            with self._lock:
                if self._pending.get(host) is asking:  # not forgotten meanwhile
                    del self._pending[host]
            asking.done.set()

    def _ask(self, host: str) -> str | None:
        # Remembered from when it was asked, not from when a request began.
        now, forgets = self._clock(), self._forgets
        name = self._resolve(host)
        if name is not None and not (isinstance(name, str) and self._is_tenant_name(name)):
            log.warning("The domain resolver gave %r for host %r: not a tenant name.", name, host)
            name = None
        with self._lock:
            if forgets != self._forgets:
                return name
            self._answers[host] = (now + self._ttl, name)
            self._answers.move_to_end(host)
            while len(self._answers) > self._max_size:
                self._answers.popitem(last=False)
        return name

    def forget(self, name: str | None) -> None:
        """Forget the domains of tenant ``name`` and every "not ours" answer
        (one may be the new tenant's domain), or every answer (``None``).
        An answer the resolver is giving meanwhile is not remembered."""
        with self._lock:
            self._forgets += 1
            # Requests from now on do not join a call under way: it may
            # answer what was just forgotten.
            self._pending.clear()
            if name is None:
                self._answers.clear()
            for host in [h for h, (_, n) in self._answers.items() if n in (name, None)]:
                del self._answers[host]
