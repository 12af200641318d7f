"""Redis evictions under ``flask run --reload``: the reloader's parent never
connects to Redis, and the serving child gets every eviction."""

from __future__ import annotations

import contextlib
import http.client
import os
import re
import subprocess
import sys
import time
import typing as t

import pytest

from flask_dispatch import Dispatch

from .conftest import make_host_app, wait_for

if t.TYPE_CHECKING:
    from .redis_server import RedisServer

pytestmark = pytest.mark.server


def get(port: int, host: str) -> str:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", "/", headers={"Host": host})
        return connection.getresponse().read().decode()
    finally:
        connection.close()


def clients(server: RedisServer) -> int:
    import redis

    with contextlib.closing(redis.Redis.from_url(server.url)) as client:
        # Less this one.
        return int(client.info("clients")["connected_clients"]) - 1


def test_flask_run_with_the_reloader(redis_server: RedisServer) -> None:
    env = {**os.environ, "FLASK_RUN_REDIS_URL": redis_server.url}
    command = [sys.executable, "-m", "flask", "--app", "tests.flask_run_app", "run"]
    command += ["--reload", "--port", "0", "--host", "127.0.0.1"]
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    try:
        assert process.stderr is not None
        port = None
        deadline = time.monotonic() + 30
        while port is None and time.monotonic() < deadline:
            match = re.search(r"Running on http://127\.0\.0\.1:(\d+)", process.stderr.readline())
            port = int(match.group(1)) if match else None
        assert port, "flask run did not start"
        time.sleep(0.5)
        assert clients(redis_server) == 0  # nothing has connected: no tenant yet
        first = get(port, "acme.example.com")
        assert first.startswith("acme build 1 pid ")
        assert str(process.pid) not in first.split()  # the reloader's child serves
        # One connection: the child's listener; the parent never connects.
        wait_for(lambda: clients(redis_server) == 1)
        other = make_host_app(
            DISPATCH_REDIS_URL=redis_server.url, DISPATCH_REDIS_PREFIX="flask-run"
        )
        dispatch = Dispatch(other)
        with other.app_context():
            dispatch.evict("acme")
        wait_for(lambda: get(port, "acme.example.com").startswith("acme build 2 "))
        bus = other.extensions["dispatch"].bus
        assert bus is not None
        bus.close()
    finally:
        process.terminate()
        process.wait(10)
        if process.stderr is not None:
            process.stderr.close()
