"""The ``flask dispatch`` commands: where a URL goes, a tenant's routes, a
tenant's own commands, and evictions that reach every process.

:data:`dispatch_cli` is added to the host app's ``flask`` command by
:meth:`.Dispatch.init_app`. Its commands run in the host app's context and
use dispatch's public surface only: the router decides, the registry builds,
the eviction bus broadcasts. :doc:`/cli` shows them at work.
"""

from __future__ import annotations

import contextlib
import re
import time
import traceback
import types
import typing as t
from urllib.parse import quote, unquote, unquote_to_bytes

import click
from flask import Flask, current_app
from flask.cli import AppGroup, FlaskGroup, routes_command
from werkzeug.exceptions import HTTPException, MethodNotAllowed
from werkzeug.routing import RequestRedirect
from werkzeug.test import create_environ

from .config import DispatchConfigError
from .errors import CREATED_RECEIVER_NOTE
from .hosts import MalformedHost, parse_host
from .links import tenant_factory
from .paths import split_first_segment
from .routing import UNTRUSTED_HOST, Kind
from .tenant_apps import flask_app_in

if t.TYPE_CHECKING:
    from collections.abc import Iterator

    from _typeshed.wsgi import WSGIApplication, WSGIEnvironment

    from .extension import DispatchState
    from .links import By
    from .redis_bus import EvictionBus
    from .registry import Factory
    from .routing import Router, Target

#: The ``flask dispatch`` command group.
dispatch_cli = AppGroup(
    "dispatch", help="See where URLs go, and inspect, run and evict tenant apps."
)

_Details = list[tuple[str, str]]
#: A tenant built by a command: the app, or why not and the factory's exception.
_Built = tuple["WSGIApplication | None", str, "BaseException | None"]
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")
# "name:" before what is not a port: "mailto:...", or "user:pass@host".
_SCHEME_OR_USER = re.compile(r"([A-Za-z][A-Za-z0-9+-]*):([^/?#\\]*)")
#: Schemes whose URLs hold an "@" without being a user's (mailto:a@b).
_SCHEMES_WITH_AT = frozenset(
    {"about", "blob", "data", "file", "javascript", "mailto", "sip", "sips", "sms", "tel", "xmpp"}
)
_HTTP_SCHEME = re.compile(r"(https?):[/\\]*", re.IGNORECASE)
_C0_AND_SPACE = "".join(map(chr, range(0x21)))

_by_option = click.option(
    "--by",
    type=click.Choice(["subdomain", "path"]),
    help="The factory that builds the tenant. Default: the subdomain factory if"
    " one is registered, else the path factory.",
)


def _state() -> DispatchState:
    state = t.cast("DispatchState | None", current_app.extensions.get("dispatch"))
    if state is None:
        raise click.ClickException(
            f"flask_dispatch is not registered on the app {current_app.name!r}."
            " Did you forget to call 'init_app'?"
        )
    try:  # what is registered must make a router, as for a request
        state.current_router()
    except DispatchConfigError as e:
        raise click.ClickException(str(e)) from e
    return state


# -- flask dispatch check -------------------------------------------------------------


