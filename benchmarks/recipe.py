"""The two dispatchers from Flask's "Application Dispatching" page, as the
baseline: the same algorithm (one global lock around lookup *and* creation,
``NotFound`` cached for unknown subdomains), with the Werkzeug 2.3-removed
``peek_path_info``/``pop_path_info`` rewritten so it runs on Werkzeug 3."""

from __future__ import annotations

import typing as t
from threading import Lock

if t.TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment


class SubdomainDispatcher:
    def __init__(self, domain: str, create_app: Callable[[str], WSGIApplication]) -> None:
        self.domain = domain
        self.create_app = create_app
        self.lock = Lock()
        self.instances: dict[str, WSGIApplication] = {}

    def get_application(self, host: str) -> WSGIApplication:
        host = host.split(":")[0]
        assert host.endswith(self.domain), "Configuration error"
        subdomain = host[: -len(self.domain)].rstrip(".")
        with self.lock:
            app = self.instances.get(subdomain)
            if app is None:
                app = self.create_app(subdomain)
                self.instances[subdomain] = app
            return app

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        app = self.get_application(environ["HTTP_HOST"])
        return app(environ, start_response)


def _peek_path_info(environ: WSGIEnvironment) -> str | None:
    segments = environ.get("PATH_INFO", "").lstrip("/").split("/", 1)
    return segments[0] if segments and segments[0] else None


def _pop_path_info(environ: WSGIEnvironment) -> str | None:
    path: str | None = environ.get("PATH_INFO")
    if not path:
        return None
    script_name: str = environ.get("SCRIPT_NAME", "")
    old_path = path
    path = path.lstrip("/")
    if path != old_path:
        script_name += "/" * (len(old_path) - len(path))
    if "/" not in path:
        environ["PATH_INFO"] = ""
        environ["SCRIPT_NAME"] = script_name + path
        return path
    segment, path = path.split("/", 1)
    environ["PATH_INFO"] = f"/{path}"
    environ["SCRIPT_NAME"] = script_name + segment
    return segment


class PathDispatcher:
    def __init__(
        self,
        default_app: WSGIApplication,
        create_app: Callable[[str | None], WSGIApplication | None],
    ) -> None:
        self.default_app = default_app
        self.create_app = create_app
        self.lock = Lock()
        self.instances: dict[str | None, WSGIApplication] = {}

    def get_application(self, prefix: str | None) -> WSGIApplication | None:
        with self.lock:
            app = self.instances.get(prefix)
            if app is None:
                app = self.create_app(prefix)
                if app is not None:
                    self.instances[prefix] = app
            return app

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        app = self.get_application(_peek_path_info(environ))
        if app is not None:
            _pop_path_info(environ)
        else:
            app = self.default_app
        return app(environ, start_response)
