"""Where a request goes: a pure decision, with no Flask import.

:class:`Router` turns the raw ``Host`` header and ``PATH_INFO`` of a request
into a :class:`Target`: the host app, a bad host, no such tenant, a static
mount, a subdomain tenant, a path tenant, or a custom domain to look up. It
decides; it serves nothing: the middleware serves what it decides.
"""

from __future__ import annotations

import contextlib
import enum
import re
import typing as t
from collections import OrderedDict
from dataclasses import dataclass, field

from werkzeug.sansio.utils import host_is_trusted

from .hosts import canonical_host
from .paths import find_mount

if t.TYPE_CHECKING:
    from .registry import TenantSlot


class Kind(enum.Enum):
    """What a :class:`Target` is."""

    HOST_APP = "host app"
    BAD_HOST = "bad host"
    NO_TENANT = "no tenant"
    MOUNT = "mount"
    SUBDOMAIN = "subdomain tenant"
    PATH = "path tenant"
    #: A host outside the dispatch domains that a custom domain resolver
    #: may know; :attr:`Target.name` is the canonical host.
    DOMAIN = "custom domain"


@dataclass(frozen=True, slots=True)
class Target:
    """Where one request goes. Targets are made once per host, mount or
    path segment and shared by the requests that go there (except for bad
    hosts and names, which are not remembered).

    :param kind: what it is.
    :param name: the tenant's name, or the mount's prefix.
    :param cut: how many leading characters of ``PATH_INFO`` move to
        ``SCRIPT_NAME``: those of ``"/acme"`` for a path tenant, of the
        prefix for a mount, else none.
    :param handler: the factory of a tenant, or the WSGI app of a mount.
    :param reason: why, in words, for the host app, a bad host or no tenant.
    :param slot: where the registry keeps a tenant's app (see
        :meth:`.TenantRegistry.slot`), if the router was given slots.
    """

    kind: Kind
    name: str = ""
    cut: int = 0
    handler: t.Any = None
    reason: str = ""
    slot: TenantSlot | None = None


#: The longest tenant name, whatever the pattern: a DNS label's limit, so a
#: path tenant can be a subdomain one too, and a stranger's long path
#: segments reach no factory, no memo and no pattern.
MAX_NAME = 63


@dataclass(frozen=True)
class Rules:
    """What routing depends on, fixed while the host app serves.

    :param domains: canonical parent domains, longest first.
    :param reserved: names that belong to the host app.
    :param name_pattern: what a tenant name must match in full.
    :param mounts: normalised mount prefix to WSGI app.
    :param own_segments: first path segments of the host app's URL rules.
    :param own_subdomains: subdomains of the host app's URL rules.
    :param subdomain_factory: the subdomain factory, if registered.
    :param path_factory: the path factory, if registered.
    :param custom_domains: whether hosts outside ``domains`` are looked up
        as custom domains of subdomain tenants.
    :param trusted_hosts: the host app's ``TRUSTED_HOSTS``: any other host
        is a bad host.
    """

    domains: tuple[str, ...] = ()
    reserved: frozenset[str] = frozenset()
    name_pattern: re.Pattern[str] = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
    mounts: t.Mapping[str, t.Any] = field(default_factory=dict)
    own_segments: frozenset[str] = frozenset()
    own_subdomains: frozenset[str] = frozenset()
    subdomain_factory: t.Any = None
    path_factory: t.Any = None
    custom_domains: bool = False
    trusted_hosts: tuple[str, ...] | None = None

    def fits_pattern(self, name: str) -> bool:
        """Whether ``name`` is ASCII, at most :data:`MAX_NAME` characters
        long and matches :attr:`name_pattern`. Hosts are ASCII, and
        ``PATH_INFO`` holds a URL's bytes: ``bücher`` is ``bÃ¼cher`` there,
        a name no tenant should get."""
        return (
            len(name) <= MAX_NAME
            and name.isascii()
            and self.name_pattern.fullmatch(name) is not None
        )