@dispatch_cli.command("check")
@click.argument("url")
@click.option("--build", is_flag=True, help="Call the tenant's factory and say what it gave.")
@click.option(
    "--method", "-X", default="GET", show_default=True, help="The method, to match routes."
)
def check_command(url: str, build: bool, method: str) -> None:
    """Say where URL goes and why; no factory is called unless --build is
    given. Exits with 1 for a rejected host, or an unbuilt tenant with --build."""
    state = _state()
    scheme, raw_host, path, query, idna = _split_url(url)
    script_name, path, outside = _split_application_root(path)
    environ = create_environ("/", f"{scheme}://localhost/", method=method.upper())
    environ.update(HTTP_HOST=raw_host, SCRIPT_NAME=script_name, PATH_INFO=path, QUERY_STRING=query)
    router = state.current_router()
    target = router.route(raw_host, path)
    details: _Details = [("Host", f"{raw_host!r} (IDNA)")] if idna else []
    details += [("APPLICATION_ROOT", outside)] if outside else []
    if target.kind is Kind.DOMAIN:
        target = _custom_domain(state, router, target, path, details)
    status = 0
    error: BaseException | None = None
    kind = target.kind
    if kind is Kind.BAD_HOST:
        summary, status = "bad host: 400 Bad Request", 1
        details.append(("why", _why_bad_host(raw_host, target)))
    elif kind is Kind.NO_TENANT:
        summary = "no tenant: 404 Not Found"
        details.append(("why", target.reason))
    elif kind is Kind.HOST_APP:
        summary = "host app"
        details += [("why", target.reason)] if target.reason else []
        segment = split_first_segment(path)[0]
        if segment and router.rules.path_factory is not None:
            problem = router.name_problem(segment, Kind.PATH)
            details += [("not a path tenant", problem)] if problem else []
        details.append(_match(current_app, environ))
    else:
        summary = f"{kind.value} {target.name!r}"
        status, error = _explain_served(state, target, environ, build, details)
    click.echo(summary)
    width = max((len(label) for label, _ in details), default=0)
    for label, value in details:
        click.echo(f"  {label + ':':<{width + 1}} {value}")
    _echo_traceback(error)
    click.get_current_context().exit(status)


def _explain_served(
    state: DispatchState, target: Target, environ: WSGIEnvironment, build: bool, details: _Details
) -> tuple[int, BaseException | None]:
    """Add what a tenant or a mount sees to ``details``, building the tenant
    if asked; the exit status, and the exception if its factory raised."""
    path, cut = environ["PATH_INFO"], target.cut
    child = {**environ, "SCRIPT_NAME": environ["SCRIPT_NAME"] + path[:cut], "PATH_INFO": path[cut:]}
    if target.kind is Kind.MOUNT:
        details.append(("app", _name_app(target.handler)))
    for key in ("SCRIPT_NAME", "PATH_INFO"):
        # As the app reads it: WSGI strings hold bytes as latin-1, apps decode UTF-8.
        details.append((key, repr(child[key].encode("latin-1").decode("utf-8", "replace"))))
    if target.kind is Kind.MOUNT:
        _match_inside(target.handler, child, details)
        return 0, None
    if not build:
        details.append(("factory", "not called (--build calls it)"))
        return 0, None
    started = time.monotonic()
    with _built(state, target.name, target.handler) as (app, why, error):
        _note_slow(state, time.monotonic() - started, details)
        if app is None:
            details.append(("not built", why))
            if target.kind is Kind.PATH and why == _NONE:
                details.append(("then", "the host app handles the URL unchanged"))
                details.append(_match(current_app, environ, "host app endpoint"))
            return 1, error
        details.append(("built", _name_app(app)))
        _match_inside(app, child, details)
    return 0, None


def _match_inside(app: WSGIApplication, environ: WSGIEnvironment, details: _Details) -> None:
    """Add the endpoint a request reaches, if ``app`` is a Flask app or has one inside."""
    flask_app = flask_app_in(app)
    if flask_app is not None:
        details.append(_match(flask_app, environ))


def _note_slow(state: DispatchState, seconds: float, details: _Details) -> None:
    """Say so when the build took longer than a request waits for one."""
    limit = state.settings.create_timeout
    if seconds > limit:
        details.append(
            (
                "slow",
                f"built in {seconds:.1f} s; a request waits {limit:g} s"
                " (DISPATCH_CREATE_TIMEOUT), then gets a 503 until it is built",
            )
        )


def _custom_domain(
    state: DispatchState, router: Router, target: Target, path: str, details: _Details
) -> Target:
    """Ask the ``@dispatch.domain`` resolver, as a request does: its
    tenant's target, else the host app's side by path. Exits with 1 if it
    raises."""
    resolver = t.cast("t.Callable[[str], object]", state.extension.domain_resolver)
    try:
        name = resolver(target.name)
    except Exception as e:  # a request would get the host app's 500
        click.echo(f"custom domain {target.name!r}: 500 Internal Server Error")
        click.echo(f"  why: the resolver raised {_describe(e)}")
        _echo_traceback(e)
        click.get_current_context().exit(1)
    if isinstance(name, str) and router.is_tenant_name(name, "subdomain"):
        details.append(("custom domain", f"of tenant {name!r}, says the resolver"))
        return router.tenant_target(name)
    said = "no tenant" if name is None else f"{name!r}, not a tenant name"
    details.append(("custom domain", f"the resolver says {said}"))
    return router.route_path(path)


