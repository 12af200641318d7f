"""Property-based tests (hypothesis): any host, any path, and a stateful
model of the registry."""

from __future__ import annotations

import re
import typing as t
from collections import OrderedDict

import pytest
from flask import request
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from flask_dispatch import Dispatch, TenantFactoryError, TenantRegistry
from flask_dispatch.config import DEFAULT_NAME_PATTERN
from flask_dispatch.hosts import canonical_host
from flask_dispatch.registry import TICK

from .conftest import NamedApp, call, make_host_app

if t.TYPE_CHECKING:
    from collections.abc import Iterable

    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

PATTERN = re.compile(DEFAULT_NAME_PATTERN)
MAX_INSTANCES = 6
EXAMPLES = settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))

# WSGI strings are latin-1 (PEP 3333): what a server can hand over.
LATIN1 = st.characters(max_codepoint=255)
# Hosts made of the characters that matter, including latin-1 decoded UTF-8.
host_parts = st.sampled_from([*list("abcxyz019-.:@/[]_ ,%\tüKACME"), ".example.com"])
hosts = st.one_of(
    st.lists(host_parts, max_size=20).map(
        # raw UTF-8 as a WSGI server hands it over (latin-1 decoded)
        lambda parts: "".join(parts).replace("\u00fc", "\u00c3\u00bc")
    ),
    st.text(alphabet=LATIN1, max_size=30),
    st.from_regex(
        r"[a-zA-Z0-9-]{1,70}(\.[a-zA-Z0-9-]{1,5}){0,3}\.example\.com\.?(:[0-9]{1,6})?",
        fullmatch=True,
    ),
)
paths = st.one_of(
    st.text(alphabet=st.sampled_from(list("/acmeACME.%2F-_0~")), max_size=30),
    st.from_regex(r"(/[a-z0-9-]{0,70}){0,4}/?", fullmatch=True),
    st.text(alphabet=LATIN1, max_size=30).map(lambda s: "/" + s),
)


