"""Sessions scoped to their tenant, in a real browser (Debian's Chromium
through Playwright) against gunicorn on loopback, serving
:mod:`tests.sessions_app`.

A login in ``acme``; then ``globex`` and the host app, which must not see it;
then the cookie copied into the browser under other names and paths with
``context.add_cookies``, which must be refused. Tenants by path at
``127.0.0.1:PORT/acme/``, and by subdomain at ``acme.example.localhost:PORT``
with ``SESSION_COOKIE_DOMAIN="example.localhost"`` on the host app. With
scoping off, the same browser sees the login everywhere: the control.

Skipped like :mod:`tests.test_browser` (whose ``browser`` fixture this uses)
when Chromium or Playwright is missing, unless
``DISPATCH_TEST_REQUIRE_BROWSER=1``. Screenshots go to
``test-artifacts/browser/<test name>/``.
"""

from __future__ import annotations

import typing as t

import pytest

from .servers import gunicorn
from .test_browser import Steps, browser

if t.TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, Page

pytestmark = [pytest.mark.browser, pytest.mark.server]

__all__ = ["browser"]  # the shared module-scoped fixture

ADDRESSING = [
    pytest.param("path", "", id="path"),
    pytest.param(
        "subdomain",
        "domain='example.localhost', SESSION_COOKIE_DOMAIN='example.localhost'",
        id="subdomain",
    ),
]


class Site:
    """URLs of the host app and the tenants on one server."""

    def __init__(self, by: str, port: int) -> None:
        self.by = by
        self.port = port

    def host_name(self, owner: str) -> str:
        if self.by == "path":
            return "127.0.0.1"
        return "example.localhost" if owner == "host" else f"{owner}.example.localhost"

    def url(self, owner: str, page: str) -> str:
        prefix = f"/{owner}" if self.by == "path" and owner != "host" else ""
        return f"http://{self.host_name(owner)}:{self.port}{prefix}{page}"


def text(page: Page, url: str) -> str:
    response = page.goto(url)
    assert response is not None and response.status == 200, url
    return page.inner_text("body").strip()


def only_cookie(context: BrowserContext) -> dict[str, t.Any]:
    cookies = context.cookies()
    assert len(cookies) == 1, cookies
    return dict(cookies[0])


@pytest.mark.parametrize(("by", "config"), ADDRESSING)
def test_login_stays_in_its_tenant(browser: Browser, by: str, config: str) -> None:
    with gunicorn(f"tests.sessions_app:create({config})", workers=1, threads=4) as server:
        site = Site(by, server.port)
        context = browser.new_context()
        page = context.new_page()
        steps = Steps(page, f"sessions-{by}")

        assert text(page, site.url("acme", "/login")) == "logged in as user-of-acme"
        assert text(page, site.url("acme", "/me")) == "user-of-acme"
        steps.shot("acme-logged-in")
        assert text(page, site.url("globex", "/me")) == "anonymous"
        steps.shot("globex-not-logged-in")
        assert text(page, site.url("host", "/me")) == "anonymous"
        steps.shot("host-not-logged-in")
        cookie = only_cookie(context)
        assert cookie["name"] == "session_acme"
        assert cookie["domain"] == site.host_name("acme")  # host-only: no leading dot
        assert cookie["path"] == ("/acme" if by == "path" else "/")
        assert cookie["httpOnly"] is True

        # The cookie copied by hand: other names, other paths, other hosts.
        copies = [
            ("globex", "session_globex", site.host_name("globex"), "/"),
            ("globex", "session_acme", site.host_name("globex"), "/"),
            ("globex", "session_globex", site.host_name("globex"), "/globex"),
            ("host", "session", site.host_name("host"), "/"),
            ("host", "session_acme", site.host_name("host"), "/"),
        ]
        if by == "subdomain":  # a domain cookie reaches every tenant
            copies.append(("globex", "session_globex", ".example.localhost", "/"))
        for target, name, domain, path in copies:
            context.add_cookies(
                [{"name": name, "value": cookie["value"], "domain": domain, "path": path}]
            )
            assert text(page, site.url(target, "/me")) == "anonymous", (name, domain, path)
            context.clear_cookies(name=name, domain=domain, path=path)
        steps.shot("copied-cookie-refused")
        assert text(page, site.url("acme", "/me")) == "user-of-acme"

        # Logins side by side: each app keeps its own.
        for owner in ("globex", "host"):
            text(page, site.url(owner, "/login"))
        for owner in ("acme", "globex", "host"):
            assert text(page, site.url(owner, "/me")) == f"user-of-{owner}"
        steps.shot("three-logins")
        context.close()


@pytest.mark.parametrize(("by", "config"), ADDRESSING)
def test_switch_off_shares_the_login(browser: Browser, by: str, config: str) -> None:
    # The control: with DISPATCH_SCOPE_SESSIONS off this browser sees the
    # acme login in globex and on the host app, so the test above can fail.
    target = f"tests.sessions_app:create(scope=False{', ' + config if config else ''})"
    with gunicorn(target, workers=1, threads=4) as server:
        site = Site(by, server.port)
        context = browser.new_context()
        page = context.new_page()
        steps = Steps(page, f"sessions-switch-off-{by}")
        assert text(page, site.url("acme", "/login")) == "logged in as user-of-acme"
        assert only_cookie(context)["name"] == "session"
        assert text(page, site.url("globex", "/me")) == "user-of-acme"
        assert text(page, site.url("host", "/me")) == "user-of-acme"
        steps.shot("acme-login-everywhere")
        context.close()
