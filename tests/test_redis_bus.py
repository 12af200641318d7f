"""The eviction bus against a real ``redis-server`` on loopback: buses stand
for processes; outages are the server stopped and started again, or one
bus's Redis user switched off.

Skipped when ``redis-server`` or redis-py is missing, unless
``DISPATCH_TEST_REQUIRE_REDIS=1`` (CI) turns the skip into a failure.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import subprocess
import sys
import threading
import time
import typing as t

import pytest

from .conftest import RecordingFactory, call, make_host_app, wait_for
from .redis_server import silent_server

if t.TYPE_CHECKING:
    from collections.abc import Iterator

    import redis

    from flask_dispatch.redis_bus import EvictionBus

    from .redis_server import RedisServer

pytestmark = [pytest.mark.redis, pytest.mark.timeout(60)]

OUTAGE = "Redis unreachable"
BACK = "Redis reachable again"


@pytest.fixture
def server(redis_server: RedisServer) -> RedisServer:
    return redis_server


@pytest.fixture
def admin(server: RedisServer) -> Iterator[redis.Redis]:
    """A plain client, for what a stranger (or an operator) would do."""
    import redis

    client = redis.Redis.from_url(server.url)
    yield client
    client.close()


class Recorder:
    """An ``on_evict`` that records its calls and lets a test wait for one."""

    def __init__(self) -> None:
        self.calls: list[str | None] = []
        self._changed = threading.Condition()

    def __call__(self, name: str | None) -> None:
        with self._changed:
            self.calls.append(name)
            self._changed.notify_all()

    def wait_for(self, name: str | None, timeout: float = 5.0) -> None:
        with self._changed:
            found = self._changed.wait_for(lambda: name in self.calls, timeout)
        assert found, f"{name!r} not received in {timeout} s; got {self.calls}"


class Process(t.NamedTuple):
    """A bus standing for one process, and what it was told to evict."""

    bus: EvictionBus
    got: Recorder


class Processes:
    """Makes buses (one per pretend process) and closes them after the test."""

    def __init__(self, server: RedisServer) -> None:
        self.server = server
        self.made: list[EvictionBus] = []

    def __call__(
        self,
        prefix: str = "site",
        on_evict: t.Callable[[str | None], None] | None = None,
        *,
        url: str | redis.Redis | None = None,
        start: bool = True,
        logger: str = "test.bus",
        **options: t.Any,
    ) -> Process:
        from flask_dispatch.redis_bus import EvictionBus

        recorder = Recorder()
        bus = EvictionBus(
            url or self.server.url,
            prefix,
            on_evict or recorder,
            logger=logging.getLogger(logger),
            **options,
        )
        self.made.append(bus)
        if start:
            bus.ensure_started()
        return Process(bus, recorder)


@pytest.fixture
def processes(server: RedisServer) -> Iterator[Processes]:
    made = Processes(server)
    yield made
    for bus in made.made:
        bus.close()


def listeners() -> int:
    return sum(th.name == "flask_dispatch-evictions" for th in threading.enumerate())


def logged(caplog: pytest.LogCaptureFixture, text: str, logger: str = "test.bus") -> int:
    return sum(r.name == logger and text in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("acme", id="one tenant"),
        pytest.param("bücher", id="non-ASCII name"),
        pytest.param(None, id="all tenants"),
    ],
)
def test_every_other_process_receives_an_eviction(processes: Processes, name: str | None) -> None:
    a = processes()
    b = processes()
    c = processes()
    a.bus.publish(name)
    b.got.wait_for(name)
    c.got.wait_for(name)
    # Entries are read in order: once ``a`` has the marker it has passed its own.
    c.bus.publish("marker")
    a.got.wait_for("marker")
    b.got.wait_for("marker")
    assert a.got.calls == ["marker"], "a process applies its own eviction locally, not again"
    assert b.got.calls == [name, "marker"]


def test_other_prefixes_are_other_sites(processes: Processes) -> None:
    a = processes("site")
    other = processes("other-site")
    b = processes("site")
    other.bus.publish("acme")
    other.bus.publish(None)
    b.bus.publish("marker")
    a.got.wait_for("marker")
    assert a.got.calls == ["marker"]
    assert other.got.calls == []


def test_an_eviction_before_the_listener_connects_is_not_missed(processes: Processes) -> None:
    # A process may build a tenant in its first request while its listener
    # is still connecting: the listener starts from when the bus was made.
    late = processes(start=False)
    a = processes()
    a.bus.publish("acme")
    late.bus.ensure_started()
    late.got.wait_for("acme")


def test_ensure_started_starts_one_listener_per_process(processes: Processes) -> None:
    before = listeners()
    bus = processes(start=False).bus
    barrier = threading.Barrier(8)

    def start() -> None:
        barrier.wait()
        for _ in range(100):
            bus.ensure_started()

    threads = [threading.Thread(target=start) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert listeners() == before + 1
    bus.close()
    assert listeners() == before


def test_a_cut_off_process_replays_what_it_missed(
    processes: Processes, server: RedisServer, admin: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    admin.acl_setuser("b", enabled=True, passwords=["+secret"], keys=["*"], commands=["+@all"])
    a = processes()
    b = processes(url=f"redis://b:secret@127.0.0.1:{server.port}/0", logger="test.b")
    a.bus.publish("hello")
    b.got.wait_for("hello")
    admin.acl_setuser("b", enabled=False)
    admin.client_kill_filter(user="b")
    wait_for(lambda: logged(caplog, OUTAGE, "test.b") == 1)
    a.bus.publish("acme")
    admin.acl_setuser("b", enabled=True)
    b.got.wait_for("acme")
    assert b.got.calls == ["hello", "acme"], "same server: replayed, not dropped"


def test_a_cut_off_process_sends_its_evictions_when_back(
    processes: Processes, server: RedisServer, admin: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    admin.acl_setuser("a", enabled=True, passwords=["+secret"], keys=["*"], commands=["+@all"])
    a = processes(url=f"redis://a:secret@127.0.0.1:{server.port}/0", logger="test.a")
    b = processes()
    admin.acl_setuser("a", enabled=False)
    admin.client_kill_filter(user="a")
    wait_for(lambda: logged(caplog, OUTAGE, "test.a") == 1)
    for name in ("acme", "globex"):
        a.bus.publish(name)
    admin.acl_setuser("a", enabled=True)
    b.got.wait_for("globex")
    assert b.got.calls == ["acme", "globex"]


def test_after_a_redis_restart_every_process_drops_everything_within_a_second(
    processes: Processes, server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    a = processes()
    b = processes()
    a.bus.publish("hello")
    b.got.wait_for("hello")
    server.stop()
    wait_for(lambda: logged(caplog, OUTAGE) == 2)
    started_at = time.monotonic()
    server.start()
    a.bus.publish("acme")
    # Nothing survives a restart without persistence: both start afresh
    # (``b`` may also get "acme", depending on who reconnects first).
    b.got.wait_for(None, timeout=1.0)
    a.got.wait_for(None, timeout=1.0)
    assert time.monotonic() - started_at < 1.0
    assert b.got.calls[:2] == ["hello", None]


def test_a_restart_while_the_listener_applies_evictions_is_seen(
    processes: Processes, server: RedisServer, admin: redis.Redis
) -> None:
    # redis-py quietly reconnects a pooled connection whose server went away:
    # a restart between two reads (while a tenant_evicted receiver runs,
    # say) must still be seen, or what the old Redis got meanwhile is lost.
    busy, release = threading.Event(), threading.Event()
    got = Recorder()

    def on_evict(name: str | None) -> None:
        got(name)
        if name == "slowpoke":
            busy.set()
            release.wait(10)

    a, _ = processes(), processes(on_evict=on_evict)
    a.bus.publish("slowpoke")
    assert busy.wait(5)
    a.bus.publish("acme")  # written to the old Redis; never read from it
    wait_for(lambda: admin.xlen("site:evictions") == 2)
    server.stop()
    server.start()
    release.set()
    got.wait_for(None, timeout=5.0)
    assert got.calls[0] == "slowpoke"


def test_a_restart_is_seen_even_when_the_first_catch_up_fails(
    processes: Processes, server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    # Redis may answer INFO after a restart and still fail what comes next
    # (while it loads its data, say): the next attempt must see the restart.
    import redis

    class FailsOnceArmed(redis.Redis):
        armed = False

        def xinfo_stream(self, name: t.Any, full: bool = False) -> t.Any:
            if self.armed:
                self.armed = False
                raise redis.ConnectionError("LOADING Redis is loading the dataset in memory")
            return super().xinfo_stream(name, full)

    client = FailsOnceArmed(host="127.0.0.1", port=server.port, socket_connect_timeout=1.0)
    a, b = processes(), processes(url=client, logger="test.b")
    a.bus.publish("hello")
    b.got.wait_for("hello")
    server.stop()
    wait_for(lambda: logged(caplog, OUTAGE, "test.b") == 1)
    client.armed = True
    server.start()
    b.got.wait_for(None, timeout=10.0)
    assert not client.armed  # the failure did happen
    client.close()


def test_publishing_while_redis_is_down_neither_raises_nor_waits(
    processes: Processes, server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    a = processes()
    # Made before the evictions but listening only after the restart: it
    # can get them only from the new server's stream.
    b = processes(start=False)
    server.stop()
    for name in ("acme", "globex"):
        started_at = time.monotonic()
        a.bus.publish(name)
        assert time.monotonic() - started_at < 0.5
        # The first is published before the listener noticed, the second after.
        wait_for(lambda: logged(caplog, OUTAGE) == 1)
    server.start()
    b.bus.ensure_started()
    b.got.wait_for("globex")
    assert b.got.calls == ["acme", "globex"]


#: A process that evicts while Redis is unreachable (through the URL, or a
#: client made without a socket timeout), waits for a line on stdin, and
#: exits (as a gunicorn worker does on SIGTERM or max_requests).
EXITING_PROCESS = """
import logging, sys, time
import redis
logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
from flask_dispatch.redis_bus import EvictionBus
url, given = sys.argv[1], sys.argv[2] == "client"
bus = EvictionBus(redis.Redis.from_url(url) if given else url, "site", lambda name: None)
sys.stdin.readline()
bus.publish("acme")
time.sleep(0.3)  # the sender's attempt is over, unless Redis hangs
print(bus.pending, flush=True)
sys.stdin.readline()
"""


NOT_SENT = "WARNING Evictions not sent at exit: 1"
#: After a timeout, Redis may have added them all the same.
PERHAPS_NOT_SENT = "WARNING Evictions perhaps not sent at exit: 1"


@pytest.mark.parametrize(
    ("redis_at", "client", "warning"),
    [
        pytest.param(("down", "down"), "url", NOT_SENT, id="down"),
        pytest.param(("down", "back"), "url", None, id="back"),
        pytest.param(("down", "hangs"), "url", PERHAPS_NOT_SENT, id="hangs"),
        pytest.param(("down", "back"), "client", None, id="back-client-given"),
        # redis-py's defaults would wait 5 s, ten times over.
        pytest.param(("down", "hangs"), "client", PERHAPS_NOT_SENT, id="hangs-client-given"),
        pytest.param(
            ("hangs", "hangs"),
            "client",
            "WARNING Evictions may be lost at exit: a send to Redis hangs",
            id="send-under-way-hangs",
        ),
    ],
)
def test_a_process_that_exits_sends_its_pending_evictions_or_says_so(
    server: RedisServer, redis_at: tuple[str, str], client: str, warning: str | None
) -> None:
    at_publish, at_exit = redis_at
    server.stop()
    child = subprocess.Popen(
        [sys.executable, "-c", EXITING_PROCESS, server.url, client],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    with contextlib.ExitStack() as stack:
        stack.callback(child.kill)
        assert child.stdin is not None and child.stdout is not None
        if at_publish == "hangs":
            stack.enter_context(silent_server(server.port))
        child.stdin.write("publish\n")
        child.stdin.flush()
        # Pending, or taken by a send that hangs.
        assert child.stdout.readline() == ("1\n" if at_publish == "down" else "0\n")
        if at_exit == "back":
            server.start()
        elif at_exit == "hangs" and at_publish != "hangs":
            stack.enter_context(silent_server(server.port))
        started_at = time.monotonic()
        _, stderr = child.communicate("exit\n", timeout=30)
        # Bounded, whatever Redis does: a worker's exit must not hang.
        assert time.monotonic() - started_at < 8
    assert child.returncode == 0, stderr
    if warning is None:
        import redis

        admin = redis.Redis.from_url(server.url)
        entries = t.cast("list[tuple[bytes, dict[bytes, bytes]]]", admin.xrange("site:evictions"))
        admin.close()
        assert [fields[b"name"] for _, fields in entries] == [b"acme"]
        assert "not sent" not in stderr
    else:
        assert warning in stderr


def test_evictions_pending_in_an_outage_are_bounded(
    processes: Processes, server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    from flask_dispatch.redis_bus import MAX_PENDING

    a, b = processes(), processes()
    server.stop()
    wait_for(lambda: logged(caplog, OUTAGE) == 2)
    for i in range(MAX_PENDING + 1):
        a.bus.publish(f"t{i}")
    assert a.bus.pending == 1  # one "drop everything" stands for them all
    server.start()
    b.got.wait_for(None)


def test_a_burst_beyond_what_the_stream_keeps_drops_everything(
    processes: Processes, admin: redis.Redis
) -> None:
    # More evictions than the stream keeps cannot all reach a process: one
    # "drop everything" stands for them, rather than an unbounded queue.
    a, b = processes(maxlen=100), processes(maxlen=100)
    for i in range(20_000):
        a.bus.publish(f"t{i}")
    assert a.bus.pending <= 101
    b.got.wait_for(None, timeout=20.0)


def test_a_burst_of_evictions_is_sent_in_full_while_redis_takes_it(
    processes: Processes, admin: redis.Redis
) -> None:
    # A bulk change evicting thousands of tenants at once is no outage: the
    # other processes get each name, and need not drop every tenant.
    a, b = processes(), processes()
    names = [f"t{i}" for i in range(3_000)]
    for name in names:
        a.bus.publish(name)
    b.got.wait_for(names[-1], timeout=20.0)
    assert b.got.calls == names
    assert admin.xlen("site:evictions") == len(names)


def test_an_outage_is_logged_once_and_the_recovery_once(
    processes: Processes, server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="test.bus")
    a = processes()
    b = processes(logger="test.other")
    server.stop()
    wait_for(lambda: logged(caplog, OUTAGE) == 1)
    for i in range(20):
        a.bus.publish(f"t{i}")
    # The outage itself is what is tested: long enough for several retries.
    time.sleep(1.5)
    server.start()
    b.got.wait_for(None)  # the restart
    wait_for(lambda: logged(caplog, BACK) == 1)
    assert logged(caplog, OUTAGE) == 1
    assert [r.levelname for r in caplog.records if r.name == "test.bus"] == [
        "WARNING",  # unreachable
        "WARNING",  # dropping every tenant: Redis restarted
        "INFO",  # reachable again
    ]


def test_a_key_of_the_wrong_type_is_an_outage_not_a_crash(
    processes: Processes, admin: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    admin.set("site:evictions", "not a stream")
    a = processes()
    b = processes(logger="test.b")
    a.bus.publish("acme")
    wait_for(lambda: logged(caplog, OUTAGE, "test.b") == 1)
    admin.delete("site:evictions")
    a.bus.publish("globex")
    b.got.wait_for("globex")
    assert b.got.calls == ["acme", "globex"]
    assert logged(caplog, OUTAGE, "test.b") == 1


def publish_until_trimmed(bus: EvictionBus, admin: redis.Redis, written_before: int = 0) -> None:
    """Publish 300 evictions through ``bus`` (made with ``maxlen=10``), and
    return once all are written and the stream has been trimmed."""
    for i in range(300):
        bus.publish(f"t{i}")
        if i % 10 == 9:  # no more queued than the stream keeps: none collapse
            wait_for(lambda: bus.pending == 0)
    # publish() sends from a thread: every entry is written before the check.
    added = written_before + 300
    wait_for(lambda: admin.xinfo_stream("site:evictions")["entries-added"] == added)
    assert admin.xlen("site:evictions") < added, "trimmed"


def test_missed_entries_that_were_trimmed_drop_everything(
    processes: Processes, admin: redis.Redis
) -> None:
    entered, release = threading.Event(), threading.Event()
    got: list[str | None] = []

    def slow(name: str | None) -> None:
        got.append(name)
        if name == "first":
            entered.set()
            release.wait(10)

    a = processes(maxlen=10)
    processes(on_evict=slow)
    a.bus.publish("first")
    assert entered.wait(5)
    publish_until_trimmed(a.bus, admin, written_before=1)
    release.set()
    wait_for(lambda: None in got)
    assert got == ["first", None]


@pytest.mark.parametrize(
    "fields",
    [
        pytest.param({b"foo": b"bar"}, id="unknown field"),
        pytest.param({b"name": b"acme"}, id="no origin"),
        pytest.param({b"origin": b"x"}, id="origin only"),
        pytest.param({b"origin": b"x", b"name": b"acme", b"all": b"1"}, id="name and all"),
        pytest.param({b"origin": b"x", b"all": b"yes"}, id="all is not 1"),
        pytest.param({b"origin": b"x", b"name": b"\xff\xfe\x00junk"}, id="binary name"),
        pytest.param({b"origin": b"x", b"name": b"a" * 100_000}, id="huge name"),
        pytest.param({b"\x00\xff": b"\xff" * 10_000}, id="binary field"),
    ],
)
def test_malformed_entries_are_logged_and_skipped(
    processes: Processes,
    admin: redis.Redis,
    caplog: pytest.LogCaptureFixture,
    fields: dict[bytes, bytes],
) -> None:
    a = processes()
    b = processes()
    admin.xadd("site:evictions", fields)  # type: ignore[arg-type]
    a.bus.publish("acme")
    b.got.wait_for("acme")
    assert b.got.calls == ["acme"]
    wait_for(lambda: logged(caplog, "Ignored malformed") == 2)  # one per listening bus
    warnings = [r.getMessage() for r in caplog.records if "malformed" in r.getMessage()]
    assert all(len(w) < 500 for w in warnings), "junk is shortened in the log"


def test_a_failing_on_evict_is_logged_and_the_listener_goes_on(
    processes: Processes, caplog: pytest.LogCaptureFixture
) -> None:
    got: list[str | None] = []

    def fails_once(name: str | None) -> None:
        got.append(name)
        if name == "bad":
            raise RuntimeError("boom")

    a = processes()
    processes(on_evict=fails_once)
    a.bus.publish("bad")
    a.bus.publish("good")
    wait_for(lambda: "good" in got)
    assert got == ["bad", "good"]
    assert logged(caplog, "on_evict('bad') failed") == 1


def first_requests_in_a_forked_worker(
    app: t.Any,
    factory: RecordingFactory,
    evict: t.Callable[[], object],
    threads: int = 1,
) -> list[str]:
    """Fork a worker of ``app`` (as gunicorn --preload does), run ``evict``
    (another process's evictions) before its first requests for tenant
    ``acme``, made on ``threads`` threads at once; the factory's calls as
    the worker saw them."""
    context = multiprocessing.get_context("fork")
    go = context.Event()
    results: multiprocessing.Queue[list[str]] = context.Queue()

    def worker() -> None:
        go.wait(10)
        requests = [
            threading.Thread(target=call, args=(app,), kwargs={"host": "acme.example.com"})
            for _ in range(threads)
        ]
        for request in requests:
            request.start()
        for request in requests:
            request.join(10)
        results.put(list(factory.calls))

    process = context.Process(target=worker)
    process.start()
    try:
        evict()
        go.set()
        return results.get(timeout=15)
    finally:
        go.set()
        process.join(10)
        results.close()


def test_a_receiver_that_builds_a_tenant_does_not_stall_the_catch_up(
    processes: Processes, server: RedisServer, admin: redis.Redis
) -> None:
    # With an idle timeout, building a tenant starts the sweeper: that must
    # not wait for the lock a forked worker's first request holds while it
    # waits for the catch-up.
    from flask_dispatch import Dispatch, tenant_evicted

    app = make_host_app(DISPATCH_REDIS_URL=server.url, DISPATCH_IDLE_TIMEOUT=300)
    factory = RecordingFactory()
    dispatch = Dispatch(app)
    dispatch.subdomain(factory)
    for name in ("alpha", "acme"):
        assert call(app, host=f"{name}.example.com").status == 200

    def build_beta(sender: t.Any, name: str, **extra: t.Any) -> None:
        if name == "alpha":
            dispatch.registry.get("beta", factory)

    def evict() -> None:
        other = processes(prefix="flask_dispatch:example.com")
        other.bus.publish("alpha")
        other.bus.publish("acme")
        wait_for(lambda: admin.xlen("flask_dispatch:example.com:evictions") == 2)

    with tenant_evicted.connected_to(build_beta, app):
        calls = first_requests_in_a_forked_worker(app, factory, evict)
    # beta built by the receiver, acme built afresh for the request.
    assert calls[2:] == ["beta", "acme"]


def test_catching_up_applies_every_entry_published_since_the_bus_was_made(
    processes: Processes, admin: redis.Redis
) -> None:
    late = processes(start=False)  # made now, listening later
    names = [f"t{i}" for i in range(2_500)]
    early = processes()
    for name in names:
        early.bus.publish(name)
    wait_for(lambda: admin.xlen("site:evictions") == len(names))
    assert late.bus.wait_caught_up(10)
    assert late.got.calls == names  # all of them, not the first read's 1,000


def test_a_forked_workers_first_request_sees_evictions_published_since_the_fork(
    processes: Processes, server: RedisServer, admin: redis.Redis
) -> None:
    # A --preload warm-up: the tenant is built before the fork; another
    # process evicts it before the worker's first requests (on four threads
    # at once, as gthread), none of which may be served by the evicted app.
    from flask_dispatch import Dispatch

    app = make_host_app(DISPATCH_REDIS_URL=server.url)
    factory = RecordingFactory()
    Dispatch(app).subdomain(factory)
    assert call(app, host="acme.example.com").status == 200

    def evict() -> None:
        processes(prefix="flask_dispatch:example.com").bus.publish("acme")
        wait_for(lambda: admin.xlen("flask_dispatch:example.com:evictions") == 1)

    calls = first_requests_in_a_forked_worker(app, factory, evict, threads=4)
    assert calls == ["acme", "acme"]  # built afresh


class Forked:
    """A child forked from this process, with a queue the processes report
    to and an event that lets the child end; the ``with`` block ends it."""

    def __init__(self) -> None:
        self.context = multiprocessing.get_context("fork")
        self.received: multiprocessing.Queue[t.Any] = self.context.Queue()
        self.done = self.context.Event()
        self.process: multiprocessing.process.BaseProcess | None = None

    def start(self, target: t.Callable[[], None]) -> int:
        """Fork a child that runs ``target``; its pid."""
        self.process = self.context.Process(target=target)
        self.process.start()
        assert self.process.pid is not None
        return self.process.pid

    def receive(self, wanted: set[t.Any], timeout: float = 10) -> set[t.Any]:
        """What the processes reported, once it includes ``wanted``."""
        seen: set[t.Any] = set()
        deadline = time.monotonic() + timeout
        while not wanted <= seen:
            seen.add(self.received.get(timeout=max(0.0, deadline - time.monotonic())))
        return seen

    def __enter__(self) -> Forked:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.done.set()
        if self.process is not None:
            self.process.join(10)
            if self.process.is_alive():
                self.process.kill()
        self.received.close()
        self.received.join_thread()


@pytest.mark.parametrize(
    "started_in_parent",
    [pytest.param(False, id="made before fork"), pytest.param(True, id="started before fork")],
)
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_a_bus_made_before_fork_works_in_the_child(
    processes: Processes, started_in_parent: bool
) -> None:
    with Forked() as forked:
        inherited = processes(
            on_evict=lambda name: forked.received.put((os.getpid(), name)),
            start=started_in_parent,
        )
        other = processes()
        if started_in_parent:
            other.bus.publish("before fork")
            assert forked.received.get(timeout=5) == (os.getpid(), "before fork")

        def child() -> None:
            inherited.bus.ensure_started()
            inherited.bus.publish("from child")
            forked.done.wait(20)
            inherited.bus.close()

        pid = forked.start(child)
        other.got.wait_for("from child")
        other.bus.publish("from parent")
        wanted = {(pid, "from parent")}
        if started_in_parent:
            # The child writes as itself (a new origin): the parent's copy applies it.
            wanted.add((os.getpid(), "from child"))
        seen = forked.receive(wanted)
        # One queue per process keeps order: its own entry would have come first.
        assert (pid, "from child") not in seen, "the child skips its own"
        forked.done.set()
        assert forked.process is not None
        forked.process.join(10)
        assert forked.process.exitcode == 0


@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_a_child_of_a_process_that_never_listened_misses_nothing_from_before_the_fork(
    processes: Processes, admin: redis.Redis
) -> None:
    """gunicorn --preload without a warm-up: the master holds no tenant, so
    a worker forked long after the app was made has missed nothing, though
    the stream was trimmed since: it drops nothing (and warns of nothing)."""
    with Forked() as forked:
        made_in_parent = processes(on_evict=forked.received.put, start=False)
        other = processes(maxlen=10)
        publish_until_trimmed(other.bus, admin)
        time.sleep(1.2)  # past the second a listener reads back for clock steps

        def child() -> None:
            made_in_parent.bus.wait_caught_up(5)
            other.bus.publish("after fork")
            forked.done.wait(10)  # until the parent has seen what the child applied

        forked.start(child)
        assert forked.received.get(timeout=10) == "after fork", "dropped everything first"


@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_a_grandchild_of_a_process_that_listened_reads_from_when_that_one_did(
    processes: Processes, server: RedisServer
) -> None:
    """The tenants a process built before Redis was reachable, inherited
    through a child that forks again before it serves, are covered from
    when they were built: an eviction written after that is applied."""
    with Forked() as forked:
        server.stop()
        built = processes(on_evict=lambda name: forked.received.put((os.getpid(), name)))
        assert not built.bus.wait_caught_up(5)  # listening, and not connected
        evicted_at = time.time()
        time.sleep(1.2)  # past the second a listener reads back for clock steps

        def serve() -> None:
            built.bus.ensure_started()
            forked.done.wait(15)

        def child() -> None:
            grandchild = forked.context.Process(target=serve)
            grandchild.start()
            forked.received.put((grandchild.pid, "forked"))
            grandchild.join(20)

        forked.start(child)
        grandchild, said = forked.received.get(timeout=10)
        assert said == "forked"
        server.start()
        import redis

        admin = redis.Redis.from_url(server.url)
        # Written while Redis was out of reach of all three, as it was seen.
        admin.xadd(
            "site:evictions",
            {"origin": "elsewhere", "name": "acme"},
            id=f"{int(evicted_at * 1000)}-0",
        )
        admin.close()
        forked.receive({(grandchild, "acme")})


# A fresh interpreter builds a tenant (which starts the Redis listener), waits
# a moment, and forks three children, as gunicorn --preload does after a
# warm-up; each child serves a request. One that hangs is ended by SIGALRM.
WARM_UP_THEN_FORK = """
import os, signal, sys, time
from flask import Flask
from werkzeug.test import EnvironBuilder
from flask_dispatch import Dispatch

app = Flask("host")
app.config.update(DISPATCH_REDIS_URL=sys.argv[1], DISPATCH_REDIS_PREFIX=f"p{os.getpid()}")
dispatch = Dispatch(app)
dispatch.path(lambda name: lambda environ, start_response: [b""])
with app.app_context():
    dispatch.registry.get("acme", dispatch.path_factory)
time.sleep(float(sys.argv[2]))
children = []
for _ in range(3):
    pid = os.fork()
    if pid == 0:
        signal.alarm(5)
        environ = EnvironBuilder(path="/acme/", base_url="http://example.com").get_environ()
        app.wsgi_app(environ, lambda status, headers, exc_info=None: None)
        os._exit(0)
    children.append(pid)
print(*[os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) for pid in children])
"""


@pytest.mark.timeout(120)
def test_a_fork_while_the_listener_connects_leaves_the_child_working(
    server: RedisServer,
) -> None:
    # The listener's connect imported the idna codec on its own thread; a
    # fork at that moment left the child without that import, for good.
    # Forks at moments from 0 to 3 ms after the warm-up cover the connect.
    codes = []
    for step in range(13):
        done = subprocess.run(
            [sys.executable, "-c", WARM_UP_THEN_FORK, server.url, str(step * 0.00025)],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        codes += [int(code) for code in done.stdout.split()]
    assert codes == [0] * 39, "-14: a child hung"


@pytest.mark.parametrize(
    "options",
    [
        pytest.param({"decode_responses": True}, id="decoded responses"),
        pytest.param({"protocol": 3}, id="RESP3"),
    ],
)
def test_a_client_that_cannot_carry_junk_is_refused(
    server: RedisServer, options: dict[str, t.Any]
) -> None:
    import redis

    from flask_dispatch.redis_bus import EvictionBus

    client = redis.Redis.from_url(server.url, **options)
    with pytest.raises(ValueError, match="decode_responses=False and RESP2"):
        EvictionBus(client, "site", print)
    client.close()


def test_a_bus_can_share_a_given_client(processes: Processes, server: RedisServer) -> None:
    import redis

    from flask_dispatch.redis_bus import EvictionBus

    client = redis.Redis.from_url(server.url, socket_timeout=10)
    got = Recorder()
    bus = EvictionBus(client, "site", got)
    bus.ensure_started()
    a = processes()
    a.bus.publish("acme")
    got.wait_for("acme")
    bus.close()
    client.close()


def test_publishing_to_a_redis_that_does_not_answer_does_not_hold_requests() -> None:
    from flask_dispatch.redis_bus import EvictionBus

    # Accepts connections and never answers: a hung Redis, or a dead host
    # behind a proxy. (A stopped Redis refuses at once: see above.)
    with silent_server() as port:
        bus = EvictionBus(f"redis://127.0.0.1:{port}/0", "site", print)
        bus.ensure_started()
        waited: list[float] = []

        def evict(name: str) -> None:  # what a signup request does
            started_at = time.monotonic()
            bus.publish(name)
            waited.append(time.monotonic() - started_at)

        try:
            evictions = [threading.Thread(target=evict, args=(n,)) for n in ("acme", "globex")]
            for thread in evictions:
                thread.start()
            for thread in evictions:
                thread.join(30)
            assert max(waited) < 0.5, f"evicting requests waited {sorted(waited)} s"
            wait_for(lambda: bus.pending == 2)  # kept until Redis answers
        finally:
            bus.close()


def test_a_process_that_only_resolved_domains_hears_evictions(server: RedisServer) -> None:
    # It has built no tenant, but it remembers the resolver's answers: an
    # eviction elsewhere (a domain added to tenant acme) must reach it.
    from flask import Flask

    from flask_dispatch import Dispatch

    domains: dict[str, str] = {}

    def site() -> tuple[Flask, Dispatch]:
        app = Flask("host")
        app.config.update(
            DISPATCH_DOMAIN="example.com", DISPATCH_REDIS_URL=server.url, DISPATCH_MISS_TTL=60
        )
        dispatch = Dispatch(app)
        dispatch.subdomain(lambda name: Flask(f"tenant_{name}"))
        dispatch.domain(domains.get)
        app.add_url_rule("/", "landing", lambda: "host app")
        return app, dispatch

    (a, dispatch_a), (b, _) = site(), site()
    assert b.test_client().get("/", headers={"Host": "acme.com"}).text == "host app"
    domains["acme.com"] = "acme"
    with a.app_context():
        dispatch_a.evict("acme")

    def served_by_acme() -> bool:
        response = b.test_client().get("/", headers={"Host": "acme.com"})
        return response.status_code == 404  # the bare tenant's, not the landing page

    wait_for(served_by_acme, timeout=5.0)


def test_sites_that_share_a_redis_do_not_evict_each_others_tenants(server: RedisServer) -> None:
    # By default each site's prefix is made from its domain.
    from flask import Flask

    from flask_dispatch import Dispatch

    def site(domain: str) -> tuple[Flask, Dispatch]:
        app = Flask("host")
        app.config.update(DISPATCH_DOMAIN=domain, DISPATCH_REDIS_URL=server.url)
        dispatch = Dispatch(app)
        dispatch.subdomain(lambda name: Flask(f"tenant_{name}"))
        return app, dispatch

    (a, dispatch_a), (b, _), (b2, dispatch_b2) = site("a.test"), site("b.test"), site("b.test")
    for name in ("acme", "last"):
        b.test_client().get("/", headers={"Host": f"{name}.b.test"})
    with a.app_context():
        dispatch_a.evict("acme")  # site a's tenant acme, not site b's
    with b2.app_context():
        dispatch_b2.evict("last")  # site b's, heard after what a sent before
    held_by_b = b.extensions["dispatch"].registry
    wait_for(lambda: "last" not in held_by_b, timeout=5.0)
    assert list(held_by_b) == ["acme"]


@pytest.mark.parametrize(
    "with_redis", [pytest.param(False, id="no-redis"), pytest.param(True, id="redis")]
)
def test_an_app_dropped_leaves_no_threads_connections_or_tenants(
    server: RedisServer, admin: redis.Redis, with_redis: bool
) -> None:
    # One app per test is the usual test suite: each must be freed with its
    # tenants, its creation threads, its bus's threads and connections.
    import gc
    import weakref

    from flask import Flask

    from flask_dispatch import Dispatch

    def clients() -> int:
        return len(admin.client_list())

    # Other tests' apps may be freed meanwhile: only what this one adds counts.
    threads, connections = set(threading.enumerate()), clients()
    apps: list[weakref.ref[Flask]] = []
    tenants: list[weakref.ref[Flask]] = []

    def tenant(name: str) -> Flask:
        built = Flask(name)
        tenants.append(weakref.ref(built))
        return built

    for _ in range(5):
        app = Flask("host")
        app.config.update(DISPATCH_REDIS_URL=server.url if with_redis else None)
        dispatch = Dispatch(app)
        dispatch.path(tenant)
        assert app.test_client().get("/acme/").status_code == 404  # built, held
        with app.app_context():
            dispatch.evict("globex")  # published, with Redis
        apps.append(weakref.ref(app))
        del app, dispatch

    def freed() -> bool:
        # A creation thread lets go of its job just after answering.
        gc.collect()
        return [ref() for ref in apps + tenants] == [None] * 10

    wait_for(freed)
    wait_for(lambda: set(threading.enumerate()) <= threads)
    wait_for(lambda: clients() <= connections)
