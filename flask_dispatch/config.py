"""Configuration keys, their defaults, and the validated settings read from them.

Every ``DISPATCH_*`` key the extension understands is named here once. The
:class:`DispatchSettings` built from an app's config in
:meth:`~flask_dispatch.Dispatch.init_app` is the only place the values are
checked, so a misconfiguration fails at startup with a message naming the key.
"""

from __future__ import annotations

import difflib
import math
import re
import threading
import typing as t
import warnings
from dataclasses import dataclass
from urllib.parse import urlsplit

from werkzeug.sansio.utils import host_is_trusted

from .hosts import canonical_host

#: Parent domain(s) under which ``<name>.<domain>`` selects a tenant.
DOMAIN = "DISPATCH_DOMAIN"
#: Subdomain and path names that always belong to the host app.
RESERVED = "DISPATCH_RESERVED"
#: Regular expression a tenant name must match in full.
NAME_PATTERN = "DISPATCH_NAME_PATTERN"
#: Most tenant apps held at once; a least recently used one is evicted.
MAX_INSTANCES = "DISPATCH_MAX_INSTANCES"
#: Seconds unused after which a tenant app is dropped, or ``None``.
IDLE_TIMEOUT = "DISPATCH_IDLE_TIMEOUT"
#: Seconds after its creation at which a tenant app is rebuilt, or ``None``.
MAX_AGE = "DISPATCH_MAX_AGE"
#: Seconds a factory's "no such tenant" answer is remembered.
MISS_TTL = "DISPATCH_MISS_TTL"
#: Most "no such tenant" answers remembered at once.
MAX_MISSES = "DISPATCH_MAX_MISSES"
#: Seconds a request waits for a tenant's creation before a 503.
CREATE_TIMEOUT = "DISPATCH_CREATE_TIMEOUT"
#: Most requests waiting the whole timeout for one tenant's creation.
MAX_WAITING = "DISPATCH_MAX_WAITING"
#: Most factories running at once in one process (each on its own thread).
MAX_CREATING = "DISPATCH_MAX_CREATING"
#: Whether Flask tenants get sessions of their own (see :doc:`/sessions`).
SCOPE_SESSIONS = "DISPATCH_SCOPE_SESSIONS"
#: Redis that carries evictions to every process, or ``None``.
REDIS_URL = "DISPATCH_REDIS_URL"
#: Prefix of dispatch's Redis keys, so several sites can share one Redis.
REDIS_PREFIX = "DISPATCH_REDIS_PREFIX"

#: One lowercase DNS label.
DEFAULT_NAME_PATTERN = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
DEFAULT_RESERVED: tuple[str, ...] = ("www",)
DEFAULT_MAX_INSTANCES = 100
DEFAULT_IDLE_TIMEOUT: float | None = None
DEFAULT_MAX_AGE: float | None = None
DEFAULT_MISS_TTL = 5.0
DEFAULT_MAX_MISSES = 1000
#: Well under the 30 s after which gunicorn kills a worker, and long enough
#: for a factory that opens a database and runs a small migration.
DEFAULT_CREATE_TIMEOUT = 10.0
#: Below the threads of a gunicorn gthread worker, so that requests waiting for
#: one slow tenant leave threads for the others.
DEFAULT_MAX_WAITING = 4
DEFAULT_MAX_CREATING = 8

_DEFAULTS: dict[str, object] = {
    DOMAIN: None,
    RESERVED: list(DEFAULT_RESERVED),
    NAME_PATTERN: DEFAULT_NAME_PATTERN,
    MAX_INSTANCES: DEFAULT_MAX_INSTANCES,
    IDLE_TIMEOUT: DEFAULT_IDLE_TIMEOUT,
    MAX_AGE: DEFAULT_MAX_AGE,
    MISS_TTL: DEFAULT_MISS_TTL,
    MAX_MISSES: DEFAULT_MAX_MISSES,
    CREATE_TIMEOUT: DEFAULT_CREATE_TIMEOUT,
    MAX_WAITING: DEFAULT_MAX_WAITING,
    MAX_CREATING: DEFAULT_MAX_CREATING,
    SCOPE_SESSIONS: True,
    REDIS_URL: None,
    REDIS_PREFIX: None,
}


