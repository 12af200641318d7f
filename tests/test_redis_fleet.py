"""A tenant's lifecycle across worker processes and hosts (issue 17).

Two gunicorn instances of four workers each stand for two hosts: they serve
the example project from one tenant directory and data folder, and share one
real ``redis-server``. Each test mixes the ways gunicorn runs an app (sync
and gthread workers, with and without ``--preload``), one per instance, and
checks what every worker answers after a change made through one of them:

- a signup: once :data:`GRACE` has passed, no request to the new tenant gets
  a 404, though every worker remembered a miss for the name before;
- a settings change, then a deletion: no request reaches the old instance,
  and no note sent to the deleted tenant is acknowledged;
- Redis stopped mid-run: every request is still answered (no 5xx); Redis
  started again on the same port, an eviction reaches every worker within
  :data:`GRACE` of the restart.

A worker is known by its pid in gunicorn's access log (each request carries
an ``X-Probe`` header that the log records). Requests go on fresh
connections, many at once, until every worker of both instances has
answered enough of them; gthread workers take at most two connections each,
so that a busy worker leaves the next to another.

Skipped when ``redis-server`` or redis-py is missing, unless
``DISPATCH_TEST_REQUIRE_REDIS=1`` (CI) turns the skip into a failure.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import http.client
import http.cookies
import itertools
import re
import shlex
import textwrap
import threading
import time
import typing as t
from collections import Counter
from pathlib import Path
from urllib.parse import urlencode

import pytest

from .conftest import wait_for
from .servers import Gunicorn, gunicorn

if t.TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from .redis_server import RedisServer

pytestmark = [pytest.mark.redis, pytest.mark.server, pytest.mark.timeout(120)]

#: Seconds after a change by which every worker must show it.
GRACE = 1.0
WORKERS = 4
#: Requests, at least, that check a change once the grace has passed.
CHECKS = 160
#: Of which each worker must have answered at least this many.
PER_WORKER = 3
#: Longest a burst may take to reach every worker.
BURST_DEADLINE = 20.0

ROOT = Path(__file__).resolve().parent.parent
WORKERS_PAGE = ROOT / "docs" / "workers.rst"
README = ROOT / "README.md"
_BOOTED = re.compile(r"Booting worker with pid: (\d+)")
_LOGGED = re.compile(r"^<(\d+)> (\S+) (\d{3})$")
_TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')
_probes = itertools.count()


class Reply(t.NamedTuple):
    instance: Instance
    probe: str
    status: int
    body: str
    cookies: dict[str, str | None]
    sent_at: float


class Instance:
    """One gunicorn (a "host") of :data:`WORKERS` workers, and its access log."""

    def __init__(self, label: str, server: Gunicorn, access_log: Path) -> None:
        self.label = label
        self.server = server
        self.access_log = access_log
        self.port = server.port

    def __repr__(self) -> str:
        return f"<{self.label} on :{self.port}>"

    @property
    def workers(self) -> set[int]:
        return {int(m.group(1)) for line in self.server.log if (m := _BOOTED.search(line))}

    def logged(self, text: str) -> int:
        """How many lines of the server's own log contain ``text``."""
        return sum(text in line for line in self.server.log)

    def served_by(self, probes: set[str], timeout: float = 5.0) -> dict[str, int]:
        """The pid of the worker that answered each probe, from the access
        log (written just after each response)."""
        deadline = time.monotonic() + timeout
        while True:
            found = {}
            for line in self.access_log.read_text().splitlines():
                match = _LOGGED.match(line)
                if match and match.group(2) in probes:
                    found[match.group(2)] = int(match.group(1))
            if len(found) == len(probes):
                return found
            assert time.monotonic() < deadline, f"{self}: {len(probes) - len(found)} not logged"
            time.sleep(0.02)


