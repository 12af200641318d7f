"""What the benchmark sections share: the tenant app, environs, the host app
with dispatch, and the report's tables."""

from __future__ import annotations

import os
import platform
import time
import typing as t
from importlib.metadata import version

from flask import Flask
from werkzeug.test import EnvironBuilder

from flask_dispatch import Dispatch

if t.TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Sequence

    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

#: Parent domain of the subdomain tenants; path tenants and mounts are on it.
DOMAIN = "example.com"
#: Tenants held by every dispatcher in the hot path and eviction sections.
HELD = 10_000
#: The prefix of the static mount (flask_dispatch and werkzeug alike).
MOUNT = "/backend"

BODY = [b"ok"]


def leaf(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    """The cheapest WSGI app, and every tenant: what a request through a
    dispatcher costs more than a call of this is the dispatcher's."""
    start_response("200 OK", [])
    return BODY


def _ignore(status: str, headers: list[tuple[str, str]], exc_info: t.Any = None) -> t.Any:
    return None


#: A start_response that does nothing.
no_start_response = t.cast("StartResponse", _ignore)

# What a WSGI server gives for GET http://example.com/notes/17, built by
# Werkzeug so it holds the keys a server sets (17), not a hand-picked few.
_BASE = EnvironBuilder(path="/notes/17", base_url=f"http://{DOMAIN}/").get_environ()


def environ(host: str, path: str) -> WSGIEnvironment:
    """The environ of ``GET http://<host><path>``."""
    return {**_BASE, "HTTP_HOST": host, "PATH_INFO": path, "REQUEST_URI": path, "RAW_URI": path}


def subdomain_environ(name: str) -> WSGIEnvironment:
    return environ(f"{name}.{DOMAIN}", "/notes/17")


def path_environ(name: str) -> WSGIEnvironment:
    return environ(DOMAIN, f"/{name}/notes/17")


def mount_environ(name: str) -> WSGIEnvironment:
    # The tenant's name in the path too, so each request mix means something
    # for mounts: a backend mounted for all tenants whose URLs name one.
    return environ(DOMAIN, f"{MOUNT}/{name}/notes/17")


def counting_factory() -> tuple[Callable[[str], WSGIApplication], list[str]]:
    """A tenant factory that returns :func:`leaf`, and the list of names it
    was called with: a section tells a hit from a creation by it, without
    looking inside dispatch."""
    created: list[str] = []

    def factory(name: str) -> WSGIApplication:
        created.append(name)
        return leaf

    return factory, created


def dispatch_app(max_instances: int = HELD) -> tuple[Flask, Dispatch, list[str], list[str]]:
    """A host app with dispatch, and a subdomain factory and a path factory
    (two different functions, as a site with both has) registered.

    :return: the app, the extension, and the names the subdomain and the
        path factory were called with.
    """
    app = Flask("bench_host")
    app.config.update(DISPATCH_DOMAIN=DOMAIN, DISPATCH_MAX_INSTANCES=max_instances)
    dispatch = Dispatch(app)
    subdomain, subdomains_created = counting_factory()
    path, paths_created = counting_factory()
    dispatch.subdomain(subdomain)
    dispatch.path(path)
    return app, dispatch, subdomains_created, paths_created


def machine() -> str:
    """One line naming the machine, the interpreter and the libraries."""
    libraries = ", ".join(f"{name} {version(name)}" for name in ("flask", "werkzeug", "pyperf"))
    return (
        f"{platform.platform()} · {os.cpu_count()} cores · "
        f"{platform.python_implementation()} {platform.python_version()} · {libraries} · "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"
    )


def table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    cells = [[str(c) for c in row] for row in rows]
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]
    line = "  ".join("-" * w for w in widths)
    out = [line, "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)), line]
    out += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in cells]
    out.append(line)
    return "\n".join(out)
