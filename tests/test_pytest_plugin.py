"""The pytest plugin, run as a user runs it: small test modules in a fresh
directory, with the plugin loaded through its entry point."""

from __future__ import annotations

import re
import textwrap
import typing as t
from pathlib import Path

import pluggy
import pytest

if t.TYPE_CHECKING:
    from _pytest.pytester import Pytester, RunResult

pytest_plugins = ["pytester"]

# The user's conftest: a host app with tenants "acme" and "globex" (and any
# name added to KNOWN) by subdomain and by path.
CONFTEST = """
import pytest
from flask import Flask, current_app, redirect, request, session, url_for

from flask_dispatch import Dispatch, tenant_evicted

KNOWN = {"acme", "globex"}
CREATED = []
EVICTED = []


def make_tenant(name):
    CREATED.append(name)
    tenant = Flask(f"tenant_{name}")
    tenant.secret_key = f"secret-{name}"

    @tenant.get("/")
    def index():
        return f"{name} index"

    @tenant.get("/where")
    def where():
        return f"{name} host={request.host} root={request.script_root} path={request.path}"

    @tenant.get("/go")
    def go():
        return redirect(url_for("where"))

    @tenant.get("/login/<user>")
    def login(user):
        session["user"] = user
        return "ok"

    @tenant.get("/me")
    def me():
        return session.get("user", "nobody")

    @tenant.get("/cookie/<key>")
    def cookie(key):
        return request.cookies.get(key, "none")

    return tenant


def factory(name):
    return make_tenant(name) if name in KNOWN else None


@tenant_evicted.connect
def record_eviction(sender, name, tenant_app, reason):
    # Inside the tenant's own app context, itself inside the host app's.
    EVICTED.append((current_app.name, sender.name, name, reason))


def make_app(**config):
    app = Flask("host")
    app.config.update(config)

    @app.get("/")
    def index():
        return "host index"

    @app.errorhandler(404)
    def not_found(e):
        return "site 404 page", 404

    return app


def make_dispatch_app(**config):
    app = make_app(**{"DISPATCH_DOMAIN": "example.com", **config})
    dispatch = Dispatch(app)
    if app.config["DISPATCH_DOMAIN"]:
        dispatch.subdomain(factory)
    dispatch.path(factory)
    return app
"""

APP_FIXTURE = """

@pytest.fixture
def app():
    return make_dispatch_app()
"""

INI = """
[pytest]
filterwarnings =
    error
"""


def run(
    pytester: Pytester, tests: str, *args: str, conftest: str = CONFTEST + APP_FIXTURE
) -> RunResult:
    """Run ``tests`` as a test module beside ``conftest``, in a fresh
    interpreter (as a user would: the plugin comes from its entry point)."""
    pytester.makeini(INI)
    pytester.makeconftest(conftest)
    pytester.makepyfile(test_user=textwrap.dedent(tests))
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", *args)


def test_subdomain_client(pytester: Pytester) -> None:
    result = run(
        pytester,
        """
        import pytest
        from conftest import make_dispatch_app

        def test_acme(tenant_client):
            acme = tenant_client("acme")
            assert acme.tenant == "acme" and acme.by == "subdomain"
            assert acme.tenant_host == "acme.example.com"
            assert acme.get("/where").text == "acme host=acme.example.com root= path=/where"
            assert acme.get().text == "acme index"
            assert acme.get("/go", follow_redirects=True).text.startswith("acme host=acme.")
            assert acme.get("/", url_scheme="https").request.url == "https://acme.example.com/"
            assert acme.get("/", base_url="http://acme.example.com:8000/").text == "acme index"
            assert tenant_client("globex").get("/").text == "globex index"

        def test_full_url_is_sent_as_given(tenant_client):
            assert tenant_client("acme").get("http://example.com/").text == "host index"

        class TestTwoDomains:
            @pytest.fixture
            def app(self):
                return make_dispatch_app(DISPATCH_DOMAIN=["Example.COM.", "tenants.example.org"])

            def test_the_first_is_used(self, tenant_client):
                acme = tenant_client("acme")
                assert acme.tenant_host == "acme.example.com"
                assert acme.get("/where").text.startswith("acme host=acme.example.com ")
        """,
    )
    result.assert_outcomes(passed=3)