#: The :attr:`~Target.reason` of a host ``TRUSTED_HOSTS`` rejects, also the
#: description of its 400.
UNTRUSTED_HOST = "Untrusted Host header."
#: The :attr:`~Target.reason` of a malformed host, also the description of
#: its 400.
MALFORMED_HOST = "Malformed Host header."
_HOST_APP = Kind.HOST_APP  # a plain name, as in the middleware


def read_host(raw_host: str, trusted_hosts: tuple[str, ...] | None) -> tuple[str | None, str]:
    """The canonical spelling of a host the router takes, and ``""``; or
    ``None``, and why it is a :attr:`Kind.BAD_HOST` (:data:`UNTRUSTED_HOST`
    or :data:`MALFORMED_HOST`).

    :param raw_host: the ``Host`` header as the server passed it.
    :param trusted_hosts: the host app's ``TRUSTED_HOSTS``.
    """
    try:
        if trusted_hosts is not None and not host_is_trusted(raw_host, trusted_hosts):
            return None, UNTRUSTED_HOST
    except UnicodeError:  # Werkzeug 3.0 lets IDNA's out for a host such as "a..b.com"
        return None, UNTRUSTED_HOST  # as Werkzeug 3.1 says
    host = canonical_host(raw_host)
    return (host, "") if host is not None else (None, MALFORMED_HOST)


#: A first path segment under which mounts must be searched by the whole path.
_SEARCH_MOUNTS = Target(Kind.MOUNT)
_HOST_SIDE = Target(Kind.HOST_APP)
#: Not in a memo (``None`` is a remembered answer there).
_UNKNOWN = Target(Kind.NO_TENANT)
V = t.TypeVar("V")


class _NotRemembered(Exception):
    """Carries a decision that is not to be remembered: bad input costs no
    memory."""

    def __init__(self, target: Target) -> None:
        self.target = target


