"""The WSGI layer: parse the request, look the tenant up, call it.

:class:`DispatchMiddleware` replaces the host app's ``wsgi_app``. For each
request it classifies the Host header (memoised), then hands the request to
a subdomain tenant, a static mount, a path tenant or the host app, in that
order. Everything dispatch itself answers (400, 404, 503, a factory's
exception) is raised inside the host app's own request handling, so it gets
the site's error pages, logging and debugger.
"""

from __future__ import annotations

import functools
import typing as t

from flask import request
from werkzeug.exceptions import BadRequest, HTTPException, NotFound, ServiceUnavailable
from werkzeug.sansio.utils import host_is_trusted

from .errors import TenantCreationTimeout
from .hosts import BAD_HOST, NO_TENANT, classify_host
from .paths import find_mount, rule_first_segments, split_first_segment

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

_HOST_CACHE_SIZE = 1024


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
        self._host_app = host_app
        self._config = host_app.config
        self._extension = extension
        self._registry = state.registry
        settings = state.settings
        self._reserved = settings.reserved
        self._name_pattern = settings.name_pattern
        # Hosts repeat, so their parse is memoised; a flood of distinct hosts
        # only cycles this bounded map.
        self._classify = functools.lru_cache(maxsize=_HOST_CACHE_SIZE)(
            functools.partial(
                classify_host,
                domains=settings.domains,
                reserved=settings.reserved,
                name_pattern=settings.name_pattern,
            )
        )
        self._rules_seen = -1
        self._own_segments: frozenset[str] = frozenset()

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        raw_host = environ.get("HTTP_HOST")
        if raw_host is None:
            raw_host = environ.get("SERVER_NAME", "")
        route = self._classify(raw_host)
        if route is BAD_HOST:
            return self._fail(environ, start_response, BadRequest("Malformed Host header."))
        trusted = self._config.get("TRUSTED_HOSTS")
        if trusted is not None and not host_is_trusted(raw_host, trusted):
            return self._fail(
                environ, start_response, BadRequest(f"Host {raw_host!r} is not trusted.")
            )

        factory = self._extension.subdomain_factory
        if factory is not None:
            if type(route) is str:
                return self._call_tenant(environ, start_response, route, factory, None)
            if route is NO_TENANT:
                return self._fail(environ, start_response, NotFound())

        path = environ.get("PATH_INFO", "")
        mounts = self._extension.mounts
        if mounts:
            prefix = find_mount(path, mounts)
            if prefix is not None:
                environ["SCRIPT_NAME"] = environ.get("SCRIPT_NAME", "") + prefix
                environ["PATH_INFO"] = path[len(prefix) :]
                return mounts[prefix](environ, start_response)

        factory = self._extension.path_factory
        if factory is not None:
            name, rest = split_first_segment(path)
            if name and self._is_tenant_segment(name):
                return self._call_tenant(environ, start_response, name, factory, rest)
        return self.wsgi_app(environ, start_response)

    def _call_tenant(
        self,
        environ: WSGIEnvironment,
        start_response: StartResponse,
        name: str,
        factory: Factory,
        rest: str | None,
    ) -> Iterable[bytes]:
        """Serve the request with tenant ``name``. ``rest`` is the path after
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
            environ["SCRIPT_NAME"] = f"{environ.get('SCRIPT_NAME', '')}/{name}"
            environ["PATH_INFO"] = rest
        environ[TENANT_KEY] = name
        return app(environ, start_response)

    def _is_tenant_segment(self, name: str) -> bool:
        """Whether a first path segment may name a tenant: it matches the
        pattern, is not reserved and is not claimed by a host app URL rule."""
        url_map = self._host_app.url_map
        # Rules are only ever added, so a change in their count means new ones.
        count = len(url_map._rules)
        if count != self._rules_seen:
            self._own_segments = rule_first_segments(r.rule for r in url_map.iter_rules())
            self._rules_seen = count
        return (
            name not in self._own_segments
            and name not in self._reserved
            and self._name_pattern.fullmatch(name) is not None
        )

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
