"""A pytest plugin for testing apps that use flask_dispatch.

pytest loads it by itself wherever flask_dispatch is installed, through the
``pytest11`` entry point named ``flask_dispatch`` (``-p no:flask_dispatch``
turns it off). It builds on the ``app`` fixture that your project defines for
`pytest-flask`_, and works without pytest-flask too:

-   The :func:`tenant_client` fixture makes test clients whose requests reach
    one tenant, by subdomain or by path.
-   After each test that uses ``app``, every tenant held by that app's
    registry, and every remembered "no such tenant" answer, is dropped, so no
    tenant outlives the test that created it, even when ``app`` is a
    session-scoped fixture or a module-level app. It happens before the
    test's fixtures are torn down; the tenants a fixture's teardown builds
    are dropped right after it (whenever pytest tears it down).

Test suites whose tests use no ``app`` fixture, or whose ``app`` does not use
dispatch, are left alone.

.. _pytest-flask: https://pytest-flask.readthedocs.io/

.. versionadded:: 0.2
"""

from __future__ import annotations

import logging
import typing as t
import weakref
from contextlib import contextmanager
from urllib.parse import urlsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient

from . import DispatchConfigError, DispatchState
from .extension import created_watchers, receiver_failures
from .links import By, default_by

if t.TYPE_CHECKING:
    from collections.abc import Generator, Iterator

    import pluggy
    from flask.sessions import SessionMixin
    from werkzeug.test import Cookie, TestResponse

_BY: tuple[By, ...] = t.get_args(By)
_log = logging.getLogger("flask_dispatch")


class TenantClient(FlaskClient):
    """A Flask test client whose requests go to one tenant.

    By subdomain, a request with a relative URL goes to
    ``http://<tenant>.<domain>/``. By path, ``/<tenant>`` is put in front of
    a relative URL, so ``client.get("/notes")`` asks for ``/acme/notes`` on
    the host the app's own test client uses (``localhost``, or
    ``SERVER_NAME``). A full URL (``"http://..."``), an ``EnvironBuilder``,
    an environ or a request is sent as it is, and so are redirects, which
    already say where they go.

    Made by the :func:`tenant_client` fixture, from the app's
    ``test_client_class`` when it sets one; everything else works as on
    ``app.test_client()``. Each client has its own cookies.

    .. versionadded:: 0.2
    """

    def __init__(
        self, *args: t.Any, tenant: str, by: By, host: str | None, **kwargs: t.Any
    ) -> None:
        super().__init__(*args, **kwargs)
        #: The tenant's name.
        self.tenant = tenant
        #: ``"subdomain"`` or ``"path"``.
        self.by = by
        #: The host requests go to by subdomain, e.g. ``"acme.example.com"``
        #: (with ``SERVER_NAME``'s port, if it has one); ``None`` by path.
        self.tenant_host = host

    def open(
        self,
        *args: t.Any,
        buffered: bool = False,
        follow_redirects: bool = False,
        **kwargs: t.Any,
    ) -> TestResponse:
        if not args or isinstance(args[0], str):
            path: str = args[0] if args else kwargs.pop("path", "/")
            args = (self._tenant_url(path, kwargs), *args[1:])
        return super().open(*args, buffered=buffered, follow_redirects=follow_redirects, **kwargs)

    def _tenant_url(self, path: str, kwargs: dict[str, t.Any]) -> str:
        """``path`` made to reach the tenant; may set ``base_url`` in
        ``kwargs``."""
        url = urlsplit(path)
        if url.scheme or url.netloc:
            return path
        if self.tenant_host is None:
            return f"/{self.tenant}{'' if path.startswith('/') else '/'}{path}"
        if "base_url" not in kwargs:
            # Flask's EnvironBuilder takes a url_scheme or a base_url, not both.
            scheme = kwargs.pop("url_scheme", None) or "http"
            kwargs["base_url"] = f"{scheme}://{self.tenant_host}/"
        return path

    def get_cookie(
        self, key: str, domain: str | None = None, path: str | None = None
    ) -> Cookie | None:
        """Like :meth:`werkzeug.test.Client.get_cookie`; ``domain`` defaults
        to the host requests go to (the tenant's by subdomain, ``localhost``
        or ``SERVER_NAME``'s by path), and ``path``, by path, to the
        tenant's path (``/acme``, where dispatch scopes its session cookie),
        then ``/``."""
        domain = domain or self._cookie_domain
        for candidate in [path] if path else dict.fromkeys([self._cookie_path, "/"]):
            cookie = super().get_cookie(key, domain, candidate)
            if cookie is not None:
                return cookie
        return None

    def set_cookie(
        self,
        key: str,
        value: str = "",
        *,
        domain: str | None = None,
        path: str | None = None,
        **kwargs: t.Any,
    ) -> None:
        """Like :meth:`werkzeug.test.Client.set_cookie`; ``domain`` defaults
        to the host requests go to, and ``path`` to the tenant's path
        by path, as the tenant's own session cookie."""
        path = path or self._cookie_path
        super().set_cookie(key, value, domain=domain or self._cookie_domain, path=path, **kwargs)

    def delete_cookie(
        self, key: str, *, domain: str | None = None, path: str | None = None
    ) -> None:
        """Like :meth:`werkzeug.test.Client.delete_cookie`; ``domain`` and
        ``path`` default as for :meth:`get_cookie`."""
        found = self.get_cookie(key, domain, path)
        path = path or (found.path if found is not None else "/")
        super().delete_cookie(key, domain=domain or self._cookie_domain, path=path)

    @property
    def _cookie_path(self) -> str:
        # Where dispatch scopes the tenant's session cookie: its script root,
        # under the app's APPLICATION_ROOT by path, as its requests are.
        if self.by != "path":
            return "/"
        root = self.application.config.get("APPLICATION_ROOT") or "/"
        return f"{root.rstrip('/')}/{self.tenant}"

    @property
    def _cookie_domain(self) -> str:
        # The domain Werkzeug files a response's cookies under: the host of
        # the request, as by subdomain, else as the app's own test client.
        host = self.tenant_host or self.application.config.get("SERVER_NAME") or "localhost"
        return urlsplit(f"//{host}").hostname or "localhost"

    @contextmanager
    def session_transaction(self, *args: t.Any, **kwargs: t.Any) -> Iterator[SessionMixin]:
        """Not available: Flask's ``session_transaction`` opens the host
        app's session, not the tenant's. Log in through the tenant's own
        views instead.

        :raises NotImplementedError: always.
        """
        raise NotImplementedError(
            f"session_transaction() would open the host app's session, not the session"
            f" of tenant {self.tenant!r}. Log in through the tenant's own views instead."
        )
        yield  # pragma: no cover (makes this a generator, like the method it replaces)