def _split_url(url: str) -> tuple[str, str, str, str, bool]:
    """``(scheme, raw host, PATH_INFO, query, whether IDNA encoded the host)``
    of an ``http`` URL (the scheme may be left out), the host spelt as a
    browser would send it and the path decoded as a WSGI server would."""
    # As a browser reads a URL: spaces and controls around it and tabs and
    # newlines in it dropped; "http:" before any number of (back)slashes.
    url = "".join(c for c in url.strip(_C0_AND_SPACE) if c not in "\t\n\r")
    match = _HTTP_SCHEME.match(url)
    if match is None and _of_another_scheme(url):
        raise click.BadParameter(f"{url!r} is not an http:// or https:// URL.", param_hint="URL")
    scheme, rest = (match[1].lower(), url[match.end() :]) if match else ("http", url)
    # As a browser reads an http URL: a backslash before the query is a slash.
    cut = min((i for i in map(rest.find, "?#") if i != -1), default=len(rest))
    rest = rest[:cut].replace("\\", "/") + rest[cut:]
    end = min((i for i in map(rest.find, "/?#") if i != -1), default=len(rest))
    netloc, rest = rest[:end], rest[end:].partition("#")[0]
    path, _, query = rest.partition("?")
    host = netloc.rpartition("@")[2]  # without any user:password@
    if not host:
        raise click.BadParameter(f"{url!r} has no host.", param_hint="URL")
    host, idna = _port_as_sent(unquote(host), scheme), False  # "%2E" is a dot to a browser
    # As a browser sends it; one that IDNA cannot encode is rejected as malformed.
    with contextlib.suppress(UnicodeError):
        if not host.isascii():
            host, idna = host.encode("idna").decode("ascii"), True
    # A browser percent-encodes what a query may not hold as it is.
    # Bytes an argument could not decode come back as they were typed.
    query = "".join(c if "!" <= c <= "~" and c not in "\"'<>" else quote(_bytes(c)) for c in query)
    path = _without_dot_segments(path or "/")
    return scheme, host, unquote_to_bytes(_bytes(path)).decode("latin-1"), query, idna


def _of_another_scheme(url: str) -> bool:
    """Whether ``url`` (not ``http:``) is of another scheme, as a browser
    reads it: ``ftp://...``, ``mailto:...``, ``data:...``; not a host and
    port (``localhost:5000``), nor a user and password (``user:pw@host``)."""
    if _URL.match(url):
        return True
    match = _SCHEME_OR_USER.match(url)
    if match is None or re.fullmatch("[0-9]*", match[2]):  # no name, or a port
        return False
    return "@" not in match[2] or match[1].lower() in _SCHEMES_WITH_AT


def _bytes(text: str) -> bytes:
    """``text`` in UTF-8, with the bytes of an argument that was not UTF-8
    (``sys.argv`` keeps them as lone surrogates) as they were."""
    return text.encode("utf-8", "surrogateescape")


def _without_dot_segments(path: str) -> str:
    """``path`` as a browser sends it: a ``.`` segment dropped, a ``..`` one
    with the segment before it, also spelt with ``%2e`` (the WHATWG URL
    rules; curl drops the plain ones too)."""
    kept: list[str] = []
    segments = path.split("/")[1:]
    for i, segment in enumerate(segments, 1):
        dots = segment.lower().replace("%2e", ".")
        if dots not in (".", ".."):
            kept.append(segment)
            continue
        if dots == ".." and kept:
            kept.pop()
        if i == len(segments):  # "/a/b/.." is "/a/", a directory
            kept.append("")
    return "/" + "/".join(kept)


def _port_as_sent(host: str, scheme: str) -> str:
    """``host`` with its port as a browser sends it: none for an empty port
    or the scheme's default one, and no leading zeros."""
    name, colon, port = host.rpartition(":")
    if not colon or not name or not (port == "" or (port.isascii() and port.isdigit())):
        return host
    if name.startswith("[") and not name.endswith("]"):  # a colon of an IPv6 literal
        return host
    if port == "" or int(port) == {"http": 80, "https": 443}[scheme]:
        return name
    return f"{name}:{int(port)}"