def test_path_client(pytester: Pytester) -> None:
    result = run(
        pytester,
        """
        def test_acme(tenant_client):
            acme = tenant_client("acme", by="path")
            assert acme.tenant == "acme" and acme.by == "path" and acme.tenant_host is None
            assert acme.get("/where").text == "acme host=localhost root=/acme path=/where"
            assert acme.get("where").text == "acme host=localhost root=/acme path=/where"
            assert acme.get("/").text == "acme index"
            assert acme.get().text == "acme index"
            assert acme.get(path="/where?x=1").text.endswith("root=/acme path=/where")
            assert acme.get("/go", follow_redirects=True).text.endswith("root=/acme path=/where")
            assert acme.post("/where").status_code == 405
            assert tenant_client("globex", "path").get("/").text == "globex index"

        def test_full_url_is_sent_as_given(tenant_client):
            assert tenant_client("acme", by="path").get("http://localhost/").text == "host index"
        """,
    )
    result.assert_outcomes(passed=2)


def test_cookies_per_tenant(pytester: Pytester) -> None:
    result = run(
        pytester,
        """
        def test_sessions(tenant_client):
            acme, globex = tenant_client("acme"), tenant_client("globex")
            acme_by_path = tenant_client("acme", by="path")
            assert acme.get("/login/alice").text == "ok"
            assert acme.get("/me").text == "alice"
            assert globex.get("/me").text == "nobody"
            assert acme_by_path.get("/me").text == "nobody"
            # dispatch names each tenant's session cookie after it
            assert acme.get_cookie("session_acme") is not None
            assert globex.get_cookie("session_globex") is None
            acme.delete_cookie("session_acme")
            assert acme.get("/me").text == "nobody"

        def test_cookies_by_path(tenant_client):
            acme = tenant_client("acme", by="path")
            assert acme.get("/login/alice").text == "ok"
            # on the tenant's path, where dispatch scopes its session cookie
            assert acme.get_cookie("session_acme").path == "/acme"
            acme.delete_cookie("session_acme")
            assert acme.get("/me").text == "nobody"
            # and on / too (a cookie set with Flask's default path)
            acme.set_cookie("theme", "dark", path="/")
            assert acme.get("/cookie/theme").text == "dark"
            assert acme.get_cookie("theme").path == "/"
            acme.delete_cookie("theme")
            assert acme.get("/cookie/theme").text == "none"
            # set on the tenant's path, as its session cookie is
            acme.set_cookie("theme", "light")
            assert acme.get_cookie("theme", path="/acme").value == "light"

        def test_set_cookie_reaches_the_tenant(tenant_client):
            acme = tenant_client("acme")
            acme.set_cookie("theme", "dark")
            assert acme.get("/cookie/theme").text == "dark"
            assert tenant_client("globex").get("/cookie/theme").text == "none"
        """,
    )
    result.assert_outcomes(passed=3)


@pytest.mark.parametrize(
    ("config", "domain", "root"),
    [
        pytest.param('SERVER_NAME="Example.com:5000"', "example.com", "", id="server-name"),
        pytest.param('APPLICATION_ROOT="/site"', "localhost", "/site", id="application-root"),
    ],
)
def test_cookies_by_path_where_the_apps_own_client_goes(
    pytester: Pytester, config: str, domain: str, root: str
) -> None:
    # By path, requests go where app.test_client() sends them, and so do the
    # cookie helpers' defaults: dispatch scopes the session to its script root.
    fixture = f"""

@pytest.fixture
def app():
    return make_dispatch_app({config})
"""
    result = run(
        pytester,
        f"""
        def test_cookies(tenant_client):
            acme = tenant_client("acme", by="path")
            assert acme.get("/login/alice").text == "ok"
            cookie = acme.get_cookie("session_acme")
            assert (cookie.domain, cookie.path) == ("{domain}", "{root}/acme")
            acme.set_cookie("theme", "dark")
            assert acme.get("/cookie/theme").text == "dark"
            acme.delete_cookie("session_acme")
            assert acme.get("/me").text == "nobody"
        """,
        conftest=CONFTEST + fixture,
    )
    result.assert_outcomes(passed=1)


def test_subdomain_clients_keep_server_names_port(pytester: Pytester) -> None:
    # As app.test_client() and tenant_url() have it: a host without the port
    # would make Flask warn that it does not match SERVER_NAME.
    fixture = """

@pytest.fixture
def app():
    return make_dispatch_app(SERVER_NAME="example.com:5000")
"""
    result = run(
        pytester,
        """
        def test_port(tenant_client):
            acme = tenant_client("acme")
            assert acme.tenant_host == "acme.example.com:5000"
            assert acme.get("/where").text.startswith("acme host=acme.example.com:5000 ")
            assert tenant_client("initech").get("/").status_code == 404
            assert acme.get("/login/alice").text == "ok"
            assert acme.get_cookie("session_acme") is not None
        """,
        conftest=CONFTEST + fixture,
    )
    result.assert_outcomes(passed=1)


