"""Flask seams under a real gunicorn with several workers: ProxyFix before
or after dispatch, and idle tenants leaving every worker without traffic,
with and without --preload."""

from __future__ import annotations

import http.client
import time
import typing as t

import pytest

from .servers import gunicorn

if t.TYPE_CHECKING:
    import pathlib

pytestmark = pytest.mark.server


def get(port: int, host: str, **headers: str) -> tuple[int, str]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", "/", headers={"Host": host, **headers})
        response = connection.getresponse()
        return response.status, response.read().decode()
    finally:
        connection.close()


@pytest.mark.parametrize("order", ["before", "after"])
def test_proxy_fix_in_either_place_behind_forwarded_headers(
    order: str, tmp_path: pathlib.Path
) -> None:
    env = {"SEAMS_EVICTIONS": str(tmp_path / "evictions")}
    with gunicorn(f"tests.seams_app:create('{order}')", env, workers=2, threads=2) as server:
        forwarded = {"X-Forwarded-Host": "acme.example.com", "X-Forwarded-Proto": "https"}
        status, body = get(server.port, "internal:8000", **forwarded)
        assert status == 200 and body.startswith("acme ") and body.endswith(" https")
        status, body = get(server.port, "internal:8000", **{"X-Forwarded-Host": "a..example.com"})
        assert status == 400
        status, body = get(server.port, "internal:8000")
        assert status == 200 and body.startswith("host ")


@pytest.mark.parametrize(
    "preload", [pytest.param((), id="no-preload"), pytest.param(("--preload",), id="preload")]
)
def test_idle_tenants_leave_every_worker_without_traffic(
    preload: t.Sequence[str], tmp_path: pathlib.Path
) -> None:
    log = tmp_path / "evictions"
    env = {"SEAMS_EVICTIONS": str(log)}
    with gunicorn(
        "tests.seams_app:create()", env, workers=2, threads=2, extra_args=preload
    ) as server:
        # Until both workers hold the tenant (each request may go to either).
        pids: set[str] = set()
        deadline = time.monotonic() + 20
        while len(pids) < 2:
            assert time.monotonic() < deadline, f"only workers {pids} answered"
            status, body = get(server.port, "acme.example.com")
            assert status == 200
            pids.add(body.split()[1])
        last_request = time.monotonic()
        # No request from now on: every worker drops it within N + 1 s (N = 1),
        # give or take the polling of the file.
        deadline = last_request + 1.0 + 1.0 + 0.25
        while time.monotonic() < deadline:
            lines = log.read_text().split("\n") if log.exists() else []
            gone = {line.split()[0] for line in lines if line.endswith("acme idle")}
            if gone >= pids:
                break
            time.sleep(0.05)
        assert gone >= pids, (pids, lines)
        assert time.monotonic() - last_request < 1.0 + 1.0 + 0.25