def _split_application_root(path: str) -> tuple[str, str, str]:
    """``(SCRIPT_NAME, PATH_INFO, warning)`` of a URL path, as a server that
    serves the app at ``APPLICATION_ROOT`` passes them (the root, if the
    path is under it); the warning says when the path is outside it, as
    the app served at ``/`` would see it."""
    root = current_app.config["APPLICATION_ROOT"].rstrip("/")
    if not root:
        return "", path, ""
    if path == root or path.startswith(root + "/"):
        return root, path[len(root) :], ""
    return "", path, f"the path is outside {root!r}: read as if the app were served at '/'"


def _name_app(app: object) -> str:
    """Its repr, unless that shows only an address: a function by its import
    path, an object by its class's."""
    if isinstance(app, types.FunctionType):
        return f"{app.__module__}.{app.__qualname__}"
    if type(app).__repr__ is object.__repr__:
        return f"a {type(app).__module__}.{type(app).__qualname__}"
    return repr(app)


def _match(app: Flask, environ: WSGIEnvironment, label: str = "endpoint") -> tuple[str, str]:
    """Which endpoint of ``app`` a request reaches, by Flask's own adapter."""
    try:
        adapter = app.create_url_adapter(app.request_class(environ))
        assert adapter is not None  # always one for a request
        rule, _ = adapter.match(return_rule=True)
    except RequestRedirect as e:
        return label, f"none: {e.code} redirect to {e.new_url}"
    except MethodNotAllowed as e:
        allowed = ", ".join(sorted(e.valid_methods or ()))
        return label, f"none: 405 Method Not Allowed (allowed: {allowed})"
    except HTTPException as e:
        return label, f"none: {e.code} {e.name}"
    return label, f"{rule.endpoint!r} (rule {rule.rule!r})"


def _why_bad_host(raw_host: str, target: Target) -> str:
    """Why the router rejects ``raw_host``, in words: for a malformed host,
    those of :func:`~flask_dispatch.hosts.parse_host`, which decides it."""
    if target.reason == UNTRUSTED_HOST:
        return f"{raw_host!r} is not in TRUSTED_HOSTS"
    try:
        parse_host(raw_host)
    except MalformedHost as e:
        return str(e)
    return target.reason  # not reached: the router rejected it as malformed


# -- building a tenant ----------------------------------------------------------------

_NONE = "no such tenant: the factory returned None"


@contextlib.contextmanager
def _built(state: DispatchState, name: str, factory: Factory) -> Iterator[_Built]:
    """Build tenant ``name`` for the ``with`` block, as a request would but
    in this process only, then let it go (see
    :meth:`.DispatchState.build_once`): ``(app, "", None)``, or ``(None,
    why not, the factory's exception if it raised)``."""
    with contextlib.ExitStack() as stack:
        try:
            answer = stack.enter_context(state.build_once(name, factory))
        except Exception as e:
            notes = getattr(e, "__notes__", [])
            who = (
                "a tenant_created receiver"
                if any(str(note).startswith(CREATED_RECEIVER_NOTE) for note in notes)
                else "the factory"
            )
            yield None, f"{who} raised {_describe(e)}", e
            return
        if answer is None:
            yield None, _NONE, None
        elif isinstance(answer, HTTPException):
            yield None, f"no such tenant: the factory answered {answer.code} {answer.name}", None
        else:
            yield t.cast("WSGIApplication", answer), "", None


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__


def _sentence(text: str) -> str:
    """``text`` ended with a full stop, unless an error's message ended it."""
    return text if text.endswith((".", "!", "?")) else f"{text}."


def _echo_traceback(error: BaseException | None) -> None:
    if error is not None:
        click.echo("".join(traceback.format_exception(error)), err=True, nl=False)


def _factory(state: DispatchState, by: str | None) -> tuple[Kind, Factory]:
    """The kind of tenant and the factory ``--by`` picks (a click choice)."""
    extension = state.extension
    if by is None and extension.subdomain_factory is None and extension.path_factory is None:
        raise click.ClickException(
            "No tenant factory is registered (@dispatch.subdomain or @dispatch.path)."
        )
    try:
        by, factory = tenant_factory(state, t.cast("By | None", by))
    except ValueError as e:
        raise click.ClickException(str(e)) from e
    return (Kind.SUBDOMAIN if by == "subdomain" else Kind.PATH), factory


