"""The WSGI layer: parse the request, look the tenant up, call it.

The bound ``__call__`` of a :class:`DispatchMiddleware` replaces the host
app's ``wsgi_app``. For each request it classifies the Host header
(memoised), then hands the request to a subdomain tenant, a static mount, a
path tenant or the host app, in that order. Everything dispatch itself
answers (400, 404, 503, a factory's exception) is raised inside the host
app's own request handling, so it gets the site's error pages, logging and
debugger.
"""

from __future__ import annotations

import typing as t

from flask import request
from werkzeug.exceptions import BadRequest, HTTPException, NotFound, ServiceUnavailable
from werkzeug.sansio.utils import host_is_trusted

from .errors import TenantCreationTimeout
from .hosts import BAD_HOST, HOST_APP, NO_TENANT, HostRoute, classify_host
from .paths import find_mount, rule_first_segments
from .registry import _Entry

if t.TYPE_CHECKING:
    from collections.abc import Iterable

    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment
    from flask import Flask

    from .extension import Dispatch, DispatchState
    from .registry import Factory

#: Environ key set on requests handed to a tenant app: the tenant's name.
TENANT_KEY = "flask_dispatch.tenant"
#: Environ key carrying the error dispatch wants the host app to raise.
ERROR_KEY = "flask_dispatch.error"

_MEMO_SIZE = 1024
# A 63-character DNS label and then some.
_MAX_MEMO_SEGMENT = 64
# Paths to held tenants are memoised up to this length, this many at a time:
# at most about 200 KB per host app.
_MAX_MEMO_PATH = 128
_PATH_MEMO_SIZE = 512

#: Where a path goes: ``(name, "/" + name, rest of the path)`` for a tenant,
#: ``_HOST_SIDE`` for the host app.
PathTarget = tuple[str, str, str]
_HOST_SIDE: PathTarget = ("", "", "")
#: A memoised path: ``(entry, "/" + name, rest of the path)``.
HeldPath = tuple[_Entry, str, str]


