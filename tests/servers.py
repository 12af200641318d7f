"""Run a WSGI app under a real gunicorn server on a free loopback port."""

from __future__ import annotations

import contextlib
import os
import queue
import re
import socket
import subprocess
import sys
import threading
import time
import typing as t

_LISTENING = re.compile(r"Listening at: http://127\.0\.0\.1:(\d+)")


def _control_socket_args() -> list[str]:
    # Gunicorn 24+ opens a control socket in ~/.gunicorn shared by every
    # server; the tests' servers do not need it.
    from gunicorn.config import KNOWN_SETTINGS

    if any(s.name == "control_socket_disable" for s in KNOWN_SETTINGS):
        return ["--no-control-socket"]
    return []


def free_port() -> int:
    """A loopback port free now, for a server that cannot pick its own."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stop(process: subprocess.Popen[t.Any]) -> None:
    """Terminate a server and wait until it has exited; kill it if it hangs."""
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)


class Gunicorn:
    """A running gunicorn; ``base`` is ``http://127.0.0.1:PORT``."""

    def __init__(self, process: subprocess.Popen[str], port: int, log: list[str]) -> None:
        self.process = process
        self.port = port
        self.log = log

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@contextlib.contextmanager
def gunicorn(
    target: str,
    env: t.Mapping[str, str] | None = None,
    *,
    workers: int = 1,
    worker_class: str = "gthread",
    threads: int = 8,
    timeout: float = 30.0,
    extra_args: t.Sequence[str] = (),
) -> t.Iterator[Gunicorn]:
    """Start ``gunicorn target`` (gthread workers with ``threads`` threads,
    or ``worker_class`` ``"sync"``) on 127.0.0.1 with a port the kernel
    picks; stop it on exit. Fails if it is not listening within ``timeout``
    seconds."""
    command = [
        sys.executable,
        "-m",
        "gunicorn",
        "--bind",
        "127.0.0.1:0",
        "--workers",
        str(workers),
        "--worker-class",
        worker_class,
        # gunicorn runs a sync worker with more than one thread as gthread.
        *(["--threads", str(threads)] if worker_class != "sync" else []),
        "--graceful-timeout",
        "2",
        *_control_socket_args(),
        *extra_args,
        target,
    ]
    process = subprocess.Popen(
        command,
        env={**os.environ, **(env or {})},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    log: list[str] = []

    def pump() -> None:
        assert process.stderr is not None
        for line in process.stderr:
            log.append(line)
            lines.put(line)

    pumper = threading.Thread(target=pump, daemon=True)
    pumper.start()
    port = None
    deadline = time.monotonic() + timeout
    try:
        while port is None:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or process.poll() is not None:
                raise RuntimeError("gunicorn did not start:\n" + "".join(log))
            try:
                line = lines.get(timeout=min(remaining, 0.5))
            except queue.Empty:
                continue
            match = _LISTENING.search(line)
            if match:
                port = int(match.group(1))
        # The arbiter listens before its worker has imported the app; wait
        # for the worker to boot.
        while not any("Booting worker" in line for line in log):
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError("gunicorn worker did not boot:\n" + "".join(log))
            time.sleep(0.05)
        yield Gunicorn(process, port, log)
    finally:
        stop(process)
        pumper.join(10)
        if process.stderr is not None:
            process.stderr.close()