def send(
    instance: Instance,
    method: str,
    host: str,
    path: str,
    form: dict[str, str] | None = None,
    cookies: dict[str, str] | None = None,
) -> Reply:
    """One request on a fresh connection, so any worker may take it."""
    probe = f"p{next(_probes)}"
    headers = {"Host": f"{host}:{instance.port}", "X-Probe": probe, "Connection": "close"}
    if cookies:
        headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in cookies.items())
    body = None
    if form is not None:
        body = urlencode(form)
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    sent_at = time.monotonic()
    connection = http.client.HTTPConnection("127.0.0.1", instance.port, timeout=15)
    try:
        connection.request(method, path, body, headers)
        response = connection.getresponse()
        text = response.read().decode()
        jar: dict[str, str | None] = {}
        for header in response.headers.get_all("Set-Cookie") or ():
            for name, morsel in http.cookies.SimpleCookie(header).items():
                gone = morsel["max-age"] == "0" or "1970" in morsel["expires"]
                jar[name] = None if gone else morsel.value
        return Reply(instance, probe, response.status, text, jar, sent_at)
    finally:
        connection.close()


class Visitor:
    """Someone with a cookie jar, e.g. the owner who signs a tenant up."""

    def __init__(self) -> None:
        self.cookies: dict[str, str] = {}

    def send(self, instance: Instance, method: str, host: str, path: str, **form: str) -> Reply:
        reply = send(instance, method, host, path, form if method == "POST" else None, self.cookies)
        for name, value in reply.cookies.items():
            if value is None:
                self.cookies.pop(name, None)
            else:
                self.cookies[name] = value
        return reply

    def submit(self, instance: Instance, host: str, path: str, **form: str) -> Reply:
        """Send the form at ``path`` with the page's CSRF token."""
        page = self.send(instance, "GET", host, path)
        match = _TOKEN.search(page.body)
        assert match, f"no form at {host}{path}: {page.status} {page.body[:300]}"
        return self.send(instance, "POST", host, path, csrf_token=match.group(1), **form)

    def sign_up(self, instance: Instance, name: str, display_name: str) -> Reply:
        reply = self.submit(
            instance, "localhost", "/signup", name=name, display_name=display_name, colour="#123456"
        )
        assert reply.status == 302, reply.body
        return reply


class Fleet:
    """The two instances; requests spread over every worker of both."""

    def __init__(self, instances: list[Instance]) -> None:
        self.instances = instances

    @property
    def workers(self) -> dict[int, Instance]:
        return {pid: i for i in self.instances for pid in i.workers}

    def burst(
        self,
        request: Callable[[Instance, int], Reply],
        at_least: int = CHECKS,
        per_worker: int = PER_WORKER,
    ) -> list[tuple[int, Reply]]:
        """Send ``request(instance, i)`` many times at once, alternating
        instances, until there were ``at_least`` and each worker answered
        ``per_worker``; return ``(pid, reply)`` pairs."""
        answered: list[tuple[int, Reply]] = []
        deadline = time.monotonic() + BURST_DEADLINE
        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            while True:
                start = len(answered)
                jobs = [
                    pool.submit(request, self.instances[i % len(self.instances)], i)
                    for i in range(start, start + 48)
                ]
                batch = [job.result() for job in jobs]
                for instance in self.instances:
                    mine = [r for r in batch if r.instance is instance]
                    pids = instance.served_by({r.probe for r in mine})
                    answered += [(pids[r.probe], r) for r in mine]
                counts = Counter(pid for pid, _ in answered)
                if len(answered) >= at_least and all(
                    counts[pid] >= per_worker for pid in self.workers
                ):
                    return answered
                assert time.monotonic() < deadline, (
                    f"not every worker answered {per_worker} requests: {dict(counts)},"
                    f" workers {self.workers}"
                )


def booted(server: Gunicorn, timeout: float = 30.0) -> None:
    """Wait until every worker has booted (imported the app)."""
    deadline = time.monotonic() + timeout
    while len({m.group(1) for line in server.log if (m := _BOOTED.search(line))}) < WORKERS:
        assert time.monotonic() < deadline, "".join(server.log)
        time.sleep(0.02)