class Router:
    """Decide where requests go under one set of :class:`Rules`.

    Hosts and first path segments repeat from request to request, so each is
    decided once and remembered, as is the target of each subdomain tenant
    (whatever spelling or custom domain reached it), up to ``memo_size`` of
    each; past that the one decided longest ago is forgotten, one at a time.
    A memo hit writes nothing, so hits from many threads over many tenants
    share the memo without contention. Malformed hosts and names the pattern
    rejects are never remembered.

    :param rules: what routing depends on.
    :param memo_size: most hosts, path segments and subdomain tenants
        remembered, each.
    :param slots: gives the registry slot of a tenant, from its name and
        factory, for :attr:`Target.slot`.
    """

    def __init__(
        self,
        rules: Rules,
        memo_size: int = 1024,
        slots: t.Callable[[str, t.Any], TenantSlot | None] = lambda name, factory: None,
    ) -> None:
        self.rules = rules
        self._memo_size = memo_size
        self._slot = slots
        self._hosts: OrderedDict[str, Target] = OrderedDict()
        self._segments: OrderedDict[str, Target | None] = OrderedDict()
        self._tenants: OrderedDict[str, Target] = OrderedDict()  # subdomain tenants by name
        self._mount_targets = {
            m: Target(Kind.MOUNT, m, len(m), app) for m, app in rules.mounts.items()
        }
        self._mount_segments = frozenset(m.split("/")[1] for m in rules.mounts)

    def route(self, raw_host: str, path: str) -> Target:
        """Where a request goes.

        :param raw_host: the ``Host`` header as the server passed it.
        :param path: the WSGI ``PATH_INFO``.
        """
        target = self._hosts.get(raw_host)
        if target is None:
            try:
                target = self._remember(self._hosts, raw_host, self._decide_host)
            except _NotRemembered as e:
                target = e.target
        if target.kind is not _HOST_APP:
            return target
        # The host app's side: the common case of route_path written out, as
        # every request to a path tenant or a mount comes this way.
        if path[:1] == "/":
            end = path.find("/", 1)
            found = self._segments.get(path[1:end] if end > 0 else path[1:], _UNKNOWN)
            if found is not _UNKNOWN and found is not _SEARCH_MOUNTS:
                return found or target
        return self.route_path(path, target)

    def route_path(self, path: str, target: Target = _HOST_SIDE) -> Target:
        """Where a request on the host app's side goes by its path: a mount,
        a path tenant, or ``target``.

        :param path: the WSGI ``PATH_INFO``.
        :param target: where it goes if the path decides nothing.
        """
        if path[:1] != "/":
            return target
        end = path.find("/", 1)
        segment = path[1:end] if end > 0 else path[1:]
        found = self._segments.get(segment, _UNKNOWN)
        if found is _UNKNOWN:
            try:
                found = self._remember(self._segments, segment, self._decide_segment)
            except _NotRemembered:
                return target
        if found is _SEARCH_MOUNTS:
            mount = find_mount(path, self.rules.mounts)
            return target if mount is None else self._mount_targets[mount]
        return found or target

    def tenant_target(self, name: str) -> Target:
        """The target of subdomain tenant ``name`` (by its subdomain or a
        custom domain), one for every spelling of its host.

        :param name: a valid tenant name.
        """
        found = self._tenants.get(name)
        return found or self._remember(self._tenants, name, self._subdomain_target)

    def _subdomain_target(self, name: str) -> Target:
        factory = self.rules.subdomain_factory
        return Target(Kind.SUBDOMAIN, name, handler=factory, slot=self._slot(name, factory))

    def _remember(self, memo: OrderedDict[str, V], key: str, decide: t.Callable[[str], V]) -> V:
        """Decide ``key`` and remember it, forgetting the oldest past the size."""
        value = memo[key] = decide(key)
        if len(memo) > self._memo_size:
            with contextlib.suppress(KeyError):  # another thread got there first
                memo.popitem(last=False)
        return value

    def is_tenant_name(self, name: str, by: str | None = None) -> bool:
        """Whether ``name`` may name a tenant: it is ASCII, matches the
        pattern, is not reserved, is not a subdomain of the host app's own
        URL rules; for a path tenant, it is neither a first path segment of
        them nor of a mount; for a subdomain tenant, ``<name>.<domain>``
        reaches it under every dispatch domain (a lowercase host, labels of
        at most 63 characters, under no longer dispatch domain).

        :param name: a candidate tenant name.
        :param by: ``"subdomain"`` or ``"path"``: the kind of tenant (first
            path segments do not shadow a subdomain tenant). By default, the
            kinds that have a factory: both when both do.
        """
        rules = self.rules
        if by is None and (rules.subdomain_factory is None) != (rules.path_factory is None):
            by = "path" if rules.subdomain_factory is None else "subdomain"
        return (
            rules.fits_pattern(name)
            # Reserved names are lowercase; hosts are, paths need not be.
            and name.lower() not in rules.reserved
            and name not in rules.own_subdomains
            and (
                by == "subdomain"
                or (name not in rules.own_segments and name not in self._mount_segments)
            )
            and (by == "path" or self._reached_by_host(name))
        )

    def name_problem(self, name: str, kind: Kind) -> str | None:
        """Why requests never reach tenant ``name`` of this ``kind``, in
        words, or ``None`` if they do.

        :param name: a candidate tenant name.
        :param kind: :attr:`Kind.SUBDOMAIN` or :attr:`Kind.PATH`.
        """
        rules = self.rules
        if not name.isascii():
            return "tenant names are ASCII (a URL carries other characters percent-encoded)"
        if len(name) > MAX_NAME:
            return f"it is longer than {MAX_NAME} characters, a DNS label's limit"
        if rules.name_pattern.fullmatch(name) is None:
            return "it does not match the tenant name pattern (DISPATCH_NAME_PATTERN)"
        if name.lower() in rules.reserved:
            return "it is reserved (DISPATCH_RESERVED)"
        if kind is Kind.SUBDOMAIN:  # under every dispatch domain
            for domain in rules.domains:
                host = f"{name}.{domain}"
                target = self.route(host, "/")
                if target.kind is not kind:
                    break
                if target.name != name:
                    return f"{host} is tenant {target.name!r} under {host[len(target.name) + 1 :]}"
            else:
                return None
        else:  # on whichever host the host app is served
            target = self.route_path(f"/{name}/")
            if target.kind is kind and target.name == name:
                return None
        if kind is Kind.PATH:
            if name in rules.own_segments:
                return "it is the first segment of one of the host app's URL rules"
            if name in rules.own_subdomains:
                return "it is the subdomain of one of the host app's URL rules"
            if any(m == f"/{name}" or m.startswith(f"/{name}/") for m in rules.mounts):
                return f"mounts take the URLs under '/{name}'"
        return target.reason.rstrip(".") or f"its requests go to the {target.kind.value}"

    def _reached_by_host(self, name: str) -> bool:
        """Whether requests reach subdomain tenant ``name`` under every
        dispatch domain: hosts come lowercased, with labels of at most 63
        characters; beside the dispatch domains ``example.com`` and
        ``eu.example.com``, ``eu`` is the host app's, and ``x.eu`` is
        tenant ``x``."""
        for domain in self.rules.domains:
            host = f"{name}.{domain}"
            if canonical_host(host) != host or self._subdomain_of(host) != (name, domain):
                return False
        return True

    def _subdomain_of(self, host: str) -> tuple[str, str] | None:
        """``(name, domain)`` for a host ``<name>.<domain>`` under the longest
        dispatch domain it is under; ``None`` for a dispatch domain itself
        or a host outside them."""
        for domain in self.rules.domains:  # longest first
            if host == domain:
                return None
            cut = len(host) - len(domain) - 1
            # Only on a label boundary: "evilexample.com" is not under "example.com".
            if cut > 0 and host[cut] == "." and host.endswith(domain):
                return host[:cut], domain
        return None

    def _decide_host(self, raw_host: str) -> Target:
        rules = self.rules
        host, problem = read_host(raw_host, rules.trusted_hosts)
        if host is None:
            raise _NotRemembered(Target(Kind.BAD_HOST, reason=problem))
        under = self._subdomain_of(host)
        if under is not None:
            return self._decide_subdomain(under[0])
        if host in rules.domains:
            return Target(Kind.HOST_APP, reason=f"{host} is a dispatch domain")
        # No top-level domain is all digits: such a host is an IP address
        # (a client that asked by address, or a health check), no domain.
        if host[:1] == "[" or host.rpartition(".")[2].isdigit():
            reason = f"{host} is no domain name (its last label is all digits, as an IP address's)"
            return Target(Kind.HOST_APP, reason=reason)
        if rules.custom_domains and rules.subdomain_factory is not None:
            return Target(Kind.DOMAIN, host)
        return Target(Kind.HOST_APP, reason=f"{host} is outside the dispatch domains")

    def _decide_subdomain(self, name: str) -> Target:
        rules = self.rules
        if name in rules.reserved:
            return Target(Kind.HOST_APP, reason=f"{name!r} is reserved")
        if name in rules.own_subdomains:
            return Target(Kind.HOST_APP, reason=f"{name!r} is a subdomain of the host app's rules")
        valid = rules.fits_pattern(name)
        if rules.subdomain_factory is None:
            target = Target(Kind.HOST_APP, reason="no subdomain factory is registered")
            if valid:
                return target
            raise _NotRemembered(target)
        if not valid:
            reason = f"{name[:64]!r} does not match the tenant name pattern"
            raise _NotRemembered(Target(Kind.NO_TENANT, name, reason=reason))
        return self.tenant_target(name)

    def _decide_segment(self, segment: str) -> Target | None:
        """The target a first path segment decides, if it decides one."""
        mounts = [
            m for m in self.rules.mounts if m == "/" + segment or m.startswith(f"/{segment}/")
        ]
        if mounts:
            return self._mount_targets[mounts[0]] if mounts == ["/" + segment] else _SEARCH_MOUNTS
        if not self.rules.fits_pattern(segment):
            raise _NotRemembered(Target(Kind.HOST_APP))
        if self.rules.path_factory is None:
            return None
        if not self.is_tenant_name(segment, "path"):
            return None
        factory = self.rules.path_factory
        slot = self._slot(segment, factory)
        return Target(Kind.PATH, segment, len(segment) + 1, factory, slot=slot)
