"""Evictions that reach every process sharing one Redis and prefix.

Each process holds an :class:`EvictionBus`. :meth:`~EvictionBus.publish` adds
an entry to the Redis Stream ``<prefix>:evictions``; a daemon thread in every
process reads that stream and calls ``on_evict(name)``, or ``on_evict(None)``
for "drop everything". Imported only when Redis is configured.

Delivery is at least once to every process that serves. A process reads on
from the last entry it saw, so one cut off from Redis replays what it missed
when it is back. Where it cannot show that nothing was missed (Redis
restarted: its ``run_id`` changed; or entries after its position were trimmed
or deleted) it calls ``on_evict(None)`` and goes on from the stream's end.
Replay is chosen over dropping everything on each reconnect so that a brief
network blip does not make every process rebuild every tenant at once.

The listener starts at the first :meth:`~EvictionBus.ensure_started` in the
process that serves (after any fork: a forked child gets its own id and
listener), and reads from when the bus was made (a child of processes that
never listened: from the fork), less a second for clock steps: an eviction
written while it was connecting is not missed, and a worker forked long
after a ``--preload`` master made its app does not take the entries trimmed
since for missed ones. Entries a process wrote itself are skipped: it
applied them already. An entry's fields are ``origin`` (a random id per
process) and either ``name`` (UTF-8) or ``all`` (``1``); any other entry is
logged and skipped. A restart of Redis makes every process drop every
tenant once.

While Redis is unreachable, requests go on, :meth:`~EvictionBus.publish`
keeps evictions pending (a bounded list that collapses into one "drop
everything") until it is back, the outage is logged once and the listener
retries with backoff capped at half a second. A process that exits with
evictions pending tries once more to send them, and logs a warning with
their number when it cannot. Needs Redis 7.0 or newer (the
stream counters that show continuity). Not covered: someone deleting the
stream key while a process is away.
"""

from __future__ import annotations

import atexit

# The listener connects on its own thread. socket.getaddrinfo encodes the
# host with the "idna" codec, whose first use imports encodings.idna under
# that module's import lock: a fork at that moment (gunicorn --preload after
# a warm-up) leaves the lock held in the child, and the child's own first
# idna encoding (Werkzeug binds every request's URL adapter with one) waits
# on it forever. Imported here, the codec is there before any thread starts.
import encodings.idna  # noqa: F401
import logging
import random
import reprlib
import secrets
import threading
import time
import typing as t
import weakref

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from .forks import renew_in_child

if t.TYPE_CHECKING:
    from collections.abc import Callable

    from redis.typing import EncodableT, FieldT

#: Entries the stream keeps (trimmed approximately): how far behind a
#: process may fall and still replay instead of dropping everything.
MAXLEN = 10_000
#: Evictions kept while Redis is unreachable; more collapse into one "all".
MAX_PENDING = 1_000
#: Longest tenant name carried, in bytes; a longer one is sent as "all".
MAX_NAME = 1_024
#: How long one read waits for entries (ms): also how often the listener
#: retries pending evictions and notices :meth:`EvictionBus.close`.
BLOCK_MS = 1_000
#: Most entries one read takes.
READ_COUNT = 1_000
#: First and longest wait between reconnection attempts (s). The cap keeps
#: delivery within a second of Redis coming back.
BACKOFF = (0.05, 0.5)
#: At exit, the longest wait (s) for a send under way on another thread: a
#: process must not hang on a Redis that does. In its own send, each
#: exchange with Redis then waits a second at most, once.
EXIT_WAIT = 2.0
# Connection options for a send that must not hold a process up.
_ONE_SECOND_ONCE: dict[str, t.Any] = {
    "socket_timeout": 1.0,
    "socket_connect_timeout": 1.0,
    "retry": Retry(NoBackoff(), 0),
}

_StreamId = tuple[int, int]
#: What XREAD answers (RESP2, bytes): ``[(key, [(entry id, fields), ...])]``.
_Reply = list[tuple[bytes, list[tuple[bytes, dict[bytes, bytes]]]]]