class DispatchConfigError(ValueError):
    """A ``DISPATCH_*`` setting is invalid. The message names the key."""


@dataclass(frozen=True)
class DispatchSettings:
    """The checked ``DISPATCH_*`` settings of one app; see :doc:`/config`.

    :param domains: canonical parent domains, longest first.
    :param main_domain: the first of :data:`DISPATCH_DOMAIN` as listed (of a
        set: the shortest, then in alphabetical order), canonical; the one
        links and error pages fall back on. ``None`` without a domain.
    :param reserved: names that always go to the host app.
    :param name_pattern: compiled tenant name pattern.
    :param max_instances: most tenant apps held.
    :param idle_timeout: seconds of disuse before a tenant app is dropped.
    :param max_age: seconds after creation before a tenant app is rebuilt.
    :param miss_ttl: seconds a factory's ``None`` is remembered.
    :param max_misses: most remembered misses.
    :param create_timeout: seconds a request waits for a creation.
    :param max_waiting: most requests waiting for one creation.
    :param max_creating: most creations running at once.
    :param scope_sessions: whether Flask tenants get sessions of their own.
    :param redis_url: the Redis that carries evictions, or ``None``.
    :param redis_prefix: prefix of dispatch's Redis keys.
    """

    domains: tuple[str, ...]
    main_domain: str | None
    reserved: frozenset[str]
    name_pattern: re.Pattern[str]
    max_instances: int
    idle_timeout: float | None
    max_age: float | None
    miss_ttl: float
    max_misses: int
    create_timeout: float
    max_waiting: int
    max_creating: int
    scope_sessions: bool
    redis_url: str | None
    redis_prefix: str

    @classmethod
    def from_config(cls, config: t.Mapping[str, t.Any]) -> DispatchSettings:
        """Check and convert the ``DISPATCH_*`` keys of an app's config.

        :param config: the app's config, with defaults already set.
        :raises DispatchConfigError: naming the key at fault.
        """
        _warn_about_misspelt_keys(config)
        _check_trusted_hosts(config.get("TRUSTED_HOSTS"))
        listed = _domains(config.get(DOMAIN), config.get("SERVER_NAME"))
        # Longest first, so "a.example.com" is tried before "example.com".
        domains = tuple(sorted(set(listed), key=lambda domain: (-len(domain), domain)))
        return cls(
            domains=domains,
            main_domain=listed[0] if listed else None,
            reserved=_reserved(config[RESERVED]),
            name_pattern=_pattern(config[NAME_PATTERN]),
            max_instances=int(_number(config, MAX_INSTANCES, integer=True)),
            idle_timeout=_optional_number(config, IDLE_TIMEOUT),
            max_age=_optional_number(config, MAX_AGE),
            miss_ttl=_number(config, MISS_TTL, allow_zero=True),
            max_misses=int(_number(config, MAX_MISSES, integer=True, allow_zero=True)),
            create_timeout=_number(config, CREATE_TIMEOUT, most=threading.TIMEOUT_MAX),
            max_waiting=int(_number(config, MAX_WAITING, integer=True)),
            max_creating=int(_number(config, MAX_CREATING, integer=True)),
            scope_sessions=_flag(config, SCOPE_SESSIONS),
            redis_url=_redis_url(config),
            redis_prefix=_redis_prefix(config, domains),
        )


