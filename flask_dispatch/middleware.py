"""The WSGI layer: parse, decide, look up, call.

A :class:`DispatchMiddleware` replaces the host app's ``wsgi_app``. For each
request it asks the :class:`~flask_dispatch.routing.Router` where the request
goes, looks a tenant up in the registry, and hands the request on in one
place. Everything dispatch answers itself (400, 404, 503, a factory's
exception) goes to the host app, which raises it in its own request
handling (see :mod:`flask_dispatch.extension`), so it gets the site's error
pages, logging and debugger.
"""

from __future__ import annotations

import typing as t

from werkzeug.exceptions import BadRequest, HTTPException, NotFound, ServiceUnavailable

from .config import DispatchConfigError
from .errors import TenantUnavailable, fresh_copy
from .hosts import server_host
from .routing import Kind

if t.TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

    from .extension import DispatchState
    from .registry import TenantSlot
    from .routing import Router, Target

#: Environ key set on requests handed to a tenant app: the tenant's name.
TENANT_KEY = "flask_dispatch.tenant"
#: Environ key carrying the error dispatch wants the host app to raise.
ERROR_KEY = "flask_dispatch.error"
#: Environ key keeping a rejected ``Host`` header, replaced so that the host
#: app can still build URLs on its error page.
ORIGINAL_HOST_KEY = "flask_dispatch.original_host"
#: Environ key set on requests handed to a tenant: the host app's
#: :class:`~flask_dispatch.extension.DispatchState`, for links from its pages.
STATE_KEY = "flask_dispatch.state"
#: Environ key set on requests handed to a path tenant: the ``SCRIPT_NAME``
#: of the host app, before the tenant's ``/acme``.
HOST_SCRIPT_NAME_KEY = "flask_dispatch.host_script_name"

# Plain module names: on Python 3.11, reading an Enum member from its class
# goes through a descriptor, on every request.
_PATH, _HOST_APP, _MOUNT, _DOMAIN = Kind.PATH, Kind.HOST_APP, Kind.MOUNT, Kind.DOMAIN


