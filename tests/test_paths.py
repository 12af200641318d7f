"""Path splitting and mount matching (pure functions)."""

from __future__ import annotations

import pytest

from flask_dispatch.paths import (
    find_mount,
    normalize_mount_prefix,
    rule_first_segments,
    split_first_segment,
)


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        pytest.param("/acme/notes/1", ("acme", "/notes/1"), id="nested"),
        pytest.param("/acme/", ("acme", "/"), id="trailing-slash"),
        pytest.param("/acme", ("acme", ""), id="bare"),
        pytest.param("", ("", ""), id="empty"),
        pytest.param("/", ("", "/"), id="root"),
        pytest.param("//acme/x", ("", "//acme/x"), id="double-slash"),
        pytest.param("acme/x", ("", "acme/x"), id="relative"),
        pytest.param("/acme/../beta/x", ("acme", "/../beta/x"), id="dot-dot"),
    ],
)
def test_split_first_segment(path: str, expected: tuple[str, str]) -> None:
    assert split_first_segment(path) == expected


MOUNTS = {"/backend", "/api/v1", "/api"}


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        pytest.param("/backend", "/backend", id="exact"),
        pytest.param("/backend/", "/backend", id="slash"),
        pytest.param("/backend/x/y", "/backend", id="nested"),
        pytest.param("/backendx", None, id="not-a-segment"),
        pytest.param("/api/v1/users", "/api/v1", id="longest"),
        pytest.param("/api/v2/users", "/api", id="shorter"),
        pytest.param("/", None, id="root"),
        pytest.param("", None, id="empty"),
        pytest.param("/other", None, id="other"),
    ],
)
def test_find_mount(path: str, expected: str | None) -> None:
    assert find_mount(path, MOUNTS) == expected


class Lookups(set[str]):
    """Mount prefixes that count how often they are looked in."""

    looked = 0

    def __contains__(self, item: object) -> bool:
        self.looked += 1
        return super().__contains__(item)


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        pytest.param("/api" + "/" * 65_000, "/api", id="many-slashes"),
        pytest.param("/api/v1" + "/x" * 30_000, "/api/v1", id="many-segments"),
        pytest.param("/zzz" + "/" * 65_000, None, id="no-mount"),
    ],
)
def test_find_mount_work_is_bounded_by_the_longest_prefix(path: str, expected: str | None) -> None:
    # A long path (a stranger's) costs no more than a short one.
    prefixes = Lookups(MOUNTS)
    assert find_mount(path, prefixes) == expected
    assert prefixes.looked <= max(map(len, MOUNTS))  # one per character at most


@pytest.mark.parametrize(
    ("prefix", "expected"),
    [
        pytest.param("/backend", "/backend", id="plain"),
        pytest.param("/backend/", "/backend", id="trailing"),
        pytest.param("/api/v1", "/api/v1", id="two-segments"),
    ],
)
def test_normalize_mount_prefix(prefix: str, expected: str) -> None:
    assert normalize_mount_prefix(prefix) == expected


@pytest.mark.parametrize(
    "prefix",
    [
        pytest.param("backend", id="relative"),
        pytest.param("/", id="root"),
        pytest.param("", id="empty"),
        pytest.param("/a//b", id="empty-segment"),
        pytest.param("/café", id="not-ascii"),
    ],
)
def test_normalize_mount_prefix_rejects(prefix: str) -> None:
    with pytest.raises(ValueError, match="mount prefix"):
        normalize_mount_prefix(prefix)


def test_rule_first_segments() -> None:
    rules = ["/", "/login", "/static/<path:filename>", "/about/team", "/<page>", "/u/<int:id>"]
    assert rule_first_segments(rules) == {"login", "static", "about", "u"}