@contextlib.contextmanager
def _flask_tenant(state: DispatchState, name: str, by: str | None, needs: str) -> Iterator[Flask]:
    """Flask tenant ``name``, built for the ``with`` block, or fail with a
    message (exit status 1)."""
    kind, factory = _factory(state, by)
    problem = state.current_router().name_problem(name, kind)
    if problem is not None:
        raise click.ClickException(f"{name!r} cannot be a {kind.value}: {problem}.")
    with _built(state, name, factory) as (app, why, error):
        if app is None:
            _echo_traceback(error)
            raise click.ClickException(_sentence(f"Tenant {name!r}: {why}"))
        flask_app = flask_app_in(app)
        if flask_app is None:
            raise click.ClickException(
                f"Tenant {name!r} is {_name_app(app)}, not a Flask app: it has no {needs}."
            )
        yield flask_app


# -- flask dispatch routes ------------------------------------------------------------


@dispatch_cli.command("routes", params=list(routes_command.params))
@click.argument("name")
@_by_option
def tenant_routes_command(name: str, by: str | None, **options: t.Any) -> None:
    """Build tenant NAME and show its routes, as 'flask routes' does."""
    with _flask_tenant(_state(), name, by, "routes") as tenant, tenant.app_context():
        click.get_current_context().invoke(routes_command, **options)


# -- flask dispatch run ---------------------------------------------------------------


@dispatch_cli.command("run")
@click.option(
    "--all",
    "all_tenants",
    is_flag=True,
    help="Run the command for every tenant that @dispatch.tenant_names names.",
)
@_by_option
@click.argument("args", nargs=-1, type=click.UNPROCESSED, metavar="[NAME] [--] COMMAND [ARGS]...")
def run_tenant_command(all_tenants: bool, by: str | None, args: tuple[str, ...]) -> None:
    """Run one of tenant NAME's own 'flask' commands (from its app.cli, or
    Flask's and plugins' commands) in its app context. Put '--' before the
    command when it has options: 'flask dispatch run acme -- db upgrade'.

    The exit status is the command's. With --all it runs for every tenant in
    turn, goes on after a failure, and exits with 1 if any failed.
    """
    ctx = click.get_current_context()
    state = _state()
    if not all_tenants and not args:
        raise click.UsageError("Name a tenant, or give --all.")
    command = list(args if all_tenants else args[1:])
    if not command:
        raise click.UsageError("Give the command to run, e.g. '-- routes'.")
    if not all_tenants:
        ctx.exit(_run(state, args[0], by, command))
    names = _tenant_names(state)
    if not names:
        click.echo("No tenants: @dispatch.tenant_names named none.")
        return
    failed = []
    for name in names:
        click.echo(f"== {name} ==")
        try:
            status = _run(state, name, by, command)
        except click.ClickException as e:  # the tenant was not built
            e.show()
            failed.append(f"{name} (not run)")
            continue
        if status:
            failed.append(f"{name} (exit status {status})")
    if failed:
        raise click.ClickException(
            f"The command failed for {len(failed)} of {len(names)} tenants: {', '.join(failed)}."
        )


def _tenant_names(state: DispatchState) -> list[str]:
    function = state.extension.tenant_names_function
    if function is None:
        raise click.ClickException(
            "--all needs a function that names every tenant: register one with"
            " @dispatch.tenant_names."
        )
    try:
        found = function()
        if isinstance(found, str):  # iterable, but of characters
            raise TypeError(f"it returned the string {found!r}, not a list of names")
        names = list(dict.fromkeys(found))
    except Exception as e:
        _echo_traceback(e)
        raise click.ClickException(
            _sentence(f"The @dispatch.tenant_names function raised {_describe(e)}")
        ) from None
    for name in names:
        if not isinstance(name, str):
            raise click.ClickException(
                f"The @dispatch.tenant_names function named {name!r}, which is not a string."
            )
    return names