def test_app_is_made_when_the_test_asks_for_it(pytester: Pytester) -> None:
    # The plugin must not make ``app`` ahead of the fixtures a test lists
    # before it (pytest-flask, turned off here, does so itself).
    fixture = """

@pytest.fixture
def domain(monkeypatch):
    monkeypatch.setenv("FLASK_DISPATCH_DOMAIN", "example.com")


@pytest.fixture
def app():
    app = make_app()
    app.config.from_prefixed_env()
    Dispatch(app).subdomain(factory)
    return app
"""
    result = run(
        pytester,
        """
        def test_order(domain, app, tenant_client):
            assert tenant_client("acme").get("/").text == "acme index"
        """,
        "-p",
        "no:flask",
        conftest=CONFTEST + fixture,
    )
    result.assert_outcomes(passed=1)


def test_same_client_on_repeat(pytester: Pytester) -> None:
    result = run(
        pytester,
        """
        SEEN = []

        def test_one(tenant_client):
            acme = tenant_client("acme")
            assert tenant_client("acme") is acme
            assert tenant_client("acme", by="subdomain") is acme
            assert tenant_client("acme", by="path") is tenant_client("acme", by="path")
            assert tenant_client("acme", by="path") is not acme
            assert tenant_client("globex") is not acme
            SEEN.append(acme)

        def test_two(tenant_client):
            assert tenant_client("acme") is not SEEN[0]
        """,
    )
    result.assert_outcomes(passed=2)


CLEANUP_TESTS = """
import pytest
from conftest import CREATED, EVICTED, KNOWN

def test_one(app, tenant_client):
    assert tenant_client("acme").get("/").text == "acme index"
    assert tenant_client("initech").get("/").status_code == 404
    assert "acme" in app.extensions["dispatch"].registry
    assert CREATED == ["acme"]

def test_two(app, tenant_client):
    registry = app.extensions["dispatch"].registry
    assert len(registry) == 0 and registry.stats().misses == 0
    assert EVICTED == [("tenant_acme", "host", "acme", "evict")]
    KNOWN.add("initech")  # a signup: no remembered miss stands in the way
    assert tenant_client("initech").get("/").text == "initech index"
    assert tenant_client("acme").get("/").text == "acme index"
    assert CREATED == ["acme", "initech", "acme"]
"""


@pytest.mark.parametrize(
    ("scope", "args"),
    [
        pytest.param('scope="session"', (), id="session-scoped-app"),
        pytest.param('scope="module"', (), id="module-scoped-app"),
        # No request context pushed by pytest-flask around the cleanup.
        pytest.param('scope="session"', ("-p", "no:flask"), id="without-pytest-flask"),
    ],
)
def test_cleanup_between_tests(pytester: Pytester, scope: str, args: tuple[str, ...]) -> None:
    conftest = CONFTEST + APP_FIXTURE.replace("@pytest.fixture", f"@pytest.fixture({scope})")
    result = run(pytester, CLEANUP_TESTS, *args, conftest=conftest)
    result.assert_outcomes(passed=2)


def test_cleanup_of_module_level_app(pytester: Pytester) -> None:
    # The app fixture returns an app made at import time, as many projects do.
    conftest = CONFTEST + textwrap.dedent(
        """
        APP = make_dispatch_app()

        @pytest.fixture
        def app():
            return APP
        """
    )
    result = run(pytester, CLEANUP_TESTS, conftest=conftest)
    result.assert_outcomes(passed=2)


def test_cleanup_when_the_test_registers_dispatch(pytester: Pytester) -> None:
    conftest = CONFTEST + textwrap.dedent(
        """
        HOST = make_app(DISPATCH_DOMAIN="example.com")

        @pytest.fixture
        def bare_app():
            return HOST
        """
    )
    result = run(
        pytester,
        """
        import pytest
        from flask_dispatch import Dispatch
        from conftest import CREATED, factory

        @pytest.fixture
        def app(bare_app):
            return bare_app

        def test_one(app, tenant_client):
            Dispatch(app).subdomain(factory)
            assert tenant_client("acme").get("/").text == "acme index"

        def test_two(app):
            assert len(app.extensions["dispatch"].registry) == 0
        """,
        conftest=conftest,
    )
    result.assert_outcomes(passed=2)


