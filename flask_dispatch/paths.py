"""Split and match request paths.

Pure functions with no Flask import: the first segment of ``PATH_INFO`` for
path dispatch, the longest static mount that holds a path, and the first
segments a host app's own URL rules claim.
"""

from __future__ import annotations

import typing as t


def split_first_segment(path_info: str) -> tuple[str, str]:
    """Split ``PATH_INFO`` into its first segment and the rest.

    ``/acme/notes`` gives ``("acme", "/notes")``; ``/acme`` gives
    ``("acme", "")``; a path that does not start with one ``/`` followed by a
    segment (``""``, ``/``, ``//acme``) gives an empty first segment and the
    path unchanged.

    :param path_info: the WSGI ``PATH_INFO``.
    """
    if not path_info.startswith("/") or path_info.startswith("//") or path_info == "/":
        return "", path_info
    end = path_info.find("/", 1)
    if end == -1:
        return path_info[1:], ""
    return path_info[1:end], path_info[end:]


def normalize_mount_prefix(prefix: str) -> str:
    """Check a mount prefix and return it without a trailing slash.

    :param prefix: e.g. ``"/backend"`` or ``"/api/v1/"``.
    :raises ValueError: if it does not start with ``/``, is only ``/``, has
        an empty segment, or is not ASCII.
    """
    if not isinstance(prefix, str) or not prefix.startswith("/"):
        raise ValueError(f"A mount prefix must start with '/', got {prefix!r}.")
    if not prefix.isascii():
        # PATH_INFO holds the URL's bytes, not its characters: it would never match.
        raise ValueError(f"A mount prefix must be ASCII, got {prefix!r}.")
    stripped = prefix.rstrip("/") if prefix != "/" else ""
    if not stripped or "//" in stripped:
        raise ValueError(
            f"A mount prefix needs at least one segment and no empty ones, got {prefix!r}."
        )
    return stripped


def find_mount(path_info: str, prefixes: t.Collection[str]) -> str | None:
    """Return the longest prefix in ``prefixes`` that holds ``path_info`` on
    whole segments (``/backend/x`` is under ``/backend``, ``/backendx`` is not).

    :param path_info: the WSGI ``PATH_INFO``.
    :param prefixes: normalised mount prefixes.
    """
    script = path_info
    longest = max(map(len, prefixes), default=0)
    if len(script) > longest:
        # No longer part can be a prefix: start at the last segment boundary
        # within the longest, so a long path costs no more than a short one.
        script = script[: max(0, script.rfind("/", 0, longest + 1))]
    while script:
        if script in prefixes:
            return script
        script = script.rpartition("/")[0]
    return None


def rule_first_segments(rules: t.Iterable[str]) -> frozenset[str]:
    """The literal first segments of URL rules, e.g. ``static`` for
    ``/static/<path:filename>``. A first segment holding a converter claims no
    fixed name and is left out.

    :param rules: rule strings such as ``"/login"``.
    """
    segments = set()
    for rule in rules:
        first, _ = split_first_segment(rule)
        if first and "<" not in first:
            segments.add(first)
    return frozenset(segments)