@contextlib.contextmanager
def fleet(
    tmp_path: Path,
    redis_url: str | None,
    kinds: t.Sequence[tuple[str, bool]],
    target: str = "example_project:create_app()",
    extra_args: t.Sequence[str] = (),
    **config: str,
) -> Iterator[Fleet]:
    """Gunicorn instances of :data:`WORKERS` workers, one per
    ``(worker class, preload)`` in ``kinds``, serving ``target`` with one
    tenant directory, data folder and secret key."""
    env = {
        "FLASK_TENANT_DIRECTORY": str(tmp_path / "tenants.sqlite3"),
        "FLASK_TENANT_DATA_DIR": str(tmp_path / "tenant-data"),
        "FLASK_SECRET_KEY": "fleet-test",
        "FLASK_SEED_DEMO_TENANTS": "false",
        # Without an eviction a miss would be remembered for the whole test.
        "FLASK_DISPATCH_MISS_TTL": "600",
        **({"FLASK_DISPATCH_REDIS_URL": redis_url} if redis_url else {}),
        "FLASK_DISPATCH_REDIS_PREFIX": f"fleet-{tmp_path.name}",
        **{f"FLASK_{key}": value for key, value in config.items()},
    }
    with contextlib.ExitStack() as stack:
        instances = []
        for number, (worker_class, preload) in enumerate(kinds):
            log = tmp_path / f"access-{number}.log"
            args = [
                *extra_args,
                "--workers",
                str(WORKERS),
                "--access-logfile",
                str(log),
                "--access-logformat",
                "%(p)s %({x-probe}i)s %(s)s",
            ]
            if worker_class == "gthread":
                args += ["--worker-connections", "2"]
            if preload:
                args.append("--preload")
            server = stack.enter_context(
                gunicorn(
                    target,
                    env,
                    workers=WORKERS,
                    worker_class=worker_class,
                    threads=4,
                    extra_args=args,
                )
            )
            booted(server)
            label = worker_class + (" --preload" if preload else "")
            instances.append(Instance(label, server, log))
        yield Fleet(instances)


def by_subdomain_and_path(name: str) -> Callable[[Instance, int], Reply]:
    """A GET of tenant ``name``'s notes, by subdomain and by path in turn."""

    def get(instance: Instance, i: int) -> Reply:
        if i % 2:
            return send(instance, "GET", "localhost", f"/{name}/")
        return send(instance, "GET", f"{name}.localhost", "/")

    return get


def after_grace(since: float) -> None:
    """Wait out the grace period: what is checked is the state after it."""
    time.sleep(max(0.0, since + GRACE - time.monotonic()))


def failures(
    answered: list[tuple[int, Reply]], good: Callable[[Reply], bool]
) -> list[tuple[str, int, int]]:
    return [(r.instance.label, pid, r.status) for pid, r in answered if not good(r)]


def documented_command() -> tuple[dict[str, str], list[str]]:
    """The gunicorn command on docs/workers.rst: its environment and argv."""
    commands = re.findall(r"^\s+\$ (.*gunicorn .*)$", WORKERS_PAGE.read_text(), re.MULTILINE)
    assert len(commands) == 1, commands
    assert f"\n{commands[0]}\n" in README.read_text(), "the README shows the same command"
    words = shlex.split(commands[0])
    env = {}
    while "=" in words[0]:
        key, _, value = words.pop(0).partition("=")
        env[key] = value
    assert words[0] == "gunicorn"
    return env, words[1:]


# -- Signup -------------------------------------------------------------------