class TenantClientFactory(t.Protocol):
    """The type of the :func:`tenant_client` fixture, for annotations.

    .. versionadded:: 0.2
    """

    def __call__(self, name: str, by: By | None = None) -> TenantClient:
        """The client for tenant ``name``, by ``"subdomain"`` or ``"path"``."""
        ...


@pytest.fixture
def tenant_client(app: Flask) -> TenantClientFactory:
    """Make test clients for tenants of ``app``: ``tenant_client(name,
    by=None)`` returns a :class:`TenantClient` for tenant ``name``, by
    ``"subdomain"`` (``http://<name>.<domain>/``, with the first domain in
    :data:`DISPATCH_DOMAIN`) or by ``"path"`` (``/<name>/...``). By default,
    by subdomain, unless a path factory is the only one registered.

    Within one test, the same name and ``by`` give the same client; any
    other call gives a new client, with cookies of its own.

    :raises RuntimeError: if dispatch is not registered on ``app``.
    :raises DispatchConfigError: by subdomain, if no domain is configured.
    :raises ValueError: for a ``by`` other than ``"subdomain"`` or ``"path"``.

    .. versionadded:: 0.2
    """
    clients: dict[tuple[str, By], TenantClient] = {}

    def make(name: str, by: By | None = None) -> TenantClient:
        by = by or _default_by(app)
        if (name, by) not in clients:
            clients[name, by] = _make_client(app, name, by)
        return clients[name, by]

    return make


#: Where a test's fixture request is kept, for :func:`pytest_runtest_teardown`.
_REQUEST = pytest.StashKey[pytest.FixtureRequest]()
#: In the config's stash (fixtures of any scope are torn down, so not in a
#: fixture's own node): the apps tests have used; the tenants built since a
#: fixture was last set up or torn down, with their host app; the function
#: that records them; and the first failure to drop the tenants a fixture's
#: teardown built.
_USED = pytest.StashKey["weakref.WeakSet[Flask]"]()
_BUILT = pytest.StashKey["list[tuple[weakref.ref[Flask], str]]"]()
_RECORD = pytest.StashKey["t.Callable[[Flask, str], None]"]()
_FAILED = pytest.StashKey[Exception]()