class Capture:
    """A WSGI app that records the SCRIPT_NAME and PATH_INFO it was given."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        self.seen.append((environ["SCRIPT_NAME"], environ["PATH_INFO"]))
        start_response("200 OK", [])
        return [b""]


def stub_app() -> tuple[t.Any, list[str]]:
    calls: list[str] = []

    def factory(name: str) -> WSGIApplication | None:
        calls.append(name)
        return NamedApp(name) if len(name) % 2 else None

    app = make_host_app(DISPATCH_MAX_INSTANCES=MAX_INSTANCES, DISPATCH_MISS_TTL=0.0)
    dispatch = Dispatch(app)
    dispatch.subdomain(factory)
    dispatch.path(factory)
    return app, calls


@EXAMPLES
@given(host=hosts, path=paths)
def test_any_host_and_path(host: str, path: str) -> None:
    app, calls = stub_app()
    response = call(app, path or "/", host=host)
    assert response.status in (200, 308, 400, 404), response
    assert all(PATTERN.fullmatch(name) for name in calls), calls
    with app.app_context():
        assert len(app.extensions["dispatch"].registry) <= MAX_INSTANCES


APP, CALLS = stub_app()


@EXAMPLES
@given(host=hosts)
def test_shared_app_stays_bounded(host: str) -> None:
    """One app across all examples: the bound holds over many requests."""
    assert call(APP, "/", host=host).status in (200, 400, 404)
    assert all(PATTERN.fullmatch(name) for name in CALLS)
    with APP.app_context():
        assert len(APP.extensions["dispatch"].registry) <= MAX_INSTANCES


labels = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?", fullmatch=True)


@EXAMPLES
@given(
    names=st.lists(labels, min_size=1, max_size=5),
    port=st.one_of(st.none(), st.integers(1, 65535)),
    dot=st.booleans(),
    data=st.data(),
)
def test_canonical_host_is_idempotent_and_insensitive(
    names: list[str], port: int | None, dot: bool, data: st.DataObject
) -> None:
    host = ".".join(names)
    upper = "".join(c.upper() if data.draw(st.booleans()) else c for c in host)
    spelled = upper + ("." if dot else "") + (f":{port}" if port is not None else "")
    assert canonical_host(spelled) == host
    assert canonical_host(host) == host


@EXAMPLES
@given(raw=st.text(max_size=80))
def test_canonical_host_idempotent_on_anything(raw: str) -> None:
    host = canonical_host(raw)
    if host is not None:
        assert canonical_host(host) == host


@EXAMPLES
@given(path=paths, script=st.sampled_from(["", "/outer", "/a/b"]))
def test_script_name_plus_path_info_is_preserved(path: str, script: str) -> None:
    seen = Capture()
    app = make_host_app()
    Dispatch(app).path(lambda name: seen if len(name) % 2 else None)

    @app.before_request
    def host_app_sees() -> str:
        seen.seen.append((request.environ["SCRIPT_NAME"], request.environ["PATH_INFO"]))
        return ""

    call(app, path, host="example.com", script_name=script)
    assert len(seen.seen) == 1
    seen_script, seen_path = seen.seen[0]
    # The URL as Werkzeug reads it: a PATH_INFO without its leading slash has one.
    assert seen_script + seen_path == script + ("" if path[:1] in ("/", "") else "/") + path
    assert seen_script.startswith(script)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


NAMES = ["a", "b", "c", "d", "e"]


class RegistryModel(RuleBasedStateMachine):
    """The registry against a plain model: LRU order counted in creations,
    misses with expiry and bound, idle expiry, failures never kept."""

    idle: float | None = None
    capacity = 3
    ttl = 5.0
    max_misses = 2

    def __init__(self) -> None:
        super().__init__()
        self.clock = Clock()
        self.registry = TenantRegistry(
            max_instances=self.capacity,
            idle_timeout=self.idle,
            miss_ttl=self.ttl,
            max_misses=self.max_misses,
            clock=self.clock,
        )
        self.behaviour: dict[str, str] = dict.fromkeys(NAMES, "ok")
        self.calls = 0
        self.model_calls = 0
        # name -> (app, time of last use, recency of last use)
        self.instances: dict[str, tuple[object, float, float]] = {}
        # The recency clock moves on every TICK hits (of held apps and of
        # remembered misses) and at each creation, which happens between two
        # of its moments.
        self.recency = self.hits = 0
        self.misses: OrderedDict[str, float] = OrderedDict()

    def factory(self, name: str) -> WSGIApplication | None:
        self.calls += 1
        kind = self.behaviour[name]
        if kind == "fail":
            raise LookupError(name)
        return NamedApp(name) if kind == "ok" else None

    @rule(name=st.sampled_from(NAMES), kind=st.sampled_from(["ok", "none", "fail"]))
    def set_behaviour(self, name: str, kind: str) -> None:
        self.behaviour[name] = kind

    @rule(seconds=st.sampled_from([0.5, 3.0, 6.0, 11.0]))
    def tick(self, seconds: float) -> None:
        self.clock.now += seconds

    @rule(name=st.sampled_from(NAMES))
    def evict(self, name: str) -> None:
        expected = 1 if name in self.instances else 0
        self.instances.pop(name, None)
        self.misses.pop(name, None)
        assert self.registry.evict(name) == expected

    def forget_expired_misses(self, now: float) -> None:
        for missed, expires in list(self.misses.items()):
            if expires <= now:
                del self.misses[missed]

    @rule(name=st.sampled_from(NAMES))
    def get(self, name: str) -> None:
        now = self.clock.now
        if self.idle is not None:
            # What the housekeeping thread does at any moment.
            self.registry.expire()
            for held, (_, used, _) in list(self.instances.items()):
                if used <= now - self.idle:
                    del self.instances[held]
            self.forget_expired_misses(now)
        expected: object
        if name in self.instances:
            app, _, _ = self.instances[name]
            self.hit()
            self.instances[name] = (app, now, self.recency)
            expected = app
        else:
            # A lookup that is no hit forgets every expired miss.
            self.forget_expired_misses(now)
        if name in self.instances:
            pass
        elif name in self.misses:
            self.hit()
            expected = None
        else:
            self.model_calls += 1
            kind = self.behaviour[name]
            if kind == "fail":
                with pytest.raises(TenantFactoryError) as info:
                    self.registry.get(name, self.factory)
                assert isinstance(info.value.__cause__, LookupError)
                return
            result = self.registry.get(name, self.factory)
            if kind == "none":
                assert result is None
                self.misses[name] = now + self.ttl
                while len(self.misses) > self.max_misses:
                    self.misses.popitem(last=False)
            else:
                assert isinstance(result, NamedApp) and result.name == name
                self.instances[name] = (result, now, self.recency + 0.5)
                self.recency += 1
                if len(self.instances) > self.capacity:
                    self.least_recent_evicted(name)
            return
        assert self.registry.get(name, self.factory) is expected

    def hit(self) -> None:
        self.hits += 1
        if self.hits % TICK == 0:
            self.recency += 1

    def least_recent_evicted(self, new: str) -> None:
        """Drop the app the registry evicted for ``new``: one of the least
        recent (the capacity is below the registry's sample)."""
        others = {held: at for held, (_, _, at) in self.instances.items() if held != new}
        least = min(others.values())
        (victim,) = set(self.instances) - set(self.registry)
        assert others[victim] == least
        self.instances = {held: self.instances[held] for held in self.registry}

    @invariant()
    def agrees_with_model(self) -> None:
        assert self.calls == self.model_calls
        held = list(self.registry)  # least recent first
        assert sorted(held) == sorted(self.instances)
        recency = [self.instances[name][2] for name in held]
        assert recency == sorted(recency)
        assert len(self.registry) <= self.capacity
        assert self.registry.stats().misses == len(self.misses)
        assert self.registry.stats().misses <= self.max_misses


class RegistryModelWithIdle(RegistryModel):
    idle = 10.0


TestRegistryModel = RegistryModel.TestCase
TestRegistryModel.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
TestRegistryModelWithIdle = RegistryModelWithIdle.TestCase
TestRegistryModelWithIdle.settings = settings(
    max_examples=150, stateful_step_count=40, deadline=None
)