def _warn_about_misspelt_keys(config: t.Mapping[str, t.Any]) -> None:
    """Warn about a ``DISPATCH_*`` key close to the name of a setting: most
    likely that setting misspelt, whose value would be ignored without a
    word. A warning, not an error: other ``DISPATCH_*`` keys may be the
    app's own."""
    prefix = "DISPATCH_"
    # Compared without the prefix, which every key shares.
    names = [known.removeprefix(prefix) for known in _DEFAULTS]
    for key in config:
        if isinstance(key, str) and key.startswith(prefix) and key not in _DEFAULTS:
            # Strict: a typo is a letter or two off; DISPATCH_TIMEOUT may be the app's.
            close = difflib.get_close_matches(key.removeprefix(prefix), names, n=1, cutoff=0.85)
            if close:
                warnings.warn(
                    f"{key} is not a flask_dispatch setting, and is ignored: did you mean"
                    f" {prefix}{close[0]}?",
                    stacklevel=4,
                )


def trusted_hosts(value: object) -> tuple[str, ...] | None:
    """``TRUSTED_HOSTS`` as Werkzeug reads it: ``None`` (every host) when
    empty, else the hosts (one may be given as a string).

    :param value: the app's ``TRUSTED_HOSTS``.
    """
    if not value:
        return None
    return (value,) if isinstance(value, str) else tuple(t.cast("t.Iterable[str]", value))


def _check_trusted_hosts(value: object) -> None:
    """Werkzeug checks a request's host against each ``TRUSTED_HOSTS``
    entry in turn, encoding it as IDNA: one it cannot encode (``a..b.com``)
    raises from every request that reaches it, past any error page."""
    try:
        entries: tuple[object, ...] = trusted_hosts(value) or ()
    except TypeError:
        message = f"TRUSTED_HOSTS must be a host or a list of them, got {value!r}."
        raise DispatchConfigError(message) from None
    for entry in entries:
        try:
            if not isinstance(entry, str):
                raise TypeError("not a string")
            host_is_trusted("localhost", [entry])
        except (TypeError, UnicodeError) as e:
            raise DispatchConfigError(
                f"TRUSTED_HOSTS has {entry!r}, which is not a host name ({e}): every"
                " request checked against it would fail."
            ) from None


def _domains(value: object, server_name: object) -> tuple[str, ...]:
    """The canonical dispatch domains, as listed; a set's in an order that
    is the same in every process (the shortest first, then alphabetical),
    not its iteration order, which string hashing varies."""
    if value is None:
        if not server_name:
            return ()
        if not isinstance(server_name, str):
            raise DispatchConfigError("SERVER_NAME must be a string.")
        host = canonical_host(server_name)
        if host is None:
            raise DispatchConfigError(
                f"SERVER_NAME {server_name!r} is not a host name and port, which"
                f" {DOMAIN} defaults to: a port is 1 to 65535, without leading zeros."
            )
        if host.startswith("["):
            return ()  # an IPv6 address has no subdomains
        value = server_name
    raw = [value] if isinstance(value, str) else value
    if not isinstance(raw, (list, tuple, set, frozenset)) or not all(
        isinstance(d, str) for d in raw
    ):
        raise DispatchConfigError(
            f"{DOMAIN} must be a domain name or a list of them, got {value!r}."
        )
    domains = []
    for item in raw:
        host = canonical_host(item)
        if host is None or host.startswith("["):
            raise DispatchConfigError(f"{DOMAIN} has an invalid domain name {item!r}.")
        domains.append(host)
    if isinstance(raw, (set, frozenset)):
        domains.sort(key=_shortest_first)
    return tuple(domains)


def _shortest_first(domain: str) -> tuple[int, str]:
    """Sorts domains shortest first, then alphabetically."""
    return len(domain), domain


def _reserved(value: object) -> frozenset[str]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, (list, tuple, set, frozenset)) or not all(
        isinstance(n, str) for n in items
    ):
        raise DispatchConfigError(f"{RESERVED} must be a list of names, got {value!r}.")
    return frozenset(n.lower() for n in items)


