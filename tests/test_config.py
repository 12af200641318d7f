"""``DISPATCH_*`` settings: defaults, validation at startup, and the
subdomain-factory-needs-a-domain rule."""

from __future__ import annotations

import json
import re
import typing as t
from collections import Counter
from pathlib import Path

import pytest
from flask import Flask

from flask_dispatch import Dispatch, DispatchConfigError
from flask_dispatch import config as keys

from .conftest import RecordingFactory


def test_defaults_written_to_config() -> None:
    app = Flask("host")
    Dispatch(app)
    assert app.config[keys.DOMAIN] is None
    assert app.config[keys.RESERVED] == ["www"]
    assert app.config[keys.NAME_PATTERN] == keys.DEFAULT_NAME_PATTERN
    assert app.config[keys.MAX_INSTANCES] == keys.DEFAULT_MAX_INSTANCES
    assert app.config[keys.IDLE_TIMEOUT] is None
    assert app.config[keys.MISS_TTL] == keys.DEFAULT_MISS_TTL
    assert app.config[keys.MAX_MISSES] == keys.DEFAULT_MAX_MISSES
    assert app.config[keys.CREATE_TIMEOUT] == keys.DEFAULT_CREATE_TIMEOUT


def test_settings_read_at_init_app() -> None:
    app = Flask("host")
    app.config.update(
        DISPATCH_DOMAIN=["Example.com.", "example.localhost"],
        DISPATCH_RESERVED=["www", "API"],
        DISPATCH_MAX_INSTANCES=7,
        DISPATCH_IDLE_TIMEOUT=60,
        DISPATCH_MISS_TTL=0,
        DISPATCH_CREATE_TIMEOUT=2.5,
    )
    Dispatch(app)
    state = app.extensions["dispatch"]
    assert state.settings.domains == ("example.localhost", "example.com")
    assert state.settings.reserved == {"www", "api"}
    registry = state.registry
    assert (registry.max_instances, registry.idle_timeout) == (7, 60.0)
    assert (registry.miss_ttl, registry.create_timeout) == (0.0, 2.5)


@pytest.mark.parametrize(
    ("server_name", "domains"),
    [
        pytest.param("Example.com:8000", ("example.com",), id="name"),
        pytest.param("[::1]:5000", (), id="ipv6-address-has-no-subdomains"),
    ],
)
def test_domain_defaults_to_server_name_host(server_name: str, domains: tuple[str, ...]) -> None:
    app = Flask("host")
    app.config["SERVER_NAME"] = server_name
    Dispatch(app).path(RecordingFactory())
    assert app.extensions["dispatch"].settings.domains == domains


@pytest.mark.parametrize(
    ("config", "prefix"),
    [
        pytest.param(
            {"DISPATCH_DOMAIN": "Example.com."}, "flask_dispatch:example.com", id="domain"
        ),
        pytest.param(
            {"SERVER_NAME": "example.com:8000"}, "flask_dispatch:example.com", id="server"
        ),
        pytest.param(
            {"DISPATCH_DOMAIN": ["eu.example.com", "example.com"]},
            "flask_dispatch:example.com",
            id="shortest",
        ),
        # Whatever the order given, or a set's order in this process.
        pytest.param(
            {"DISPATCH_DOMAIN": ["example.org", "example.com"]},
            "flask_dispatch:example.com",
            id="tie",
        ),
        pytest.param(
            {"DISPATCH_DOMAIN": {"example.org", "example.com"}},
            "flask_dispatch:example.com",
            id="tie-in-a-set",
        ),
        pytest.param({}, "flask_dispatch", id="no-domain"),
        pytest.param(
            {"DISPATCH_DOMAIN": "example.com", "DISPATCH_REDIS_PREFIX": "notes"}, "notes", id="set"
        ),
    ],
)
def test_redis_prefix_defaults_to_one_of_the_sites_own(
    config: dict[str, t.Any], prefix: str
) -> None:
    app = Flask("host")
    app.config.update(config)
    Dispatch(app).path(RecordingFactory())
    assert app.extensions["dispatch"].settings.redis_prefix == prefix


@pytest.mark.parametrize(
    "server_name",
    [
        pytest.param("example.com:", id="empty-port"),
        pytest.param("localhost:0", id="port-0"),
        pytest.param("example.com:05000", id="leading-zero"),
    ],
)
def test_a_server_name_dispatch_cannot_read_is_named_as_such(server_name: str) -> None:
    app = Flask("host")
    app.config["SERVER_NAME"] = server_name
    with pytest.raises(DispatchConfigError, match=f"^SERVER_NAME {server_name!r} is not"):
        Dispatch(app)


def test_a_huge_integer_limit_is_no_limit() -> None:
    app = Flask("host")
    app.config["DISPATCH_MAX_INSTANCES"] = 10**400
    Dispatch(app)
    assert app.extensions["dispatch"].registry.max_instances == 10**400


