"""The example project in a real browser (Debian's Chromium through
Playwright) against a real server (gunicorn) on loopback.

Skipped when Chromium or Playwright is missing, unless
``DISPATCH_TEST_REQUIRE_BROWSER=1`` (CI) turns the skip into a failure.
Screenshots of every step go to ``test-artifacts/browser/<test name>/``.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import typing as t
from pathlib import Path

import pytest

from .conftest import available
from .servers import Gunicorn, gunicorn

if t.TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

pytestmark = [pytest.mark.browser, pytest.mark.server]

CHROMIUM = os.environ.get("DISPATCH_TEST_CHROMIUM", "/usr/bin/chromium")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
]
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts" / "browser"


def browser_missing() -> str | None:
    if not shutil.which(CHROMIUM) and not os.path.exists(CHROMIUM):
        return f"Chromium not found at {CHROMIUM} (apt-get install chromium)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "Playwright for Python is not installed (pip install playwright)"
    return None


@contextlib.contextmanager
def chromium(*args: str) -> t.Iterator[Browser]:
    """Debian's Chromium, started with :data:`FLAGS` and ``args``; the test
    is skipped (or, under CI, fails) without it."""
    available(browser_missing(), "DISPATCH_TEST_REQUIRE_BROWSER")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=[*FLAGS, *args], timeout=60_000
        )
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def browser() -> t.Iterator[Browser]:
    with chromium() as started:
        yield started


def example_server(tmp_path: Path, workers: int = 2, **config: str) -> t.ContextManager[Gunicorn]:
    env = {
        "FLASK_TENANT_DIRECTORY": str(tmp_path / "tenants.sqlite3"),
        "FLASK_TENANT_DATA_DIR": str(tmp_path / "tenant-data"),
        "FLASK_SECRET_KEY": "browser-test",
        "FLASK_SEED_DEMO_TENANTS": "false",
        **{f"FLASK_{key}": value for key, value in config.items()},
    }
    return gunicorn("example_project:create_app()", env, workers=workers, threads=4)


class Steps:
    """Screenshots, numbered in order, in a folder named after the test."""

    def __init__(self, page: Page, name: str) -> None:
        self.page = page
        self.folder = ARTIFACTS / name
        shutil.rmtree(self.folder, ignore_errors=True)
        self.folder.mkdir(parents=True)
        self.count = 0

    def shot(self, label: str) -> None:
        self.count += 1
        self.page.screenshot(
            path=str(self.folder / f"{self.count:02d}-{label}.png"), full_page=True
        )


def sign_up(page: Page, base: str, name: str, display: str, colour: str = "#0f766e") -> None:
    page.goto(f"{base}/signup")
    page.fill("#name", name)
    page.fill("#display_name", display)
    page.fill("#colour", colour)
    page.click("button[type=submit]")


def add_note(page: Page, body: str) -> None:
    page.fill("#body", body)
    page.click("text=Add note")
    page.wait_for_selector("text=Note added.")


def add_note_by_path(page: Page, url: str, body: str) -> None:
    """Open a tenant by path at ``url``: its forms post under ``url``, and a
    note added there stays there."""
    actions = page.eval_on_selector_all("form", "forms => forms.map(f => f.action)")
    assert actions and all(a.startswith(url) for a in actions)
    add_note(page, body)
    assert page.url == url


def test_signup_notes_isolation_and_both_addresses(browser: Browser, tmp_path: Path) -> None:
    with example_server(tmp_path) as server:
        site = f"http://localhost:{server.port}"
        page = browser.new_page()
        steps = Steps(page, "signup-and-isolation")

        sign_up(page, site, "acme", "Acme Corporation", "#c2410c")
        assert page.locator(".flash.ok").inner_text().startswith("Welcome, Acme Corporation")
        steps.shot("signed-up-acme")
        sign_up(page, site, "globex", "Globex", "#1d4ed8")
        assert page.locator("#tenants").inner_text().count("subdomain") == 2
        steps.shot("landing-two-tenants")

        page.goto(f"http://acme.localhost:{server.port}/")
        assert page.locator("header h1").inner_text() == "Acme Corporation"
        header = page.eval_on_selector("header", "h => getComputedStyle(h).backgroundColor")
        assert header == "rgb(194, 65, 12)"  # the colour chosen at signup
        add_note(page, "Acme launch plan")
        assert "Acme launch plan" in page.locator("#notes").inner_text()
        steps.shot("acme-subdomain-note-added")

        page.goto(f"http://globex.localhost:{server.port}/")
        assert page.locator("header h1").inner_text() == "Globex"
        assert page.locator("#no-notes").is_visible()
        assert "Acme launch plan" not in page.content()
        steps.shot("globex-has-no-acme-note")

        page.goto(f"{site}/acme/")
        assert "Acme launch plan" in page.locator("#notes").inner_text()
        add_note_by_path(page, f"{site}/acme/", "Added by path")
        assert "Added by path" in page.locator("#notes").inner_text()
        page.click("header h1 a")
        assert page.url == f"{site}/acme/"
        steps.shot("acme-by-path-links-stay-under-acme")

        page.goto(f"http://acme.localhost:{server.port}/")
        assert "Added by path" in page.locator("#notes").inner_text()
        page.locator("#notes li", has_text="Added by path").locator("text=Delete").click()
        page.wait_for_selector("text=Note deleted.")
        assert "Added by path" not in page.locator("#notes").inner_text()
        steps.shot("acme-note-deleted")

        response = page.goto(f"http://nobody.localhost:{server.port}/")
        assert response is not None and response.status == 404
        assert page.locator("#site-404").is_visible()
        steps.shot("unknown-tenant-site-404")
        response = page.goto(f"{site}/nobody/")
        assert response is not None and response.status == 404
        assert page.locator("#site-404").is_visible()

        sign_up(page, site, "acme", "Another Acme")
        assert re.search(r"“acme” is taken", page.locator(".flash.error").inner_text())
        steps.shot("second-acme-signup-refused")
        page.close()


def test_eviction_churn_loses_no_data(browser: Browser, tmp_path: Path) -> None:
    # One worker, so one registry holds at most one tenant app at a time.
    with example_server(tmp_path, workers=1, DISPATCH_MAX_INSTANCES="1") as server:
        site = f"http://localhost:{server.port}"
        page = browser.new_page()
        steps = Steps(page, "max-instances-1")
        for name in ("acme", "globex"):
            sign_up(page, site, name, name.title())
        for round_ in range(3):
            for name in ("acme", "globex"):
                page.goto(f"http://{name}.localhost:{server.port}/")
                add_note(page, f"{name} note {round_}")
        for name in ("acme", "globex"):
            page.goto(f"http://{name}.localhost:{server.port}/")
            notes = page.locator("#notes").inner_text()
            other = "globex" if name == "acme" else "acme"
            assert all(f"{name} note {i}" in notes for i in range(3))
            assert other not in notes
            steps.shot(f"{name}-after-churn")
        page.close()
    evictions = [line for line in server.log if "evicted (capacity)" in line]
    assert len(evictions) >= 6, "".join(server.log)


def test_the_owner_renames_then_deletes_a_space(browser: Browser, tmp_path: Path) -> None:
    # One worker: without Redis another would keep the old app (see
    # tests/test_redis_fleet.py for many workers).
    with example_server(tmp_path, workers=1) as server:
        site = f"http://localhost:{server.port}"
        page = browser.new_page()
        steps = Steps(page, "rename-and-delete")
        sign_up(page, site, "initech", "Initech")
        owned = page.locator("#owned li", has_text="Initech")
        owned.locator("text=settings").click()
        assert page.url == f"http://initech.localhost:{server.port}/settings"
        page.fill("#display_name", "Initech Ltd")
        page.click("text=Save settings")
        page.wait_for_selector("text=Settings saved.")
        assert page.locator("header h1").inner_text() == "Initech Ltd"
        add_note(page, "TPS reports")
        steps.shot("renamed")

        page.goto(f"{site}/")
        page.locator("#owned li", has_text="Initech Ltd").locator("text=delete").click()
        page.fill("#confirm", "initech")
        page.click("text=Delete for good")
        page.wait_for_selector("text=Initech Ltd is deleted.")
        assert page.locator("#owned").count() == 0
        assert page.locator("#tenants").count() == 0  # no teams left
        steps.shot("deleted")
        response = page.goto(f"http://initech.localhost:{server.port}/")
        assert response is not None and response.status == 404
        assert page.locator("#site-404").is_visible()
        page.close()
    assert not (tmp_path / "tenant-data" / "initech.sqlite3").exists()