# A fixture that removes what tenants use (a database, say) checks at its
# teardown that the tenant_evicted receiver has let go of it already.
TENANT_DATABASE = """
OPEN = set()

@pytest.fixture(SCOPE)
def tenant_database(app):
    def connect(sender, name, tenant_app):
        OPEN.add(name)

    def close(sender, name, tenant_app, reason):
        OPEN.discard(name)

    from flask_dispatch import tenant_created
    tenant_created.connect(connect)
    tenant_evicted.connect(close)
    yield
    assert not OPEN, f"connections of {OPEN} still open"
    tenant_created.disconnect(connect)
    tenant_evicted.disconnect(close)

@pytest.fixture(SCOPE)
def acme(tenant_database, app):
    client = app.test_client()
    yield client
    # A tidy fixture logs out at its teardown.
    client.get("/", base_url="http://acme.example.com/")
"""


@pytest.mark.parametrize(
    ("scope", "fixture_scope"),
    [
        pytest.param("", "", id="function-scoped-app"),
        pytest.param('scope="session"', "", id="session-scoped-app"),
        # Torn down in the last test's teardown, though not by its own node.
        pytest.param('scope="session"', 'scope="module"', id="module-scoped-fixtures"),
    ],
)
@pytest.mark.parametrize(
    "tests",
    [
        pytest.param(
            """
            def test_one(app, tenant_database, tenant_client):
                assert tenant_client("acme").get("/").text == "acme index"

            def test_two(tenant_database, app, tenant_client):
                assert tenant_client("globex").get("/").text == "globex index"
            """,
            id="built-by-the-test",
        ),
        # Dropped again before the fixtures that fixture used are torn down.
        pytest.param(
            """
            def test_one(acme):
                assert acme.get("/", base_url="http://acme.example.com/").text == "acme index"

            def test_two(app):
                assert list(app.extensions["dispatch"].registry) == []
            """,
            id="built-again-by-a-fixtures-teardown",
        ),
        # With module-scoped fixtures, in the teardown of a test without app.
        pytest.param(
            """
            def test_one(acme):
                assert acme.get("/", base_url="http://acme.example.com/").text == "acme index"

            def test_two():
                pass
            """,
            id="built-again-after-a-test-without-app",
        ),
        # By a cleanup the fixture adds while the test runs.
        pytest.param(
            """
            import pytest

            @pytest.fixture
            def login(tenant_database, app, request):
                def login():
                    client = app.test_client()
                    logout = lambda: client.get("/", base_url="http://acme.example.com/")
                    request.addfinalizer(logout)
                return login

            def test_one(login):
                login()

            def test_two(app):
                assert list(app.extensions["dispatch"].registry) == []
            """,
            id="built-again-by-a-cleanup-added-later",
        ),
    ],
)
def test_tenants_are_dropped_before_the_fixtures_they_use_are_torn_down(
    pytester: Pytester, scope: str, fixture_scope: str, tests: str
) -> None:
    conftest = CONFTEST + APP_FIXTURE.replace("@pytest.fixture", f"@pytest.fixture({scope})")
    conftest += TENANT_DATABASE.replace("SCOPE", fixture_scope)
    result = run(pytester, tests, conftest=conftest)
    result.assert_outcomes(passed=2)