def _run(state: DispatchState, name: str, by: str | None, args: list[str]) -> int:
    """Build tenant ``name`` (failing as :func:`_flask_tenant` does), run
    ``flask ARGS`` for it alone, in its app context, let it go, and return
    the exit status. An abort (Ctrl-C, or a prompt aborted) is left to the
    host's command, so that it stops ``--all`` too."""
    prog_name = f"{click.get_current_context().command_path} {name} --"
    # Pushed here, the tenant's context is the one commands find.
    with _flask_tenant(state, name, by, "commands") as tenant, tenant.app_context():
        group = FlaskGroup(
            create_app=lambda: tenant,
            add_version_option=False,
            load_dotenv=False,  # the host's command loaded them already
            set_debug_flag=False,  # leave the built app as its factory made it
        )
        group.params = []  # --app, --env-file and --debug are the host's
        try:
            with group.make_context(prog_name, args) as ctx:
                group.invoke(ctx)
        except click.exceptions.Exit as e:
            return e.exit_code
        except (click.Abort, EOFError):
            raise
        except click.ClickException as e:
            e.show()
            return e.exit_code
        except SystemExit as e:
            if e.code is None or isinstance(e.code, int):
                return e.code or 0
            click.echo(e.code, err=True)
            return 1
        except Exception as e:
            _echo_traceback(e)
            return 1
    return 0


# -- flask dispatch evict -------------------------------------------------------------


@dispatch_cli.command("evict")
@click.argument("name", required=False)
@click.option("--all", "all_tenants", is_flag=True, help="Evict every tenant.")
def evict_command(name: str | None, all_tenants: bool) -> None:
    """Make every process that serves the site drop tenant NAME (or, with
    --all, every tenant), so that its next request builds it afresh. Needs
    Redis (DISPATCH_REDIS_URL): without it, or with Redis unreachable, it
    exits with 1.
    """
    if all_tenants and name is not None:
        raise click.UsageError("Give a tenant name or --all, not both.")
    if not all_tenants and name is None:
        raise click.UsageError("Give a tenant name or --all.")
    state = _state()
    if name is not None and state.settings.name_pattern.fullmatch(name) is None:
        raise click.UsageError(
            f"{name!r} does not match DISPATCH_NAME_PATTERN, so no tenant has that name."
        )
    bus = state.bus
    if bus is None:
        raise click.ClickException(
            "Redis is not configured: app.config['DISPATCH_REDIS_URL'] is not set (an"
            " environment variable counts only if the app loads it, e.g. with"
            " app.config.from_prefixed_env() and FLASK_DISPATCH_REDIS_URL), so this"
            " command reaches only its own process, which holds no tenants: nothing was"
            " evicted. Call dispatch.evict(name) in the processes that serve, or restart"
            " them."
        )
    what = _evicted_through_redis(name)
    try:
        state.evict(name)
    finally:
        bus.close()  # sends what is pending, if Redis is reachable
    if bus.pending:
        raise _not_sent(what, bus)
    # Where it went, so that a wrong database or prefix shows.
    click.echo(
        f"Evicted {what} in every process that shares this Redis"
        f" ({bus.where}, prefix {state.settings.redis_prefix!r})."
    )


def _not_sent(what: str, bus: EvictionBus) -> click.ClickException:
    """The failure of an eviction Redis did not take, or perhaps did not: it
    may have taken one whose answer timed out."""
    from .redis_bus import not_sent  # Redis is configured: redis-py is there

    status = not_sent(bus.send_error)
    told = "no" if status == "not sent" else "perhaps no"
    return click.ClickException(
        f"The eviction of {what} was {status} to Redis ({bus.where}:"
        f" {bus.send_error or 'unreachable'}), and {told} other process was told."
    )


def _evicted_through_redis(name: str | None) -> str:
    """Which tenants the other processes drop when tenant ``name`` (``None``:
    all) is evicted."""
    from .redis_bus import MAX_NAME, sent_as  # only once Redis is configured: redis is there

    if name is None:
        return "every tenant"
    if sent_as(name) is None:
        return (
            f"every tenant (a name sent through Redis is UTF-8 of at most {MAX_NAME:,}"
            f" bytes, and {name!r} is not)"
        )
    return f"tenant {name!r}"