class EvictionBus:
    """Publish evictions to, and apply them from, the other processes.

    :param url_or_client: a ``redis://`` URL, or a client made with
        ``decode_responses=False`` and RESP2 whose ``socket_timeout`` is
        ``None`` or longer than :data:`BLOCK_MS`.
    :param prefix: the key prefix shared by every process of one site.
    :param on_evict: called from the listener thread with a tenant name, or
        ``None`` to drop every tenant.
    :param logger: where outages and malformed entries are logged.
    :param maxlen: entries the stream keeps.
    """

    def __init__(
        self,
        url_or_client: str | redis.Redis,
        prefix: str,
        on_evict: Callable[[str | None], None],
        *,
        logger: logging.Logger | None = None,
        maxlen: int = MAXLEN,
    ) -> None:
        self._url: str | None = None  # when the bus makes its own clients
        if isinstance(url_or_client, str):
            self._url = url_or_client
        else:
            given = url_or_client.get_connection_kwargs()
            if given.get("decode_responses") or str(given.get("protocol") or 2) != "2":
                raise ValueError("EvictionBus needs a client with decode_responses=False and RESP2")
            self._reader = self._writer = url_or_client
        self._key = f"{prefix}:evictions"
        self._on_evict = on_evict
        self._log = logger or logging.getLogger(__name__)
        self._maxlen = maxlen
        self._listened = False  # by this process or one it was forked from
        self._last_id: _StreamId | None = None
        self._run_id: str | None = None
        self._closed = False
        #: Why :meth:`close` could not send what was pending, if it could not.
        self.send_error: redis.RedisError | None = None
        self._after_fork()
        renew_in_child(self._after_fork)
        _buses.add(self)

    def _after_fork(self) -> None:
        """Set up what belongs to one process; a forked child runs it first.
        Clients made from the URL are made anew: a pool's lock may have
        been held by a thread that did not survive the fork."""
        if not self._listened:
            # What this process holds dates from here on (a child of processes
            # that never listened holds nothing from before the fork): a fresh
            # listener reads from then.
            self._anchor = time.monotonic()
        if self._url is not None:
            # The parent's clients are kept, not collected: closing them here
            # would take the very pool lock that may be held, in a grandchild
            # too (so kept for good, one pair per generation).
            if hasattr(self, "_reader"):  # a child, not the bus being made
                _kept_across_forks.append((self._reader, self._writer))
            # No retries inside redis-py: the listener's own backoff decides.
            options = {**_ONE_SECOND_ONCE, "protocol": 2}
            self._writer = redis.Redis.from_url(self._url, **options)
            options["socket_timeout"] = BLOCK_MS / 1000 + 5  # a read blocks BLOCK_MS
            self._reader = redis.Redis.from_url(self._url, **options)
        # Set once the listener has read all that was published since the
        # bus was made, or once its first attempt failed (see wait_caught_up).
        self._caught_up, self._tried = threading.Event(), threading.Event()
        self._origin = secrets.token_hex(8).encode()
        self._lock = threading.Lock()  # guards _pending and _thread
        self._send_lock = threading.Lock()  # one sender at a time keeps order
        self._pending: list[bytes | None] = []  # encoded names, None for "all"
        self._thread: threading.Thread | None = None
        self._sender: threading.Thread | None = None
        self._wake = threading.Event()  # set by publish: something to send
        self._healthy = True  # connected: the sender sends at once
        self._outage = False  # logged, and no read has succeeded since
        self._closing = threading.Event()
        if self._closed:
            self._closing.set()

    def ensure_started(self) -> None:
        """Start this process's listener and sender unless they run; cheap
        per request."""
        if self._thread is not None:
            return
        with self._lock:
            if self._thread is None and not self._closed:
                self._listened = True
                self._sender = threading.Thread(target=self._send, daemon=True)
                self._sender.start()
                self._thread = threading.Thread(
                    target=self._run, name="flask_dispatch-evictions", daemon=True
                )
                self._thread.start()

    def publish(self, name: str | None) -> None:
        """Tell the other processes to drop tenant ``name`` (``None``: all).
        Never raises for Redis being down, and never waits for it: a
        sender thread sends, and what it cannot send now is sent when Redis
        is back.
        """
        encoded = sent_as(name)
        with self._lock:
            self._pending.append(encoded)
            # A burst (a bulk change evicting thousands) is sent in full
            # while Redis takes it, up to what the stream keeps anyway.
            if len(self._pending) > (self._maxlen if self._healthy else MAX_PENDING):
                self._pending = [None]
        self.ensure_started()
        self._wake.set()

    def _send(self) -> None:
        """Send what :meth:`publish` queued, off the request's thread: a
        Redis that hangs must not hold requests. What fails stays pending;
        the listener sends it once it has reconnected."""
        while True:
            self._wake.wait()
            self._wake.clear()
            if self._closing.is_set():
                return  # close() sends what is left
            if self._healthy:
                try:
                    self._flush()
                except redis.RedisError as e:
                    self._log.debug("Eviction kept pending: %s", e)

    def wait_caught_up(self, timeout: float) -> bool:
        """Start the listener unless it runs, and wait until it has applied
        what was published since the bus was made, for at most ``timeout``
        seconds, or until its first attempt failed (Redis is down: no use
        waiting); whether it has caught up.

        .. versionadded:: 0.2
        """
        if self._closed:
            return False
        self.ensure_started()
        self._tried.wait(timeout)
        return self._caught_up.is_set()

    @property
    def where(self) -> str:
        """The Redis it uses, without credentials: ``host:port/db``, or a
        socket path and ``/db``."""
        options = self._writer.get_connection_kwargs()
        place = options.get("path") or f"{options.get('host')}:{options.get('port')}"
        return f"{place}/{options.get('db', 0)}"

    @property
    def pending(self) -> int:
        """How many evictions wait to be sent (Redis was unreachable)."""
        with self._lock:
            return len(self._pending)

    def close(self) -> None:
        """Send what is pending (after any send under way), and stop the
        listener. What could not be sent is left in :attr:`pending`, and
        why in :attr:`send_error`."""
        self._closed = True
        self._closing.set()
        self._wake.set()
        if self._sender is not None:  # let a send under way finish first
            self._sender.join(5)
        try:
            self._flush()
        except redis.RedisError as e:
            self.send_error = e
            self._log.warning("Evictions %s: %d (%s)", not_sent(e), len(self._pending), e)
        owned = self._url is not None
        deadline = time.monotonic() + BLOCK_MS / 1000 + 1
        while self._thread is not None and self._thread.is_alive() and time.monotonic() < deadline:
            if owned:  # wake its read; again, as it may have begun one since
                self._reader.close()
            self._thread.join(0.05)
        if owned:
            self._writer.close()

    def _send_at_exit(self, deadline: float) -> None:
        """The process is exiting: send what is pending, waiting at most a
        second for Redis, or say what is lost. Nothing is sent once
        ``deadline`` (``time.monotonic()``) has passed."""
        lost = "other processes may serve those tenants until they are evicted again"
        # After any send under way, which puts its batch back if it fails.
        wait = min(EXIT_WAIT, deadline - time.monotonic())
        if wait <= 0 or not self._send_lock.acquire(timeout=wait):
            self._log.warning("Evictions may be lost at exit: a send to Redis hangs; %s", lost)
            return
        try:
            if self._pending:
                writer = self._exit_writer()
                try:
                    self._send_pending(writer)
                finally:
                    if writer is not self._writer:
                        writer.connection_pool.disconnect()
        except redis.RedisError as e:
            self._log.warning(
                "Evictions %s at exit: %d (%s); %s", not_sent(e), len(self._pending), e, lost
            )
        finally:
            self._send_lock.release()

    def _exit_writer(self) -> redis.Redis:
        """The bus's own writer (each exchange waits a second at most, once),
        or one like it to the Redis of a client given, which may wait and
        retry for minutes."""
        if self._url is not None:
            return self._writer
        pool: t.Any = getattr(self._writer, "connection_pool", None)
        if type(pool) not in (redis.ConnectionPool, redis.BlockingConnectionPool):
            raise redis.RedisError(f"a client with a {type(pool).__name__} is not used at exit")
        options = {**pool.connection_kwargs, **_ONE_SECOND_ONCE}
        return redis.Redis(
            connection_pool=redis.ConnectionPool(connection_class=pool.connection_class, **options)
        )

    def _flush(self) -> None:
        with self._send_lock:
            self._send_pending(self._writer)

    def _send_pending(self, writer: redis.Redis) -> None:
        """Send what is pending through ``writer``; call with the send lock held."""
        with self._lock:
            batch, self._pending = self._pending, []
        if not batch:
            return
        try:
            with writer.pipeline(transaction=False) as pipe:
                for name in batch:
                    fields: dict[FieldT, EncodableT] = {b"origin": self._origin}
                    fields.update({b"all": b"1"} if name is None else {b"name": name})
                    pipe.xadd(self._key, fields, maxlen=self._maxlen, approximate=True)
                pipe.execute()
        except BaseException:
            with self._lock:  # resent whole: at least once
                self._pending = batch + self._pending
                if len(self._pending) > MAX_PENDING:
                    self._pending = [None]
            raise

    def _run(self) -> None:
        delay = BACKOFF[0]
        while not self._closing.is_set():
            try:
                self._connect()
                while not self._closing.is_set():
                    if self._pending:
                        self._flush()
                    if not self._caught_up.is_set():
                        # Without waiting for news: see wait_caught_up.
                        while self._read(None) == READ_COUNT and not self._closing.is_set():
                            pass
                        self._caught_up.set()
                        self._tried.set()
                    self._read(BLOCK_MS)
                    self._check_same_server()
                    if self._outage:
                        self._log.info("Redis reachable again; evictions flow")
                        self._outage = False
                    delay = BACKOFF[0]
            except Exception as e:  # never let the listener die: back off, retry
                self._tried.set()
                self._healthy = False
                if self._closing.is_set():
                    break
                if not self._outage:
                    self._outage = True
                    self._log.warning(
                        "Redis unreachable, serving on; evictions wait until it is back: %s",
                        e,
                        exc_info=not isinstance(e, redis.RedisError),
                    )
                self._closing.wait(delay * random.uniform(0.5, 1.0))
                delay = min(delay * 2, BACKOFF[1])

    def _connect(self) -> None:
        server = self._reader.info("server")
        if int(str(server["redis_version"]).split(".")[0]) < 7:
            raise redis.RedisError("the eviction bus needs Redis 7.0 or newer")
        if self._last_id is None:
            seconds, micros = self._reader.time()
            # Taken after TIME answered, so the start is not late; a second
            # more covers clock steps. Replaying a few old entries is harmless.
            behind = time.monotonic() - self._anchor + 1.0
            self._last_id = (max(0, int((seconds + micros / 1e6 - behind) * 1000)), 0)
            self._run_id = server["run_id"]
        restarted = server["run_id"] != self._run_id
        self._catch_up(self._last_id, "Redis restarted" if restarted else None)
        # Only once caught up: should that fail (Redis still loading, say),
        # the next attempt must still see the restart.
        self._run_id = server["run_id"]
        self._healthy = True

    def _check_same_server(self) -> None:
        """Catch up again if Redis restarted since :meth:`_connect`: redis-py
        reconnects a pooled connection to a restarted server without
        raising, and what the old server got after the last read is lost."""
        if self._reader.info("server")["run_id"] != self._run_id:
            self._connect()

    def _catch_up(self, since: _StreamId, reason: str | None = None) -> bool:
        """If entries after ``since`` may be lost (or ``reason`` says so),
        drop everything and go on from the stream's end."""
        try:
            info = self._reader.xinfo_stream(self._key)
        except redis.ResponseError as e:
            if "no such key" not in str(e):
                raise
            info = None  # nothing written yet, or deleted (not covered)
        if reason is None and (info is None or not _lost(info, since)):
            return False
        self._log.warning("Dropping every tenant: %s", reason or "evictions were missed")
        self._call(None)
        self._last_id = (0, 0) if info is None else _parse_id(info["last-generated-id"])
        return True

    def _read(self, block: int | None) -> int:
        """Apply the entries after the last one seen, waiting ``block`` ms
        for some (``None``: not at all); how many were read."""
        assert self._last_id is not None
        since = self._last_id
        start = f"{since[0]}-{since[1]}"
        reply = self._reader.xread({self._key: start}, count=READ_COUNT, block=block)
        entries = [entry for _key, batch in t.cast(_Reply, reply) or () for entry in batch]
        if not entries or self._catch_up(since):
            return len(entries)
        for entry_id, fields in entries:
            try:
                origin, name = _parse_entry(fields)
            except ValueError:
                self._log.warning(
                    "Ignored malformed eviction %r: %s", entry_id, reprlib.repr(fields)
                )
            else:
                if origin != self._origin:
                    self._call(name)
            self._last_id = _parse_id(entry_id)
        return len(entries)

    def _call(self, name: str | None) -> None:
        try:
            self._on_evict(name)
        except Exception:
            self._log.exception("on_evict(%r) failed", name)