def _pattern(value: object) -> re.Pattern[str]:
    if isinstance(value, re.Pattern) and isinstance(value.pattern, str):
        pattern = t.cast("re.Pattern[str]", value)
    elif isinstance(value, str):
        try:
            pattern = re.compile(value)
        except re.error as e:
            raise DispatchConfigError(f"{NAME_PATTERN} does not compile: {e}.") from e
    else:
        raise DispatchConfigError(
            f"{NAME_PATTERN} must be a regular expression string, got {value!r}."
        )
    # "" is the path "/" and "." and ".." are dot segments: a factory given
    # one of them could build the site's root, or a file path above its own.
    for name in ("", ".", ".."):
        if pattern.fullmatch(name):
            raise DispatchConfigError(
                f"{NAME_PATTERN} {pattern.pattern!r} matches {name!r}, which can never be"
                " a tenant's name."
            )
    return pattern


def _number(
    config: t.Mapping[str, t.Any],
    key: str,
    *,
    integer: bool = False,
    allow_zero: bool = False,
    most: float = math.inf,
) -> float:
    value: t.Any = config[key]
    right_kind = isinstance(value, int) if integer else isinstance(value, (int, float))
    kind = "an integer" if integer else "a finite number"
    wrong = f"{key} must be {kind} {'of 0 or more' if allow_zero else 'above 0'}, got {value!r}."
    if isinstance(value, bool) or not right_kind:
        raise DispatchConfigError(wrong)
    try:
        number = value if integer else float(value)  # an int may be too big for a float
    except OverflowError:
        raise DispatchConfigError(wrong) from None
    infinite = isinstance(number, float) and not math.isfinite(number)
    if infinite or number < 0 or (number == 0 and not allow_zero):
        raise DispatchConfigError(wrong)
    if number > most:
        raise DispatchConfigError(f"{key} must be at most {most:.0f}, got {value!r}.")
    return t.cast(float, number)


def _redis_url(config: t.Mapping[str, t.Any]) -> str | None:
    url = _text(config, REDIS_URL, optional=True)
    if url is not None and not url.startswith(("redis://", "rediss://", "unix://")):
        raise DispatchConfigError(
            f"{REDIS_URL} must be a redis://, rediss:// or unix:// URL, got {url!r}."
        )
    # redis-py reads a database it cannot parse ("/x") as database 0.
    database = "" if url is None or url.startswith("unix:") else urlsplit(url).path.strip("/")
    if database and not (database.isascii() and database.isdigit()):
        raise DispatchConfigError(f"{REDIS_URL}: the path {database!r} is not a database number.")
    return url


def _text(config: t.Mapping[str, t.Any], key: str, optional: bool = False) -> str | None:
    value = config[key]
    if (value is None and optional) or (isinstance(value, str) and value):
        return value
    raise DispatchConfigError(f"{key} must be a non-empty string, got {value!r}.")


def _redis_prefix(config: t.Mapping[str, t.Any], domains: tuple[str, ...]) -> str:
    """The one set, else one of the site's own: two sites that share a
    Redis must not evict each other's tenants. From the shortest domain
    (the first in order among those as short), which adding a regional
    one (``eu.example.com``) leaves as it was."""
    prefix = _text(config, REDIS_PREFIX, optional=True)
    if prefix is not None:
        return prefix
    if not domains:
        return "flask_dispatch"
    return f"flask_dispatch:{min(domains, key=_shortest_first)}"


def _flag(config: t.Mapping[str, t.Any], key: str) -> bool:
    if not isinstance(config[key], bool):
        raise DispatchConfigError(f"{key} must be True or False, got {config[key]!r}.")
    return t.cast(bool, config[key])


def _optional_number(config: t.Mapping[str, t.Any], key: str) -> float | None:
    if config[key] is None:
        return None
    return _number(config, key)


def set_defaults(config: t.MutableMapping[str, t.Any]) -> None:
    """Fill in the default of every ``DISPATCH_*`` key the app left unset.

    :param config: the app's config.
    """
    for key, default in _DEFAULTS.items():
        config.setdefault(key, list(default) if isinstance(default, list) else default)