def pytest_configure(config: pytest.Config) -> None:
    """Record each tenant built, with its host app."""
    built: list[tuple[weakref.ref[Flask], str]] = []
    config.stash[_BUILT], config.stash[_USED] = built, weakref.WeakSet()

    def record(app: Flask, name: str) -> None:
        built.append((weakref.ref(app), name))  # on a creation thread: atomic

    config.stash[_RECORD] = record
    created_watchers.append(record)


def pytest_unconfigure(config: pytest.Config) -> None:
    record = config.stash.get(_RECORD, None)
    if record in created_watchers:
        created_watchers.remove(record)


@pytest.fixture(autouse=True)
def _dispatch_clear_tenants(request: pytest.FixtureRequest) -> None:
    """Keep the test's fixture request: the tenants are dropped at teardown."""
    request.node.stash[_REQUEST] = request


# An old-style wrapper, which pluggy 1.0 (pytest 7) knows too; inside
# pytest's output capture (trylast), so receivers' output shows with the test.
@pytest.hookimpl(hookwrapper=True, trylast=True)
def pytest_runtest_teardown(item: pytest.Item) -> Generator[None, pluggy.Result[None], None]:
    """After a test that used ``app``, drop every tenant and remembered miss
    of the app's dispatch registry: before the fixtures are torn down, as
    the ``tenant_evicted`` receivers may close what those fixtures remove
    (what a fixture's teardown builds again goes after it: see
    :func:`pytest_fixture_post_finalizer`). The fixtures are torn down
    whatever fails here; then the test errors (under pluggy 1.0, the
    failure is logged)."""
    app, failed = None, None
    stash = item.config.stash
    try:  # nothing may escape before the yield: the fixtures would stay up
        app = _app_used(item)
        if isinstance(app, Flask):
            stash[_USED].add(app)
        _drop_tenants(app)
    except Exception as e:
        failed = e
    stash[_BUILT].clear()  # by the test, or its setup: not by a teardown
    outcome = yield
    if _FAILED in stash:  # after a fixture's teardown
        failed = failed or stash[_FAILED]
        del stash[_FAILED]
    try:  # after what no fixture's teardown follows: a module's fixtures, say
        _drop_if_any(app)
    except Exception as e:
        failed = failed or e
    if failed is not None:
        _report(outcome, failed)


@pytest.hookimpl(hookwrapper=True)
def pytest_fixture_setup(
    fixturedef: object, request: pytest.FixtureRequest
) -> Generator[None, pluggy.Result[t.Any], None]:
    """What a fixture's setup built is not a teardown's."""
    yield
    request.config.stash[_BUILT].clear()


def pytest_fixture_post_finalizer(fixturedef: object, request: pytest.FixtureRequest) -> None:
    """After a fixture was torn down: drop the tenants its teardown built
    (a tidy fixture logs out) of apps tests have used, before the fixtures
    it used go too, whenever pytest tears it down (a module's fixtures at
    the end of its last test, which may not use ``app``; a parametrized one
    as the next parameter's is set up). Tenants other fixtures built stay.
    A failure is kept for the test's teardown: raised here, it would leave
    pytest's fixture half torn down."""
    stash = request.config.stash
    log, used = stash[_BUILT], stash[_USED]
    built = log.copy()
    log.clear()
    for ref, name in built:
        app = ref()
        try:
            if app is not None and app in used:
                _drop_tenants(app, name)
        except Exception as e:
            stash.setdefault(_FAILED, e)


def _report(outcome: pluggy.Result[None], failed: Exception) -> None:
    """Make the test error with ``failed``, or add it as a note to the
    teardown's own error; under pluggy 1.0, log it."""
    if outcome.excinfo is not None:
        outcome.excinfo[1].add_note(f"Dropping the tenants failed too: {failed!r}")
        return
    force_exception = getattr(outcome, "force_exception", None)  # pluggy 1.1
    if force_exception is not None:
        force_exception(failed)
    else:  # pluggy 1.0: raised here, it would skip pytest's output capture
        _log.error("Dropping the tenants failed at teardown.", exc_info=failed)