# Clients a forked child replaced (see EvictionBus._after_fork).
_kept_across_forks: list[tuple[t.Any, t.Any]] = []

#: The buses of this process, for the exit hook (a bus leaves it once
#: closed and collected).
_buses: weakref.WeakSet[EvictionBus] = weakref.WeakSet()


def not_sent(error: BaseException | None) -> str:
    """What became of evictions whose write failed with ``error``, in words:
    after a timeout, Redis may have applied it all the same."""
    return "perhaps not sent" if isinstance(error, redis.TimeoutError) else "not sent"


@atexit.register
def _send_pending_at_exit() -> None:
    deadline = time.monotonic() + 2 * EXIT_WAIT  # for all of them
    for bus in list(_buses):
        if bus._closed:  # close() sent what it could, and said so
            continue
        try:
            bus._send_at_exit(deadline)
        except Exception:  # the next bus still gets its turn
            bus._log.exception("Sending pending evictions at exit failed")


def _parse_id(raw: bytes) -> _StreamId:
    ms, _, seq = raw.partition(b"-")
    return int(ms), int(seq)


def sent_as(name: str | None) -> bytes | None:
    """What :meth:`EvictionBus.publish` sends for ``name``: its UTF-8, or
    ``None`` ("all") for ``None`` and for a name UTF-8 cannot encode (lone
    surrogates) or longer than :data:`MAX_NAME` bytes: dropping every
    tenant is always safe.

    .. versionadded:: 0.2
    """
    if name is None:
        return None
    try:
        encoded = name.encode()
    except UnicodeEncodeError:
        return None
    return encoded if len(encoded) <= MAX_NAME else None


def _parse_entry(fields: dict[bytes, bytes]) -> tuple[bytes, str | None]:
    """``(origin, name)`` of a well-formed entry; :exc:`ValueError` else."""
    keys = set(fields)
    if keys == {b"origin", b"all"} and fields[b"all"] == b"1":
        return fields[b"origin"], None
    if keys == {b"origin", b"name"} and len(fields[b"name"]) <= MAX_NAME:
        return fields[b"origin"], fields[b"name"].decode()  # UnicodeDecodeError is a ValueError
    raise ValueError("malformed")


def _lost(info: dict[str, t.Any], since: _StreamId) -> bool:
    """Whether entries after ``since`` may have been deleted: XDEL shows in
    ``max-deleted-entry-id``; trimming (of the oldest) as fewer entries than
    were ever added, with the oldest left newer than ``since``."""
    if _parse_id(info["max-deleted-entry-id"]) > since:
        return True
    if info["length"] == info["entries-added"]:
        return False
    oldest = info["recorded-first-entry-id"] if info["length"] else info["last-generated-id"]
    return _parse_id(oldest) > since