def test_a_tenant_built_by_a_fixtures_teardown_is_dropped_whatever_app_the_test_used(
    pytester: Pytester,
) -> None:
    # Package a's session fixtures go at the end of the session, after b's
    # test, which used another app.
    pytester.makeini(INI)
    pytester.makeconftest(CONFTEST)
    pytester.mkpydir("a").joinpath("conftest.py").write_text(
        "from conftest import *\n"
        + TENANT_DATABASE.replace("SCOPE", 'scope="session"')
        + APP_FIXTURE.replace("@pytest.fixture", '@pytest.fixture(scope="session")')
    )
    pytester.path.joinpath("a", "test_a.py").write_text(
        "def test_a(acme):\n    acme.get('/', base_url='http://acme.example.com/')\n"
    )
    pytester.mkpydir("b").joinpath("conftest.py").write_text(
        "from conftest import *\n" + APP_FIXTURE
    )
    pytester.path.joinpath("b", "test_b.py").write_text("def test_b(app):\n    pass\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)


def test_the_plugin_connects_no_receiver(pytester: Pytester) -> None:
    # One more receiver would change the order blinker calls a suite's own in.
    tests = """
        from flask_dispatch import tenant_created, tenant_evicted

        def test_signals(app):
            assert not tenant_created.receivers
            assert list(tenant_evicted.receivers) == [id(record_eviction)]
        """
    result = run(pytester, "from conftest import record_eviction\n" + textwrap.dedent(tests))
    result.assert_outcomes(passed=1)


def test_tenants_built_by_a_parametrized_fixtures_teardown_are_dropped(
    pytester: Pytester,
) -> None:
    # pytest tears the first parameter's fixture down as it sets the
    # second's up, outside any test's teardown.
    conftest = CONFTEST + APP_FIXTURE.replace("@pytest.fixture", '@pytest.fixture(scope="session")')
    conftest += TENANT_DATABASE.replace("SCOPE", 'scope="module"')
    tests = """
        import pytest

        @pytest.fixture(scope="module", params=["first", "second"])
        def logged_in(request, tenant_database, app):
            yield request.param
            app.test_client().get("/", base_url="http://acme.example.com/")  # logs out

        def test_one(logged_in, app):
            assert list(app.extensions["dispatch"].registry) == []
        """
    result = run(pytester, tests, conftest=conftest)
    result.assert_outcomes(passed=2)


@pytest.mark.parametrize(
    ("tests", "passed"),
    [
        # For [postgres-en], pytest sets up "warm_acme" again, which builds
        # acme, then finalizes the "locale" of [sqlite-de], in one setup.
        pytest.param(
            """
            import pytest

            @pytest.fixture(scope="session", params=["sqlite", "postgres"])
            def backend(request):
                return request.param

            @pytest.fixture(scope="session")
            def warm_acme(backend, app):
                app.test_client().get("/", base_url="http://acme.example.com/")
                return {"fresh": True}

            @pytest.fixture(scope="module", params=["en", "de"])
            def locale(request, app):
                yield request.param
                app.test_client().get("/", base_url="http://globex.example.com/")

            def test_one(warm_acme, locale, app):
                if warm_acme.pop("fresh", False):  # the first test after its setup
                    assert "acme" in app.extensions["dispatch"].registry
            """,
            4,
            id="a-fixture-torn-down-during-setup",
        ),
        # A test without app: its fixtures are its own business.
        pytest.param(
            """
            import pytest
            SITE = make_dispatch_app()

            @pytest.fixture
            def app():
                return SITE

            def test_uses_app(app):
                pass

            @pytest.fixture
            def acme():
                yield SITE.test_client().get("/", base_url="http://acme.example.com/")
                assert "acme" in SITE.extensions["dispatch"].registry

            @pytest.fixture
            def other():
                yield
                SITE.test_client().get("/", base_url="http://globex.example.com/")

            def test_without_app(acme, other):
                pass
            """,
            2,
            id="fixtures-of-a-test-without-app",
        ),
    ],
)
def test_tenants_that_no_fixtures_teardown_built_stay_until_the_test_ends(
    pytester: Pytester, tests: str, passed: int
) -> None:
    conftest = CONFTEST + APP_FIXTURE.replace("@pytest.fixture", '@pytest.fixture(scope="session")')
    tests = "from conftest import make_dispatch_app\n" + textwrap.dedent(tests)
    result = run(pytester, tests, conftest=conftest)
    result.assert_outcomes(passed=passed)


# An app whose teardown_appcontext fails once BROKEN is set, after a
# database fixture that records when it is torn down.
BREAKABLE_APP = """
EVENTS = []

@pytest.fixture
def database():
    EVENTS.append("up")
    yield
    EVENTS.append("down")

@pytest.fixture
def app(database):
    app = make_dispatch_app()

    @app.teardown_appcontext
    def remove_session(exception):
        if app.config.get("BROKEN"):
            raise RuntimeError("session.remove() failed")

    return app
"""


def test_a_cleanup_that_fails_errors_the_test_and_the_fixtures_are_still_torn_down(
    pytester: Pytester,
) -> None:
    conftest = CONFTEST + BREAKABLE_APP
    tests = """
        from conftest import EVENTS

        def test_one(app):
            app.config["BROKEN"] = True

        def test_two(app):
            pass

        def test_three():
            assert EVENTS == ["up", "down", "up", "down"]
        """
    result = run(pytester, tests, conftest=conftest)
    result.assert_outcomes(passed=3, errors=1)
    result.stdout.fnmatch_lines(["*RuntimeError: session.remove() failed*"])
    # A fixture that fails at its teardown as well: both errors are told.
    broken_database = conftest.replace('EVENTS.append("down")', 'raise ValueError("no database")')
    test = "def test_one(app):\n    app.config['BROKEN'] = True\n"
    # Without pytest-flask, whose request context would fail to pop as well.
    result = run(pytester, test, "-p", "no:flask", conftest=broken_database)
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*ValueError: no database*",
            "*Dropping the tenants failed too: RuntimeError('session.remove() failed')*",
        ]
    )