def _app_used(item: pytest.Item) -> object:
    """The ``app`` fixture's value if the test used it, else ``None``."""
    # Looked up now, not at setup: asked for before, ``app`` would be made
    # before the test's own fixtures, and the test itself may register
    # dispatch.
    app = getattr(item, "funcargs", {}).get("app")
    request = item.stash.get(_REQUEST, None)
    if (
        app is None
        and request is not None
        and "app" in request.fixturenames
        and "app" not in getattr(item, "fixturenames", ())
    ):
        # Asked for by name (getfixturevalue), so made already: not made
        # here for a test whose setup failed before it.
        try:
            app = request.getfixturevalue("app")
        except Exception:  # its setup failed: the test reports that
            return None
    return app


def _drop_if_any(app: object) -> None:
    """:func:`_drop_tenants`, if the registry holds anything: the app's
    ``teardown_appcontext`` may need what is gone once its fixtures are."""
    state = _dispatch_state(app)
    if state is not None and (len(state.registry) or state.registry.stats().misses):
        _drop_tenants(app)


def _drop_tenants(app: object, name: str | None = None) -> None:
    """Drop tenant ``name`` (by default, every tenant) of ``app``'s
    registry, in this process. What a ``tenant_evicted`` receiver raises is
    raised here: served, dispatch logs it and goes on; in a test, a release
    that fails is an error."""
    state = _dispatch_state(app)
    if isinstance(app, Flask) and state is not None:
        failures: list[BaseException] = []
        token = receiver_failures.set(failures)
        try:
            # In an app context, like requests that evict, for the receivers.
            with app.app_context():
                state.evict(name, everywhere=False)  # this process only
        finally:
            receiver_failures.reset(token)
        if failures:
            error = failures[0]
            if not isinstance(error, Exception):  # a SystemExit must not end the run
                raise RuntimeError(f"Releasing a tenant raised {error!r}.") from error
            error.add_note(
                "Raised by a tenant_evicted receiver, or its app context, as the tenants"
                " were dropped."
            )
            raise error


def _default_by(app: Flask) -> By:
    state = _dispatch_state(app)
    return "subdomain" if state is None else default_by(state)


def _dispatch_state(app: object) -> DispatchState | None:
    if not isinstance(app, Flask):
        return None
    state = app.extensions.get("dispatch")
    return state if isinstance(state, DispatchState) else None


def _make_client(app: Flask, name: str, by: By) -> TenantClient:
    if by not in _BY:
        raise ValueError(f"tenant_client(by=...) must be 'subdomain' or 'path', not {by!r}.")
    state = _dispatch_state(app)
    if state is None:
        raise RuntimeError(
            "tenant_client needs dispatch registered on the 'app' fixture's app."
            " Did you forget to call 'Dispatch(app)' or 'dispatch.init_app(app)'?"
        )
    host = None
    if by == "subdomain":
        if not state.settings.domains:
            # A subdomain factory needs a domain, so there is none either.
            raise DispatchConfigError(
                f"tenant_client({name!r}, by='subdomain') needs DISPATCH_DOMAIN"
                " (or SERVER_NAME) to be set, e.g."
                " app.config['DISPATCH_DOMAIN'] = 'example.com', and a subdomain"
                " factory; for a path tenant, use by='path'."
            )
        # With SERVER_NAME's port, as app.test_client() and tenant_url() have it.
        port = _port(app.config.get("SERVER_NAME") or "")
        host = f"{name}.{state.settings.main_domain}{port}"
    base = app.test_client_class
    client_class = TenantClient if base is None or base is FlaskClient else _subclass(base)
    return client_class(app, app.response_class, use_cookies=True, tenant=name, by=by, host=host)


def _port(server_name: str) -> str:
    """``":5000"`` for ``"example.com:5000"``, else ``""``."""
    try:
        port = urlsplit(f"//{server_name}").port
    except ValueError:  # not a port: dispatch's own checks said it is no domain
        return ""
    return "" if port is None else f":{port}"


def _subclass(base: type[FlaskClient]) -> type[TenantClient]:
    """A :class:`TenantClient` that is also the app's own
    ``test_client_class``, so its helpers are there too."""
    return t.cast(type[TenantClient], type(f"Tenant{base.__name__}", (TenantClient, base), {}))