def test_a_signup_reaches_every_worker_of_both_hosts(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    # The first host runs the command on docs/workers.rst as it stands
    # (default sync workers), on our port and Redis.
    env, argv = documented_command()
    assert env == {"FLASK_DISPATCH_REDIS_URL": "redis://localhost:6379/0"}
    *options, target = argv
    assert options == ["-w", "4"]
    with fleet(
        tmp_path,
        redis_server.url,
        [("sync", False), ("gthread", True)],
        target=target,
        extra_args=options,
    ) as sites:
        # Every worker remembers "no such tenant" for the name.
        primed = sites.burst(by_subdomain_and_path("newco"), at_least=0, per_worker=1)
        assert failures(primed, lambda r: r.status == 404) == []

        signed_up = Visitor().sign_up(sites.instances[0], "newco", "New Co")
        after_grace(signed_up.sent_at)
        answered = sites.burst(by_subdomain_and_path("newco"))
        assert failures(answered, lambda r: r.status == 200 and "New Co" in r.body) == []


def test_without_redis_a_signup_is_not_seen_by_the_other_workers(tmp_path: Path) -> None:
    # The control: the same steps without Redis leave the misses in place.
    with fleet(tmp_path, None, [("sync", False), ("gthread", False)]) as sites:
        primed = sites.burst(by_subdomain_and_path("newco"), at_least=0, per_worker=1)
        assert failures(primed, lambda r: r.status == 404) == []
        signed_up = Visitor().sign_up(sites.instances[1], "newco", "New Co")
        after_grace(signed_up.sent_at)
        answered = sites.burst(by_subdomain_and_path("newco"), per_worker=1)
        stale = {pid for pid, r in answered if r.status == 404}
        assert len(stale) >= len(sites.workers) - 1, "only the signup's worker knows"


# -- Settings and deletion ----------------------------------------------------


def test_settings_change_and_deletion_reach_every_worker(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    with fleet(tmp_path, redis_server.url, [("gthread", True), ("sync", False)]) as sites:
        first, second = sites.instances
        owner = Visitor()
        owner.sign_up(first, "acme", "Before Co")
        writer = Visitor()  # a tenant user: a session and a form token for notes
        page = writer.send(second, "GET", "acme.localhost", "/")
        token = _TOKEN.search(page.body)
        assert token, page.body
        note = {"csrf_token": token.group(1), "body": "hello"}
        accepted = writer.send(second, "POST", "acme.localhost", "/notes", **note)
        assert accepted.status == 302, "the form is accepted while the tenant exists"
        # Every worker holds an instance of acme.
        held = sites.burst(by_subdomain_and_path("acme"), at_least=0, per_worker=1)
        assert failures(held, lambda r: "Before Co" in r.body) == []

        changed = owner.submit(
            second, "acme.localhost", "/settings", display_name="After Co", colour="#654321"
        )
        assert changed.status == 302, changed.body
        after_grace(changed.sent_at)
        answered = sites.burst(by_subdomain_and_path("acme"))
        assert failures(answered, lambda r: r.status == 200 and "After Co" in r.body) == []
        assert not any("Before Co" in r.body for _, r in answered)

        deleted = owner.submit(first, "localhost", "/teams/acme/delete", confirm="acme")
        assert deleted.status == 302, deleted.body
        after_grace(deleted.sent_at)
        answered = sites.burst(by_subdomain_and_path("acme"))
        assert failures(answered, lambda r: r.status == 404) == []

        def write(instance: Instance, i: int) -> Reply:
            host, path = ("acme.localhost", "/notes") if i % 2 else ("localhost", "/acme/notes")
            return send(instance, "POST", host, path, note, writer.cookies)

        written = sites.burst(write)
        assert failures(written, lambda r: r.status == 404) == []
        assert not (tmp_path / "tenant-data" / "acme.sqlite3").exists()


# -- Redis down ---------------------------------------------------------------


def test_redis_down_then_restarted(tmp_path: Path, redis_server: RedisServer) -> None:
    with fleet(tmp_path, redis_server.url, [("sync", True), ("gthread", False)]) as sites:
        first, second = sites.instances
        # Every worker starts its listener (at its first factory call)...
        sites.burst(by_subdomain_and_path("nobody"), at_least=0, per_worker=1)
        owner = Visitor()
        signed_up = owner.sign_up(first, "acme", "Acme One")
        # ...and has the signup's eviction, even one whose listener connected
        # late and replays it, before it builds the app it is to hold.
        after_grace(signed_up.sent_at)
        held = sites.burst(by_subdomain_and_path("acme"), at_least=0, per_worker=1)
        assert failures(held, lambda r: r.status == 200) == []

        # Redis goes away while requests come in.
        load: list[Reply] = []
        stop = threading.Event()

        def traffic() -> None:
            get = by_subdomain_and_path("acme")
            for i in itertools.count():
                if stop.is_set():
                    return
                load.append(get(sites.instances[i % 2], i))
                load.append(send(sites.instances[i % 2], "GET", "localhost", "/"))

        loader = threading.Thread(target=traffic)
        loader.start()
        try:
            wait_for(lambda: len(load) >= 20)  # requests flow before the stop, and on
            redis_server.stop()
            # Changes made while Redis is down are answered, and applied
            # where they were made.
            signed_up = owner.sign_up(second, "globex", "Globex")
            renamed = owner.submit(
                first, "acme.localhost", "/settings", display_name="Acme Two", colour="#222222"
            )
            assert (signed_up.status, renamed.status) == (302, 302), renamed.body
            acme = sites.burst(by_subdomain_and_path("acme"))
            answered = acme + sites.burst(by_subdomain_and_path("globex"), at_least=0, per_worker=1)
            answered += sites.burst(
                lambda instance, _: send(instance, "GET", "localhost", "/"),
                at_least=0,
                per_worker=1,
            )
        finally:
            stop.set()
            loader.join(30)
        assert len(load) > 40
        assert [r.status for r in load if r.status >= 500] == []
        assert failures(answered, lambda r: r.status < 500) == []
        # Meanwhile the other workers kept the instance they held.
        stale = {pid for pid, r in acme if "Acme One" in r.body}
        assert len(stale) == len(sites.workers) - 1
        outages = sum(i.logged("Redis unreachable, serving on") for i in sites.instances)
        assert 1 <= outages <= len(sites.workers), "once per process at most"

        redis_server.start()
        restarted = time.monotonic()
        renamed = owner.submit(
            second, "acme.localhost", "/settings", display_name="Acme Three", colour="#333333"
        )
        assert renamed.status == 302
        after_grace(restarted)
        answered = sites.burst(by_subdomain_and_path("acme"))
        assert failures(answered, lambda r: r.status == 200 and "Acme Three" in r.body) == []
        answered = sites.burst(by_subdomain_and_path("globex"), at_least=0, per_worker=1)
        assert failures(answered, lambda r: r.status == 200) == []


# -- The code on docs/workers.rst -----------------------------------------------


def python_blocks(rst: str) -> list[str]:
    """The ``.. code-block:: python`` blocks of ``rst``, dedented."""
    blocks = []
    for match in re.finditer(r"^\.\. code-block:: python\n\n((?:    .*\n|\n)+)", rst, re.MULTILINE):
        blocks.append(textwrap.dedent(match.group(1)))
    return blocks


def test_the_code_on_the_workers_page_configures_what_it_says() -> None:
    rst = WORKERS_PAGE.read_text()
    blocks = python_blocks(rst)
    assert rst.count(".. code-block:: python") == len(blocks) == 3
    assert rst.count(".. code-block:: console") == 1  # run by the signup test above
    assert rst.count(".. code-block::") == 4
    assert not re.search(r"::\s*$", rst.replace(".. code-block::", ""), re.MULTILINE)

    states = []
    for block in blocks:
        namespace: dict[str, t.Any] = {"__name__": "workers_page"}
        exec(compile(block, str(WORKERS_PAGE), "exec"), namespace)
        states.append(namespace["app"].extensions["dispatch"])
    by_url, by_client, by_age = states
    try:
        assert by_url.bus is not None and by_url.settings.redis_prefix == "notes"
        assert by_client.bus is not None and by_client.settings.redis_url is None
        assert by_age.bus is None
        assert (by_age.settings.max_age, by_age.settings.miss_ttl) == (60.0, 5.0)
    finally:
        for state in states:
            if state.bus is not None:
                state.bus.close()