def test_a_cleanup_after_a_fixtures_teardown_that_fails_errors_the_test(
    pytester: Pytester,
) -> None:
    conftest = CONFTEST + BREAKABLE_APP
    conftest += textwrap.dedent(
        """
        @pytest.fixture
        def acme(app, tenant_client):
            yield
            tenant_client("acme").get("/")  # built again at its teardown ...
            app.config["BROKEN"] = True  # ... and dropping it fails
        """
    )
    tests = """
        from conftest import EVENTS

        def test_one(acme):
            pass

        def test_two(acme):  # its fixtures made afresh
            assert EVENTS == ["up", "down", "up"]

        def test_three():
            assert EVENTS == ["up", "down", "up", "down"]
        """
    result = run(pytester, tests, "-p", "no:flask", conftest=conftest)
    if not hasattr(getattr(pluggy, "Result", None), "force_exception"):  # pluggy 1.0: logged
        result.assert_outcomes(passed=3)
        return
    result.assert_outcomes(passed=3, errors=2)
    result.stdout.fnmatch_lines(["*ERROR at teardown of test_one*", "*session.remove() failed*"])


@pytest.mark.parametrize(
    ("close", "shown"),
    [
        pytest.param(
            'raise OSError("could not close")',
            ["*OSError: could not close*", "*Raised by a tenant_evicted receiver*"],
            id="error",
        ),
        pytest.param(
            'logging.getLogger("flask_dispatch").disabled = True\n    raise OSError("quiet")',
            ["*OSError: quiet*"],
            id="error-with-dispatchs-log-off",
        ),
        pytest.param(
            'raise SystemExit("bye")',
            ["*RuntimeError: Releasing a tenant raised SystemExit('bye')*"],
            id="exit-does-not-end-the-run",
        ),
        pytest.param(
            "tenant_app.teardown_appcontext_funcs.append(fail)",
            ["*RuntimeError: tenant teardown failed*", "*Raised by a tenant_evicted receiver*"],
            id="the-tenants-app-context-fails",
        ),
        # Another app's receiver fails on another thread meanwhile: not ours.
        pytest.param("in_another_thread(fail_elsewhere)", [], id="not-another-apps-failure"),
    ],
)
def test_a_tenant_evicted_receiver_that_fails_errors_the_test(
    pytester: Pytester, close: str, shown: list[str]
) -> None:
    conftest = CONFTEST + APP_FIXTURE
    conftest += textwrap.dedent(
        """
        import logging
        import threading

        def in_another_thread(work):
            thread = threading.Thread(target=work)
            thread.start()
            thread.join()

        FAILED_ELSEWHERE = []

        def fail(exception):
            raise RuntimeError("tenant teardown failed")

        def divide_by_zero(sender, **extra):
            FAILED_ELSEWHERE.append(extra["name"])
            1 / 0

        def fail_elsewhere():
            other = make_dispatch_app()
            tenant_evicted.connect(divide_by_zero, other)
            other.test_client().get("/", base_url="http://acme.example.com/")
            with other.app_context():
                other.extensions["dispatch"].evict("acme")
            assert FAILED_ELSEWHERE == ["acme"]  # it did fail
        """
    )
    conftest += f"""
def close(sender, name, tenant_app, reason):
    {close}

@pytest.fixture
def closing(app):
    tenant_evicted.connect(close, app)
    yield
    tenant_evicted.disconnect(close, app)
"""
    tests = """
        def test_one(closing, tenant_client):
            assert tenant_client("acme").get("/").text == "acme index"

        def test_two(closing, tenant_client):
            pass  # nothing built: nothing to release
        """
    result = run(pytester, tests, conftest=conftest)
    pluggy_1_0 = not hasattr(getattr(pluggy, "Result", None), "force_exception")
    if not shown or pluggy_1_0:  # pluggy 1.0: logged
        result.assert_outcomes(passed=2)
        return
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(["*ERROR at teardown of test_one*", *shown])