@pytest.mark.parametrize(
    ("key", "value"),
    [
        pytest.param(keys.DOMAIN, "exa mple.com", id="domain-malformed"),
        pytest.param(keys.DOMAIN, ["example.com", 3], id="domain-not-str"),
        pytest.param(keys.DOMAIN, "[::1]", id="domain-ip6"),
        pytest.param(keys.RESERVED, [1], id="reserved-not-str"),
        pytest.param(keys.RESERVED, None, id="reserved-none"),
        pytest.param(keys.NAME_PATTERN, "([a-z", id="pattern-does-not-compile"),
        pytest.param(keys.NAME_PATTERN, 5, id="pattern-not-str"),
        pytest.param(keys.NAME_PATTERN, re.compile(b"[a-z]+"), id="pattern-of-bytes"),
        pytest.param(keys.NAME_PATTERN, ".*", id="pattern-matches-empty"),
        pytest.param(keys.NAME_PATTERN, re.compile("[a-z]*"), id="compiled-matches-empty"),
        pytest.param(keys.NAME_PATTERN, r"[a-z.]+", id="pattern-matches-dot-segments"),
        pytest.param(keys.MAX_INSTANCES, 0, id="max-instances-zero"),
        pytest.param(keys.MAX_INSTANCES, 2.5, id="max-instances-float"),
        pytest.param(keys.MAX_INSTANCES, "10", id="max-instances-str"),
        pytest.param(keys.MAX_INSTANCES, True, id="max-instances-bool"),
        pytest.param(keys.IDLE_TIMEOUT, 10**400, id="idle-beyond-a-float"),
        pytest.param(keys.IDLE_TIMEOUT, -1, id="idle-negative"),
        pytest.param(keys.IDLE_TIMEOUT, float("inf"), id="idle-inf"),
        pytest.param(keys.MISS_TTL, float("nan"), id="miss-ttl-nan"),
        pytest.param(keys.MAX_MISSES, -1, id="max-misses-negative"),
        pytest.param(keys.CREATE_TIMEOUT, 0, id="create-timeout-zero"),
        pytest.param(keys.CREATE_TIMEOUT, None, id="create-timeout-none"),
        pytest.param(keys.CREATE_TIMEOUT, 1e300, id="create-timeout-beyond-a-wait"),
        pytest.param(keys.MAX_WAITING, 0, id="max-waiting-zero"),
        pytest.param(keys.MAX_CREATING, 1.5, id="max-creating-float"),
        pytest.param(keys.MAX_AGE, -5, id="max-age-negative"),
        pytest.param(keys.SCOPE_SESSIONS, "yes", id="scope-sessions-not-bool"),
        pytest.param(keys.REDIS_URL, "localhost:6379", id="redis-url-no-scheme"),
        pytest.param(keys.REDIS_URL, "http://redis", id="redis-url-http"),
        pytest.param(keys.REDIS_URL, "redis://localhost:notaport/0", id="redis-url-bad-port"),
        pytest.param(keys.REDIS_URL, "redis://localhost:6379/x", id="redis-url-bad-database"),
        pytest.param(keys.REDIS_PREFIX, "", id="redis-prefix-empty"),
        # Flask's own, but it would fail every request past dispatch's error pages.
        pytest.param("TRUSTED_HOSTS", ["example.com", "a..b.com"], id="trusted-hosts-empty-label"),
        pytest.param("TRUSTED_HOSTS", "x" * 64 + ".com", id="trusted-host-long-label"),
        pytest.param("TRUSTED_HOSTS", [".example.com", 3], id="trusted-host-not-str"),
        pytest.param("TRUSTED_HOSTS", 3, id="trusted-hosts-not-a-list"),
    ],
)
def test_invalid_setting_fails_at_startup_naming_the_key(key: str, value: t.Any) -> None:
    app = Flask("host")
    app.config[key] = value
    with pytest.raises(DispatchConfigError, match=key):
        Dispatch(app)
    assert "dispatch" not in app.extensions


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        pytest.param(
            keys.MAX_INSTANCES,
            -1,
            "DISPATCH_MAX_INSTANCES must be an integer above 0, got -1.",
            id="count",
        ),
        pytest.param(
            keys.MAX_INSTANCES,
            "10",
            "DISPATCH_MAX_INSTANCES must be an integer above 0, got '10'.",
            id="count-as-text",
        ),
        pytest.param(
            keys.MAX_MISSES,
            -1,
            "DISPATCH_MAX_MISSES must be an integer of 0 or more, got -1.",
            id="count-that-may-be-0",
        ),
        pytest.param(
            keys.IDLE_TIMEOUT,
            float("inf"),
            "DISPATCH_IDLE_TIMEOUT must be a finite number above 0, got inf.",
            id="duration",
        ),
        pytest.param(
            keys.MISS_TTL,
            float("nan"),
            "DISPATCH_MISS_TTL must be a finite number of 0 or more, got nan.",
            id="duration-that-may-be-0",
        ),
    ],
)
def test_a_bad_number_is_told_what_it_must_be(key: str, value: object, message: str) -> None:
    app = Flask("host")
    app.config[key] = value
    with pytest.raises(DispatchConfigError) as raised:
        Dispatch(app)
    assert str(raised.value) == message


