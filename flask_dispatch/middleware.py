"""The WSGI layer: parse the request, look the tenant up, call it.

:class:`DispatchMiddleware` replaces the host app's ``wsgi_app``. For each
request it classifies the Host header (memoised), then hands the request to
a subdomain tenant, a static mount, a path tenant or the host app, in that
order. Everything dispatch itself answers (400, 404, 503, a factory's
exception) is raised inside the host app's own request handling, so it gets
the site's error pages, logging and debugger.
"""

from __future__ import annotations

import typing as t

from flask import request
from werkzeug.exceptions import BadRequest, HTTPException, NotFound, ServiceUnavailable
from werkzeug.sansio.utils import host_is_trusted

from .errors import TenantCreationTimeout
from .hosts import BAD_HOST, NO_TENANT, HostRoute, classify_host
from .paths import find_mount, rule_first_segments

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


class DispatchMiddleware:
    """Route requests to tenant apps, mounts or the host app.

    Installed by :meth:`.Dispatch.init_app`; not meant to be built by hand.

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
        self._hit = state.registry.hit
        self._settings = settings = state.settings
        self._reserved = settings.reserved
        self._name_pattern = settings.name_pattern
        # Raw Host header -> route, and first path segment -> "/<segment>"
        # if it may be a tenant, else "". Both repeat, so both are memoised
        # in plain dicts (the cheapest memo in CPython) that are emptied when
        # full: a flood of distinct values costs a bounded amount of memory.
        self._routes: dict[str, HostRoute] = {}
        self._segments: dict[str, str] = {}
        self._own_segments: frozenset[str] | None = None

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        # The hot path: every request passes here, so it is written flat.
        raw_host = environ.get("HTTP_HOST")
        if raw_host is None:
            raw_host = environ.get("SERVER_NAME", "")
        route = self._routes.get(raw_host)
        if route is None:
            route = self._route(raw_host)
        if route is BAD_HOST:
            return self._fail(environ, start_response, BadRequest("Malformed Host header."))
        trusted = self._config.get("TRUSTED_HOSTS")
        if trusted is not None and not host_is_trusted(raw_host, trusted):
            return self._fail(
                environ, start_response, BadRequest(f"Host {raw_host!r} is not trusted.")
            )

        extension = self._extension
        factory = extension.subdomain_factory
        if factory is not None:
            if route.__class__ is str:
                app = self._hit(route, factory)
                if app is None:
                    return self._call_tenant(environ, start_response, route, factory, None)
                environ[TENANT_KEY] = route
                return app(environ, start_response)
            if route is NO_TENANT:
                return self._fail(environ, start_response, NotFound())

        path: str = environ.get("PATH_INFO", "")
        mounts = extension.mounts
        if mounts:
            prefix = find_mount(path, mounts)
            if prefix is not None:
                environ["SCRIPT_NAME"] = environ.get("SCRIPT_NAME", "") + prefix
                environ["PATH_INFO"] = path[len(prefix) :]
                return mounts[prefix](environ, start_response)

        factory = extension.path_factory
        if factory is not None:
            # "/acme/x" -> ["", "acme", "x"]; split is the cheapest cut here.
            parts = path.split("/", 2)
            if len(parts) > 1 and not parts[0]:
                name = parts[1]
                # "/acme" if the segment may be a tenant, else "".
                prefix = self._segments.get(name)
                if prefix is None or self._url_map._remap:
                    prefix = self._tenant_prefix(name)
                if prefix:
                    rest = path[len(prefix) :]
                    app = self._hit(name, factory)
                    if app is None:
                        return self._call_tenant(environ, start_response, name, factory, rest)
                    script = environ.get("SCRIPT_NAME")
                    environ["SCRIPT_NAME"] = script + prefix if script else prefix
                    environ["PATH_INFO"] = rest
                    environ[TENANT_KEY] = name
                    return app(environ, start_response)
        return self.wsgi_app(environ, start_response)

    def _call_tenant(
        self,
        environ: WSGIEnvironment,
        start_response: StartResponse,
        name: str,
        factory: Factory,
        rest: str | None,
    ) -> Iterable[bytes]:
        """Serve the request with tenant ``name`` when it is not held yet:
        create it, or answer the miss or the error. ``rest`` is the path after
        the tenant's segment for path dispatch, ``None`` for a subdomain."""
        try:
            app = self._registry.get(name, factory)
        except TenantCreationTimeout as e:
            error = ServiceUnavailable(str(e), retry_after=1)
            return self._fail(environ, start_response, error)
        except Exception as e:
            return self._fail(environ, start_response, e)
        if app is None:
            if rest is not None:
                # No such tenant by path: the host app may still know the URL.
                return self.wsgi_app(environ, start_response)
            return self._fail(environ, start_response, NotFound())
        if isinstance(app, HTTPException):
            return self._fail(environ, start_response, app)
        if rest is not None:
            script = environ.get("SCRIPT_NAME", "")
            environ["SCRIPT_NAME"] = f"{script}/{name}"
            environ["PATH_INFO"] = rest
        environ[TENANT_KEY] = name
        return app(environ, start_response)

    def _route(self, raw_host: str) -> HostRoute:
        """Classify a Host header not seen recently, and remember it if it
        is well formed and names no invalid tenant."""
        settings = self._settings
        route = classify_host(raw_host, settings.domains, settings.reserved, settings.name_pattern)
        # Bad input costs nothing: malformed hosts and names the pattern
        # rejects are parsed again each time rather than remembered.
        if route is not BAD_HOST and route is not NO_TENANT:
            if len(self._routes) >= _MEMO_SIZE:
                self._routes.clear()
            self._routes[raw_host] = route
        return route

    def _tenant_prefix(self, name: str) -> str:
        """``"/" + name`` if a first path segment may name a tenant, else
        ``""``: it must match the pattern, not be reserved and not be the
        first segment of a host app URL rule. Memoised; the memo is rebuilt
        when the host app's URL map changes."""
        # Werkzeug sets _remap when a rule is added; update() sorts the rules
        # (as the first match would) and clears it, so the hot path's check
        # of _remap stays false from then on.
        if self._url_map._remap or self._own_segments is None:
            self._url_map.update()
            self._own_segments = rule_first_segments(
                rule.rule for rule in self._url_map.iter_rules()
            )
            self._segments = {}
        ok = (
            bool(name)
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