def test_no_app_context_after_the_fixtures_are_torn_down_with_nothing_to_drop(
    pytester: Pytester,
) -> None:
    conftest = CONFTEST + textwrap.dedent(
        """
        DATABASE = []

        @pytest.fixture
        def database():
            DATABASE.append("up")
            yield
            DATABASE.clear()

        @pytest.fixture
        def app(database):
            app = make_dispatch_app()

            @app.teardown_appcontext
            def remove_session(exception):
                assert DATABASE, "the database is gone"

            return app
        """
    )
    tests = """
        def test_one(app, tenant_client):
            assert tenant_client("acme").get("/").text == "acme index"
        """
    result = run(pytester, tests, conftest=conftest)
    result.assert_outcomes(passed=1)


def test_what_receivers_print_at_the_cleanup_is_captured_with_the_test(
    pytester: Pytester,
) -> None:
    receiver = textwrap.dedent(
        """
        @tenant_evicted.connect
        def say(sender, name, tenant_app, reason):
            print(f"released {name}")
        """
    )
    tests = """
        def test_one(app, tenant_client):
            assert tenant_client("acme").get("/").text == "acme index"
        """
    result = run(pytester, tests, "-rA", conftest=CONFTEST + APP_FIXTURE + receiver)
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*Captured stdout teardown*", "released acme"])


def test_cleanup_of_an_app_asked_for_by_name(pytester: Pytester) -> None:
    session_app = APP_FIXTURE.replace("@pytest.fixture", '@pytest.fixture(scope="session")')
    result = run(
        pytester,
        """
        def test_one(request):
            app = request.getfixturevalue("app")
            assert app.test_client().get("/acme/").text == "acme index"

        def test_two(request):
            registry = request.getfixturevalue("app").extensions["dispatch"].registry
            assert len(registry) == 0
        """,
        conftest=CONFTEST + session_app,
    )
    result.assert_outcomes(passed=2)


def test_an_app_whose_test_failed_to_set_up_is_not_made_for_the_cleanup(
    pytester: Pytester,
) -> None:
    conftest = CONFTEST + textwrap.dedent(
        """
        MADE = []

        @pytest.fixture
        def app():
            MADE.append("app")
            return make_dispatch_app()

        @pytest.fixture
        def broken():
            raise RuntimeError("no database")
        """
    )
    result = run(
        pytester,
        """
        from conftest import MADE

        def test_broken(broken, app):
            pass

        def test_after():
            assert MADE == []
        """,
        "-p",
        "no:flask",  # whose own autouse fixtures make the app before the test's
        conftest=conftest,
    )
    result.assert_outcomes(passed=1, errors=1)


def test_errors(pytester: Pytester) -> None:
    result = run(
        pytester,
        """
        import pytest
        from flask_dispatch import DispatchConfigError
        from conftest import make_app, make_dispatch_app

        class TestNoDomain:
            @pytest.fixture
            def app(self):
                return make_dispatch_app(DISPATCH_DOMAIN=None)

            def test_subdomain(self, tenant_client):
                with pytest.raises(DispatchConfigError, match=r"DISPATCH_DOMAIN \\(or SERVER"):
                    tenant_client("acme", by="subdomain")

            def test_path_still_works_and_is_the_default(self, tenant_client):
                acme = tenant_client("acme")
                assert acme.by == "path" and acme is tenant_client("acme", by="path")
                assert acme.get("/").text == "acme index"

        class TestNoDispatch:
            @pytest.fixture
            def app(self):
                return make_app(DISPATCH_DOMAIN="example.com")

            @pytest.mark.parametrize("by", ["subdomain", "path"])
            def test_error(self, tenant_client, by):
                with pytest.raises(RuntimeError, match=r"forget to call 'Dispatch\\(app\\)'"):
                    tenant_client("acme", by=by)

        def test_bad_by(tenant_client):
            with pytest.raises(ValueError, match="'subdomain' or 'path', not 'host'"):
                tenant_client("acme", by="host")

        def test_session_transaction(tenant_client):
            with pytest.raises(NotImplementedError, match="tenant 'acme'"):
                with tenant_client("acme").session_transaction():
                    pass
        """,
    )
    result.assert_outcomes(passed=6)