class DispatchMiddleware:
    """Route requests to tenant apps, mounts or the host app; installed by
    :meth:`.Dispatch.init_app`.

    :param wsgi_app: the host app's ``wsgi_app`` it wraps.
    :param state: the host app's dispatch state.
    """

    def __init__(self, wsgi_app: WSGIApplication, state: DispatchState) -> None:
        self.wsgi_app = wsgi_app
        self.state = state
        self.registry = state.registry
        # An idle timeout must not count a request under way as idleness.
        self.count_use = state.registry.idle_timeout is not None
        #: Built at the first request (see :meth:`.DispatchState.build_router`).
        self.router: Router | None = None

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        host, path = environ.get("HTTP_HOST"), environ.get("PATH_INFO", "")
        host = server_host(environ) if host is None else host
        try:
            router = self.router or self.state.build_router()
            target = router.route(host, path)
            if target.kind is _DOMAIN:
                target = self._custom_domain(target, router, path)
        except Exception as e:  # a misconfiguration, or the resolver's: the host app's
            # A misconfiguration is found before the host is checked: one the
            # router would reject is swapped, as for a 400.
            bad_host = isinstance(e, DispatchConfigError) and self.state.rejects_host(host)
            return self.fail(environ, start_response, e, bad_host=bad_host)
        slot = target.slot
        if slot is not None:  # a tenant
            try:
                app = self.registry.fetch(slot)
            except Exception as e:
                return self.fail(environ, start_response, self._as_http_error(e))
            if app is None or isinstance(app, HTTPException):
                return self._no_tenant(target, app, environ, start_response)
            environ[TENANT_KEY] = target.name
            environ[STATE_KEY] = self.state
        elif target.kind is _MOUNT:
            app = target.handler
        else:
            return self._not_for_a_tenant(target, environ, start_response)
        # The one place a request is handed to a tenant or a mount.
        cut = target.cut
        if cut:
            # SCRIPT_NAME may be "/" or "/pre/": "//acme" makes links protocol-relative.
            script_name = environ.get("SCRIPT_NAME", "").rstrip("/")
            if slot is not None:  # a path tenant
                environ[HOST_SCRIPT_NAME_KEY] = script_name
            environ["SCRIPT_NAME"] = script_name + path[:cut]
            environ["PATH_INFO"] = path[cut:]
        if slot is None or not self.count_use:
            response: Iterable[bytes] = app(environ, start_response)
            return response
        return self._counted(slot, app, environ, start_response)

    def _counted(
        self,
        slot: TenantSlot,
        app: WSGIApplication,
        environ: WSGIEnvironment,
        start_response: StartResponse,
    ) -> Iterable[bytes]:
        """Call a tenant app, its request a use of it until its response is
        closed."""
        done = self.registry.in_use(slot, app)
        try:
            response: Iterable[bytes] = app(environ, start_response)
        except BaseException:
            done()
            raise
        return until_closed(response, done, environ)

    def _not_for_a_tenant(
        self, target: Target, environ: WSGIEnvironment, start_response: StartResponse
    ) -> Iterable[bytes]:
        """The host app's side, a bad host, or a name no tenant can have."""
        if target.kind is _HOST_APP:
            script_name, path = environ.get("SCRIPT_NAME", ""), environ.get("PATH_INFO", "")
            if path[:1] not in ("/", ""):
                # Werkzeug reads PATH_INFO "acme/x" as "/acme/x": gunicorn given
                # SCRIPT_NAME "/pre/" passes "/pre/" and "acme/x" for /pre/acme/x,
                # and Werkzeug's server "" and "acme/x" for "GET acme/x".
                if script_name[-1:] == "/":
                    environ["SCRIPT_NAME"] = script_name[:-1]
                environ["PATH_INFO"] = "/" + path
                return self(environ, start_response)
            return self.wsgi_app(environ, start_response)
        bad_host = target.kind is Kind.BAD_HOST
        error = BadRequest(target.reason) if bad_host else NotFound()
        return self.fail(environ, start_response, error, bad_host=bad_host)

    def _custom_domain(self, target: Target, router: Router, path: str) -> Target:
        """The tenant whose custom domain the host is, else the host app's
        side by path."""
        domains = self.state.domains
        name = None if domains is None else domains.name_for(target.name)
        return router.route_path(path) if name is None else router.tenant_target(name)

    def _no_tenant(
        self,
        target: Target,
        answer: HTTPException | None,
        environ: WSGIEnvironment,
        start_response: StartResponse,
    ) -> Iterable[bytes]:
        """The factory said there is no such tenant: its own HTTP error, the
        host app for a path (it may know the URL), else a 404."""
        if answer is not None:
            return self.fail(environ, start_response, fresh_copy(answer))
        if target.kind is _PATH:
            return self.wsgi_app(environ, start_response)
        return self.fail(environ, start_response, NotFound())

    def _as_http_error(self, error: Exception) -> Exception:
        if isinstance(error, TenantUnavailable):
            retry_after = max(1, round(self.state.settings.create_timeout))
            return ServiceUnavailable(str(error), retry_after=retry_after)
        return error

    def fail(
        self,
        environ: WSGIEnvironment,
        start_response: StartResponse,
        error: BaseException,
        *,
        bad_host: bool = False,
    ) -> Iterable[bytes]:
        """Let the host app raise ``error`` in its own request handling. A
        rejected host is swapped for one the host app can build URLs with."""
        environ[ERROR_KEY] = error
        if bad_host:
            environ[ORIGINAL_HOST_KEY] = environ.get("HTTP_HOST")
            environ["HTTP_HOST"] = self.state.fallback_host
        return self.wsgi_app(environ, start_response)


def until_closed(
    response: Iterable[bytes], done: t.Callable[[], None], environ: WSGIEnvironment
) -> Iterable[bytes]:
    """``response``, calling ``done`` once the server has closed it. The
    app's part is over once it returned a list (which a server may measure
    with ``len``) or a file the server sends by itself (``wsgi.file_wrapper``,
    which must reach it unwrapped to be sent that way): ``done`` at once."""
    file_wrapper = environ.get("wsgi.file_wrapper")
    if isinstance(response, (list, tuple)) or (
        isinstance(file_wrapper, type) and isinstance(response, file_wrapper)
    ):
        done()
        return response
    return UntilClosed(response, done)


class UntilClosed:
    """A response that calls ``done`` once: when the server closes it, or
    when it is collected unclosed (a test client's response, say). The
    server iterates the tenant's own iterator."""

    __slots__ = ("_done", "response")

    def __init__(self, response: Iterable[bytes], done: t.Callable[[], None]) -> None:
        self.response = response
        self._done = [done]  # popped once, by whichever thread gets there first

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.response)

    def close(self) -> None:
        try:
            close = getattr(self.response, "close", None)
            if close is not None:
                close()
        finally:
            self._release()

    def __del__(self) -> None:
        self._release()

    def _release(self) -> None:
        try:
            done = self._done.pop()
        except IndexError:
            return
        done()
