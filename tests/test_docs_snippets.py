"""Every Python snippet in README.md and docs/quickstart.rst runs when pasted
into a file, in order, with nothing else defined."""

from __future__ import annotations

import pathlib
import re
import subprocess
import sys
import textwrap
import typing as t

import pytest

from flask_dispatch import tenant_evicted

from .conftest import call

ROOT = pathlib.Path(__file__).parent.parent


def readme_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)


def rst_blocks(page: str) -> list[str]:
    text = (ROOT / "docs" / page).read_text()
    blocks = re.findall(r"\.\. code-block:: python\n\n((?:    .*\n|\n)+)", text)
    return [textwrap.dedent(block) for block in blocks]


def run(blocks: list[str]) -> dict[str, t.Any]:
    namespace: dict[str, t.Any] = {"__name__": "snippet"}
    for block in blocks:
        exec(compile(block, "<snippet>", "exec"), namespace)
    return namespace


def test_readme_snippet() -> None:
    (block,) = readme_blocks()
    app = run([block])["app"]
    assert call(app, host="acme.example.com").body == "Hello from Acme Corp"
    assert call(app, "/acme/").body == "Hello from Acme Corp"
    assert call(app, "/backend/x").body == "backend"
    assert call(app, host="nobody.example.com").status == 404


def test_quickstart_snippets() -> None:
    blocks = rst_blocks("quickstart.rst")
    assert len(blocks) == 3
    namespace = run(blocks[:1])
    app = namespace["app"]
    assert call(app, host="acme.example.com").body == "Hello from Acme Corp"
    assert call(app, host="globex.example.com").status == 404  # remembered
    with app.app_context():
        run_in(namespace, blocks[1])  # the signup
    assert call(app, host="globex.example.com").body == "Hello from Globex"
    try:
        run_in(namespace, blocks[2])
        with app.app_context():
            assert namespace["dispatch"].evict("globex") == 1  # the receiver ran
    finally:
        tenant_evicted.disconnect(namespace["close_tenant"])


def run_in(namespace: dict[str, t.Any], block: str) -> None:
    exec(compile(block, "<snippet>", "exec"), namespace)


@pytest.mark.parametrize("page", ["README.md", "docs/quickstart.rst"])
def test_no_placeholder_is_left(page: str) -> None:
    text = (ROOT / page).read_text()
    assert "get_user_for_subdomain" not in text and "    ...\n" not in text


def test_deploying_proxy_fix_snippet() -> None:
    (block,) = rst_blocks("deploying.rst")
    namespace = run([block])
    app = namespace["create_app"]()

    def tenant(environ: t.Any, start_response: t.Any) -> list[bytes]:
        start_response("200 OK", [])
        return [f"{environ['flask_dispatch.tenant']} {environ['wsgi.url_scheme']}".encode()]

    namespace["dispatch"].subdomain(lambda name: tenant)
    forwarded = {"HTTP_X_FORWARDED_HOST": "acme.example.com", "HTTP_X_FORWARDED_PROTO": "https"}
    response = call(app, host="127.0.0.1:8000", **forwarded)
    assert response.body == "acme https"


def test_deploying_gunicorn_command(tmp_path: pathlib.Path) -> None:
    # The page's command, checked by gunicorn itself: it loads the app.
    import shlex
    import subprocess
    import sys

    text = (ROOT / "docs" / "deploying.rst").read_text()
    (line,) = re.findall(r"^    \$ (gunicorn .*)$", text, re.M)
    command = [sys.executable, "-m", *shlex.split(line), "--check-config"]
    env = {
        "PATH": "",
        "FLASK_TENANT_DIRECTORY": str(tmp_path / "tenants.sqlite3"),
        "FLASK_TENANT_DATA_DIR": str(tmp_path / "data"),
        "FLASK_SECRET_KEY": "test",
    }
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "example_project:create_app()" in line


def test_isolation_logging_snippet_keeps_dispatchs_own_logger() -> None:
    # Logging is process-wide: the snippet runs in a process of its own,
    # after flask_dispatch is imported, as in an app.
    (block,) = [b for b in rst_blocks("isolation.rst") if "dictConfig" in b]
    script = "\n".join(
        [
            "import logging, flask_dispatch",
            block,
            "logging.getLogger('flask_dispatch').warning('Redis unreachable')",
        ]
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stderr.endswith("] - WARNING in <string>: Redis unreachable\n"), done.stderr