def test_unknown_tenant_is_404(pytester: Pytester) -> None:
    result = run(
        pytester,
        """
        import pytest

        @pytest.mark.parametrize("by", ["subdomain", "path"])
        def test_unknown(tenant_client, by):
            response = tenant_client("initech", by=by).get("/")
            assert response.status_code == 404
            assert response.text == "site 404 page"
        """,
    )
    result.assert_outcomes(passed=2)


def test_app_test_client_class(pytester: Pytester) -> None:
    result = run(
        pytester,
        """
        from flask.testing import FlaskClient
        from flask_dispatch.pytest_plugin import TenantClient

        class MyClient(FlaskClient):
            def login(self, user):
                return self.get(f"/login/{user}")

        def test_helpers_are_kept(app, tenant_client):
            app.test_client_class = MyClient
            acme = tenant_client("acme")
            assert isinstance(acme, MyClient) and isinstance(acme, TenantClient)
            assert acme.login("alice").text == "ok"
            assert acme.get("/me").text == "alice"
        """,
    )
    result.assert_outcomes(passed=1)


def test_without_pytest_flask(pytester: Pytester) -> None:
    result = run(
        pytester,
        """
        def test_acme(pytestconfig, tenant_client):
            assert not pytestconfig.pluginmanager.has_plugin("flask")
            assert tenant_client("acme").get("/").text == "acme index"
        """,
        "-p",
        "no:flask",
    )
    result.assert_outcomes(passed=1)


PLUGIN_IS_LOADED = """
def test_plugin_is_loaded(pytestconfig):
    assert pytestconfig.pluginmanager.has_plugin("flask_dispatch")
"""


@pytest.mark.parametrize(
    ("conftest", "tests", "args"),
    [
        pytest.param("", "def test_plain():\n    pass\n", (), id="no-app-fixture"),
        pytest.param("", "def test_plain():\n    pass\n", ("-p", "no:flask"), id="no-pytest-flask"),
        pytest.param(
            "import pytest\nfrom flask import Flask\n\n"
            "@pytest.fixture\ndef app():\n    app = Flask('plain')\n"
            "    app.get('/')(lambda: 'plain')\n    return app\n",
            "def test_client(client):\n    assert client.get('/').text == 'plain'\n",
            (),
            id="app-without-dispatch",
        ),
        pytest.param(
            "import pytest\n\n@pytest.fixture\ndef app():\n    return object()\n",
            "def test_other(app):\n    assert app is not None\n",
            # pytest-flask itself needs a Flask app: a project without it.
            ("-p", "no:flask"),
            id="app-not-flask",
        ),
    ],
)
def test_leaves_other_suites_alone(
    pytester: Pytester, conftest: str, tests: str, args: tuple[str, ...]
) -> None:
    result = run(pytester, tests + PLUGIN_IS_LOADED, *args, conftest=conftest)
    result.assert_outcomes(passed=2)


def test_registered_by_entry_point(pytester: Pytester) -> None:
    tests = "def test_acme(tenant_client):\n    tenant_client('acme')\n"
    run(pytester, tests).assert_outcomes(passed=1)
    result = run(pytester, tests, "-p", "no:flask_dispatch")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*fixture 'tenant_client' not found*"])


TESTING_PAGE = Path(__file__).parents[1] / "docs" / "testing.rst"


def code_blocks(rst: str) -> dict[str, str]:
    """The ``.. code-block:: python`` blocks of ``rst``, by their
    ``:caption:`` (a file name)."""
    blocks = {}
    pattern = r"^\.\. code-block:: python\n    :caption: (\S+)\n\n((?:    .*\n|\n)+)"
    for match in re.finditer(pattern, rst, re.MULTILINE):
        blocks[match[1]] = textwrap.dedent(match[2])
    return blocks


def test_docs_testing_page(pytester: Pytester) -> None:
    rst = TESTING_PAGE.read_text()
    blocks = code_blocks(rst)
    # Every code block on the page is one of these files: none goes unrun.
    assert rst.count(".. code-block::") == len(blocks) == 2
    assert not re.search(r"::\s*$", rst, re.MULTILINE), "a literal block no test runs"
    assert set(blocks) == {"conftest.py", "test_notes.py"}
    pytester.makeini(INI)
    for name, source in blocks.items():
        pytester.path.joinpath(name).write_text(source)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-v")
    tests = re.findall(r"^def (test_\w+)", blocks["test_notes.py"], re.MULTILINE)
    assert len(tests) == 6
    result.assert_outcomes(passed=len(tests))