class DispatchMiddleware:
    """Route requests to tenant apps, mounts or the host app.

    Installed by :meth:`.Dispatch.init_app`, which sets the host app's
    ``wsgi_app`` to this object's bound ``__call__`` and keeps the object at
    ``app.extensions["dispatch"].middleware``; not meant to be built by hand.

    :param host_app: the Flask app whose ``wsgi_app`` this wraps.
    :param wsgi_app: the ``wsgi_app`` it replaces.
    :param extension: where the factories and mounts are registered.
    :param state: the host app's dispatch state.

    .. versionadded:: 0.1
    """

    def __init__(
        self,
        host_app: Flask,
        wsgi_app: WSGIApplication,
        extension: Dispatch,
        state: DispatchState,
    ) -> None:
        self.wsgi_app = wsgi_app
        self._config = host_app.config
        self._extension = extension
        self._url_map = host_app.url_map
        self._registry = state.registry
        # Stamps a use on a held entry: the whole of the hit inlined below.
        self._next_use = state.registry.next_use
        self._settings = settings = state.settings
        self._reserved = settings.reserved
        self._name_pattern = settings.name_pattern
        # Raw Host header -> route, and first path segment -> "/<segment>"
        # if it may be a tenant, else "". Both repeat, so both are memoised
        # in plain dicts (the cheapest memo in CPython) that are emptied when
        # full: a flood of distinct values costs a bounded amount of memory.
        # The route of a tenant the subdomain factory holds lock-free is its
        # registry entry, so a hit needs no lookup by name (see _route).
        self._routes: dict[str, HostRoute | _Entry] = {}
        self._segments: dict[str, str] = {}
        # And paths of such tenants -> their entry and the split path: the
        # split and the slice are the dearest steps of a path request.
        # (Emptied when full, too.)
        self._paths: dict[str, HeldPath] = {}
        self._own_segments: frozenset[str] | None = None

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        # The hot path: every request passes here, so it is written flat and
        # short (on CPython each step costs tens of nanoseconds). Only good
        # hosts and paths are memoised, so a memo hit needs no more checks.
        try:  # a subscript is cheaper than .get, and HTTP_HOST is nearly always there
            raw_host = environ["HTTP_HOST"]
        except KeyError:
            raw_host = environ.get("SERVER_NAME", "")
        try:  # hosts repeat: a miss is rare
            route = self._routes[raw_host]
        except KeyError:
            route = self._route(raw_host)
            if route is BAD_HOST:
                return self._fail(environ, start_response, BadRequest("Malformed Host header."))
        trusted = self._config.get("TRUSTED_HOSTS")  # per request, as Flask does
        if trusted is not None and not host_is_trusted(raw_host, trusted):
            return self._fail(
                environ, start_response, BadRequest(f"Host {raw_host!r} is not trusted.")
            )

        if route is HOST_APP:
            try:
                path: str = environ["PATH_INFO"]
            except KeyError:
                path = ""
            # Only paths of tenants the path factory holds lock-free, with no
            # mount in front, are memoised: a hit needs no more checks.
            held = self._paths.get(path)
            if held is not None and not self._url_map._remap:
                entry, prefix, rest = held
                app = entry.app
                if app is not None:  # None: evicted since
                    next_use = self._next_use  # a bound method: no LOAD_METHOD
                    entry.used = next_use()
                    try:
                        environ["SCRIPT_NAME"] += prefix
                    except KeyError:
                        environ["SCRIPT_NAME"] = prefix
                    environ["PATH_INFO"] = rest
                    environ[TENANT_KEY] = entry.name
                    if entry.via_wsgi_app:  # a Flask app: skip its __call__
                        return app.wsgi_app(environ, start_response)  # type: ignore[attr-defined,no-any-return]
                    return app(environ, start_response)
                # Not del: another thread may have got here first.
                self._paths.pop(path, None)
            return self._host_side(environ, start_response, path)

        if type(route) is _Entry:  # held: the hit, inline
            app = route.app
            if app is not None:  # None: evicted since
                next_use = self._next_use
                route.used = next_use()
                environ[TENANT_KEY] = route.name
                if route.via_wsgi_app:
                    return app.wsgi_app(environ, start_response)  # type: ignore[attr-defined,no-any-return]
                return app(environ, start_response)
            name = route.name
        elif route is NO_TENANT:
            if self._extension.subdomain_factory is None:
                return self._host_side(environ, start_response, environ.get("PATH_INFO", ""))
            return self._fail(environ, start_response, NotFound())
        else:
            name = route  # type: ignore[assignment]
        # A tenant name under a domain.
        factory = self._extension.subdomain_factory
        if factory is None:
            return self._host_side(environ, start_response, environ.get("PATH_INFO", ""))
        response = self._serve_tenant(environ, start_response, name, factory, None, "")
        if factory is self._registry.lock_free_factory:
            # Classify it again next time: the tenant is likely held now (and
            # the first request may have just made this factory the
            # lock-free one), so its entry gets memoised.
            self._routes.pop(raw_host, None)
        return response

    def _host_side(
        self, environ: WSGIEnvironment, start_response: StartResponse, path: str
    ) -> Iterable[bytes]:
        """Serve a host-side request the inline hit may not: a static mount,
        a path tenant whose factory is not the lock-free one, or the host
        app."""
        extension = self._extension
        mounts = extension.mounts
        if mounts:
            mount = find_mount(path, mounts)
            if mount is not None:
                environ["SCRIPT_NAME"] = environ.get("SCRIPT_NAME", "") + mount
                environ["PATH_INFO"] = path[len(mount) :]
                return mounts[mount](environ, start_response)
        factory = extension.path_factory
        if factory is not None:
            target = self._path_target(path, factory)
            if target is not _HOST_SIDE:
                tenant, prefix, rest = target
                if isinstance(tenant, _Entry):  # held, and now memoised
                    app = tenant.app
                    if app is not None:
                        tenant.used = self._next_use()
                        return self._call_tenant(
                            environ, start_response, app, tenant.name, prefix, rest
                        )
                    tenant = tenant.name
                return self._serve_tenant(environ, start_response, tenant, factory, prefix, rest)
        return self.wsgi_app(environ, start_response)

    def _serve_tenant(
        self,
        environ: WSGIEnvironment,
        start_response: StartResponse,
        name: str,
        factory: Factory,
        prefix: str | None,
        rest: str,
    ) -> Iterable[bytes]:
        """Serve the request with tenant ``name`` when the inlined hit did
        not apply: a hit under the lock, a creation, a miss or an error.
        ``prefix`` is ``"/<name>"`` and ``rest`` the path after it for path
        dispatch; ``prefix`` is ``None`` for a subdomain."""
        try:
            app = self._registry.get(name, factory)  # a hit first, then a creation
        except TenantCreationTimeout as e:
            error = ServiceUnavailable(str(e), retry_after=1)
            return self._fail(environ, start_response, error)
        except Exception as e:
            return self._fail(environ, start_response, e)
        if app is None:
            if prefix is not None:
                # No such tenant by path: the host app may still know the URL.
                return self.wsgi_app(environ, start_response)
            return self._fail(environ, start_response, NotFound())
        if isinstance(app, HTTPException):
            return self._fail(environ, start_response, app)
        return self._call_tenant(environ, start_response, app, name, prefix, rest)

    @staticmethod
    def _call_tenant(
        environ: WSGIEnvironment,
        start_response: StartResponse,
        app: WSGIApplication,
        name: str,
        prefix: str | None,
        rest: str,
    ) -> Iterable[bytes]:
        """Hand the request to tenant ``name``'s ``app`` (``prefix`` and
        ``rest`` as for :meth:`_serve_tenant`)."""
        if prefix is not None:
            environ["SCRIPT_NAME"] = environ.get("SCRIPT_NAME", "") + prefix
            environ["PATH_INFO"] = rest
        environ[TENANT_KEY] = name
        return app(environ, start_response)

    def _route(self, raw_host: str) -> HostRoute | _Entry:
        """Classify a Host header not seen recently, and remember it if it
        is well formed and names no invalid tenant.

        A tenant's route is remembered as its registry entry if the
        subdomain factory holds it lock-free, so that hits look nothing up;
        while it is not held yet, it is not remembered at all. (With a
        factory that is not the lock-free one, the name is remembered.)"""
        settings = self._settings
        route: HostRoute | _Entry
        route = classify_host(raw_host, settings.domains, settings.reserved, settings.name_pattern)
        # Bad input costs nothing: malformed hosts and names the pattern
        # rejects are parsed again each time rather than remembered.
        if route is BAD_HOST or route is NO_TENANT:
            return route
        if isinstance(route, str):
            factory = self._extension.subdomain_factory
            if factory is not None and factory is self._registry.lock_free_factory:
                entry = self._registry._held(route)
                if entry is None:
                    return route
                route = entry
        if len(self._routes) >= _MEMO_SIZE:
            self._routes.clear()
        self._routes[raw_host] = route
        return route

    def _path_target(self, path: str, factory: Factory) -> PathTarget | HeldPath:
        """``(name, "/" + name, rest)`` if the first segment of ``path`` may
        name a tenant, else ``_HOST_SIDE``. If ``factory`` holds that tenant
        lock-free, the path is remembered and the tenant's entry returned in
        place of its name."""
        if self._url_map._remap or self._own_segments is None:
            self._read_url_map()
        target = _HOST_SIDE
        # "/acme/x" -> ["", "acme", "x"]; split is the cheapest cut here.
        parts = path.split("/", 2)
        if len(parts) > 1 and not parts[0]:
            name = parts[1]
            prefix = self._segments.get(name)
            if prefix is None:
                prefix = self._tenant_prefix(name)
            if prefix:
                rest = path[len(prefix) :]
                target = (name, prefix, rest)
                # Only paths of tenants already held are remembered: paths
                # of unknown names and the host app's own keep nothing.
                if (
                    len(path) <= _MAX_MEMO_PATH
                    and factory is self._registry.lock_free_factory
                    and (entry := self._registry._held(name)) is not None
                ):
                    paths = self._paths
                    if len(paths) >= _PATH_MEMO_SIZE:
                        paths.clear()
                    paths[path] = held = (entry, prefix, rest)
                    return held
        return target

    def forget_tenants(self) -> None:
        """Forget the memoised tenants: called when a mount or a factory is
        registered, since either may change where a memoised host or path
        goes."""
        self._paths.clear()
        self._routes.clear()

    def _read_url_map(self) -> None:
        """Take the host app's own first segments from its URL map, and drop
        the path memos made before."""
        # Werkzeug sets _remap when a rule is added; update() sorts the rules
        # (as the first match would) and clears it, so the hot path's check
        # of _remap stays false from then on.
        self._url_map.update()
        self._own_segments = rule_first_segments(rule.rule for rule in self._url_map.iter_rules())
        self._segments.clear()
        self._paths.clear()

    def _tenant_prefix(self, name: str) -> str:
        """``"/" + name`` if a first path segment may name a tenant, else
        ``""``: it must match the pattern, not be reserved and not be the
        first segment of a host app URL rule. Memoised."""
        ok = (
            bool(name)
            and self._own_segments is not None
            and name not in self._own_segments
            and name not in self._reserved
            and self._name_pattern.fullmatch(name) is not None
        )
        prefix = "/" + name if ok else ""
        # Only segments that could be a name are remembered: a flood of long
        # junk segments keeps nothing.
        if len(name) <= _MAX_MEMO_SEGMENT:
            if len(self._segments) >= _MEMO_SIZE:
                self._segments.clear()
            self._segments[name] = prefix
        return prefix

    def _fail(
        self,
        environ: WSGIEnvironment,
        start_response: StartResponse,
        error: BaseException,
    ) -> Iterable[bytes]:
        """Let the host app raise ``error`` in its own request handling."""
        environ[ERROR_KEY] = error
        return self.wsgi_app(environ, start_response)


def raise_dispatch_error(endpoint: str | None, values: dict[str, t.Any] | None) -> None:
    """URL value preprocessor the extension puts first on the host app: raise
    the error dispatch left in the environ, so Flask's error handlers,
    logging and ``PROPAGATE_EXCEPTIONS`` deal with it like any other.

    :param endpoint: unused.
    :param values: unused.
    """
    error = request.environ.get(ERROR_KEY)
    if error is not None:
        raise error