@pytest.mark.parametrize(
    ("key", "meant"),
    [
        pytest.param("DISPATCH_MAX_INSTANCE", "DISPATCH_MAX_INSTANCES", id="singular"),
        pytest.param("DISPATCH_IDLE_TIMOUT", "DISPATCH_IDLE_TIMEOUT", id="misspelt"),
        pytest.param("DISPATCH_DOMAINS", "DISPATCH_DOMAIN", id="plural"),
    ],
)
def test_a_misspelt_setting_is_warned_about(key: str, meant: str) -> None:
    app = Flask("host")
    app.config[key] = 5000
    message = f"{key} is not a flask_dispatch setting, and is ignored: did you mean {meant}?"
    with pytest.warns(UserWarning, match=f"^{re.escape(message)}$"):
        Dispatch(app)
    assert app.extensions["dispatch"].settings.max_instances == keys.DEFAULT_MAX_INSTANCES


def test_dispatch_keys_like_no_setting_are_the_apps_own() -> None:
    # "Dispatch" is a common word: a delivery app may have DISPATCH_* keys.
    app = Flask("host")
    app.config.update(
        DISPATCH_TRUCKS=12,
        DISPATCH_TIMEOUT=30,
        DISPATCH_API_URL="https://fleet.test",
        DISPATCH_MAX_RETRIES=3,
        DISPATCH_PREFIX="job",
        DISPATCHER_MODE="x",
    )
    Dispatch(app)  # no warning: the suite turns warnings into errors
    assert "dispatch" in app.extensions


def test_subdomain_factory_without_domain_fails_in_init_app() -> None:
    dispatch = Dispatch()
    dispatch.subdomain(RecordingFactory())
    with pytest.raises(DispatchConfigError, match="DISPATCH_DOMAIN"):
        dispatch.init_app(Flask("host"))


def test_subdomain_factory_without_domain_fails_in_decorator() -> None:
    dispatch = Dispatch(Flask("host"))
    with pytest.raises(DispatchConfigError, match="DISPATCH_DOMAIN"):
        dispatch.subdomain(RecordingFactory())


def test_path_factory_needs_no_domain() -> None:
    dispatch = Dispatch(Flask("host"))
    factory = RecordingFactory()
    assert dispatch.path(factory) is factory


# -- Every key documented, with its default -----------------------------------

ROOT = Path(__file__).resolve().parent.parent


def documented_default(value: object) -> tuple[str, ...]:
    """How a default may be written: ``5.0``, ``None``, ``["www"]``, ``"x"``."""
    if isinstance(value, str):
        return (f"``{value}``", f'``"{value}"``', f"`{value}`", f'`"{value}"`')
    text = json.dumps(value) if isinstance(value, list) else repr(value)
    return (f"``{text}``", f"`{text}`")


def all_defaults() -> dict[str, object]:
    defaults: dict[str, object] = {}
    keys.set_defaults(defaults)
    return defaults


def test_every_key_has_one_entry_with_its_default_on_the_config_page() -> None:
    page = (ROOT / "docs" / "config.rst").read_text()
    entries = re.split(r"^\.\. data:: ", page, flags=re.MULTILINE)[1:]
    by_key = Counter(entry.split("\n", 1)[0].strip() for entry in entries)
    defaults = all_defaults()
    assert by_key == Counter(list(defaults)), "one entry per key in config.py"
    for entry in entries:
        key, text = entry.split("\n", 1)
        default = defaults[key.strip()]
        assert "Default:" in text, key
        sentence = " ".join(text.split("Default:", 1)[1].split()).split(". ")[0]
        assert any(form in sentence for form in documented_default(default)), (key, sentence)


def test_every_key_is_in_the_readme_table_with_its_default() -> None:
    rows = re.findall(
        r"^\| `(DISPATCH_\w+)` \| (.+?) \|", (ROOT / "README.md").read_text(), re.MULTILINE
    )
    defaults = all_defaults()
    assert Counter(key for key, _ in rows) == Counter(list(defaults))
    for key, default in rows:
        if key not in (keys.DOMAIN, keys.NAME_PATTERN):  # described in words
            assert default in documented_default(defaults[key]), key
