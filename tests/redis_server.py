"""Run a real ``redis-server`` on a free loopback port, without persistence,
that a test can stop and start again on the same port (an outage); or a
Redis that hangs."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import threading
import time
import typing as t

from .servers import free_port, stop

if t.TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

REDIS_SERVER = os.environ.get("DISPATCH_TEST_REDIS_SERVER", "redis-server")


def missing() -> str | None:
    """Why the Redis tests cannot run here, or ``None`` if they can."""
    if shutil.which(REDIS_SERVER) is None:
        return f"{REDIS_SERVER} not found (apt-get install redis-server)"
    try:
        import redis  # noqa: F401
    except ImportError:
        return "redis-py is not installed (pip install -e '.[redis]')"
    return None


class RedisServer:
    """A ``redis-server`` on ``127.0.0.1:port`` with its files in ``directory``.
    Not started until :meth:`start`; :meth:`stop` and :meth:`start` again
    keep the port (but not the data: it saves nothing)."""

    def __init__(self, directory: Path, port: int | None = None) -> None:
        self.directory = directory
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> None:
        """Start the server and wait until it answers ``PING``."""
        assert self.process is None, "already running"
        self.process = subprocess.Popen(
            [
                REDIS_SERVER,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.directory),
                "--logfile",
                str(self.directory / "redis.log"),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while not self._answers():
            if self.process.poll() is not None or time.monotonic() > deadline:
                log = (self.directory / "redis.log").read_text(errors="replace")
                self.stop()
                raise RuntimeError(f"redis-server did not start on {self.port}:\n{log}")
            time.sleep(0.01)

    def stop(self) -> None:
        """Stop the server (at once: no save) and wait until it has exited."""
        if self.process is None:
            return
        stop(self.process)
        self.process = None

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False


def started(directory: Path) -> RedisServer:
    """A started :class:`RedisServer`, trying another port if one was taken
    between picking it and binding it."""
    for attempt in range(5):
        server = RedisServer(directory)
        try:
            server.start()
        except RuntimeError:
            if attempt == 4:
                raise
        else:
            return server
    raise AssertionError("unreachable")


@contextlib.contextmanager
def silent_server(port: int = 0) -> Iterator[int]:
    """A Redis that hangs: it accepts connections on ``port`` (a free one
    by default, given back) and never answers."""
    listener = socket.create_server(("127.0.0.1", port))
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.05)
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                accepted.append(listener.accept()[0])

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join(5)
        for connection in [*accepted, listener]:
            connection.close()
