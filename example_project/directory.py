"""The tenant directory: which tenants exist, their display name and colour.

One SQLite database, by default ``tenants.sqlite3`` in the host app's
instance folder (``TENANT_DIRECTORY`` in config, or the
``FLASK_TENANT_DIRECTORY`` environment variable, overrides it). Tenant apps
get the same path in their config, for their settings page.

The file is made whole or not at all (built aside, then linked into place),
so a 0-byte or unreadable file is never a new directory: it stops startup
with :exc:`DirectoryError` rather than starting empty and losing every
tenant.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import sqlite3
import typing as t
from dataclasses import dataclass
from datetime import UTC, datetime

from flask import current_app

SCHEMA = """
CREATE TABLE IF NOT EXISTS tenant (
    name TEXT PRIMARY KEY,
    display_name TEXT NOT NULL,
    colour TEXT NOT NULL,
    created_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP
)
"""

DEMO_TENANTS = (
    ("acme", "Acme Corporation", "#c2410c"),
    ("globex", "Globex", "#1d4ed8"),
)


@dataclass(frozen=True)
class Tenant:
    name: str
    display_name: str
    colour: str
    #: When this tenant signed up: a later one of the same name differs.
    created_at: str


class DuplicateTenant(Exception):
    """A tenant with that name exists already."""


class DirectoryError(RuntimeError):
    """The tenant directory cannot be used; the message names the file."""


def _connect(path: str) -> sqlite3.Connection:
    connection = sqlite3.connect(path, timeout=10)
    connection.row_factory = sqlite3.Row
    return connection


def init_directory(path: str, seed_demo: bool) -> None:
    """Create the directory with the demo tenants if there is no file at
    ``path``; otherwise check that the file is a tenant directory.

    :raises DirectoryError: the file is empty, corrupt or not a tenant
        directory, or cannot be created.
    """
    if not os.path.exists(path):
        _create(path, seed_demo)
    _check(path)


def _create(path: str, seed_demo: bool) -> None:
    """Build the directory aside and link it into place: other workers
    starting at the same time see no file or a whole one, never 0 bytes."""
    draft = f"{path}.{secrets.token_hex(4)}.new"
    try:
        connection = _connect(draft)
        try:
            with connection:
                connection.execute("PRAGMA journal_mode=WAL")
                connection.execute(SCHEMA)
                if seed_demo:
                    connection.executemany(
                        "INSERT INTO tenant (name, display_name, colour) VALUES (?, ?, ?)",
                        DEMO_TENANTS,
                    )
        finally:
            connection.close()
        with contextlib.suppress(FileExistsError):  # another worker was first
            os.link(draft, path)
    except (OSError, sqlite3.Error) as e:
        raise DirectoryError(f"Cannot create the tenant directory {path}: {e}") from e
    finally:
        for leftover in (draft, f"{draft}-wal", f"{draft}-shm"):
            with contextlib.suppress(OSError):
                os.remove(leftover)


def _check(path: str) -> None:
    if os.path.getsize(path) == 0 and not _has_content(f"{path}-wal"):
        raise DirectoryError(
            f"The tenant directory {path} is empty (0 bytes). Restore it from a"
            " backup, or delete it to start a new directory."
        )
    try:
        connection = _connect(path)
        try:
            problems = [row[0] for row in connection.execute("PRAGMA quick_check")]
            tables = connection.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'tenant'"
            ).fetchall()
        finally:
            connection.close()
    except sqlite3.Error as e:
        raise DirectoryError(f"The tenant directory {path} cannot be read: {e}") from e
    if problems != ["ok"]:
        raise DirectoryError(f"The tenant directory {path} is damaged: {problems[0]}")
    if not tables:
        raise DirectoryError(f"{path} is an SQLite database, but not a tenant directory.")


def _has_content(path: str) -> bool:
    try:
        return os.path.getsize(path) > 0
    except OSError:
        return False


def _path() -> str:
    return t.cast(str, current_app.config["TENANT_DIRECTORY"])


def get_tenant(name: str) -> Tenant | None:
    """The tenant called ``name``, or ``None``. Needs an app context."""
    connection = _connect(_path())
    try:
        row = connection.execute(
            "SELECT name, display_name, colour, created_at FROM tenant WHERE name = ?", (name,)
        ).fetchone()
    finally:
        connection.close()
    return Tenant(*row) if row is not None else None


def list_tenants() -> list[Tenant]:
    """Every tenant, by name."""
    connection = _connect(_path())
    try:
        rows = connection.execute(
            "SELECT name, display_name, colour, created_at FROM tenant ORDER BY name"
        ).fetchall()
    finally:
        connection.close()
    return [Tenant(*row) for row in rows]


def add_tenant(name: str, display_name: str, colour: str) -> Tenant:
    """Add a tenant.

    :raises DuplicateTenant: if the name is taken.
    """
    # To the microsecond, rather than by the column's default (to the
    # second): a name deleted and signed up again is told apart.
    created_at = datetime.now(UTC).isoformat(timespec="microseconds")
    try:
        _write(
            "INSERT INTO tenant (name, display_name, colour, created_at) VALUES (?, ?, ?, ?)",
            (name, display_name, colour, created_at),
        )
    except sqlite3.IntegrityError as e:
        raise DuplicateTenant(name) from e
    return Tenant(name, display_name, colour, created_at)


def update_tenant(name: str, display_name: str, colour: str) -> bool:
    """Change a tenant's display name and colour; ``False`` if it is gone."""
    return _write(
        "UPDATE tenant SET display_name = ?, colour = ? WHERE name = ?",
        (display_name, colour, name),
    )


def remove_tenant(name: str) -> bool:
    """Remove a tenant's entry; ``False`` if there was none."""
    return _write("DELETE FROM tenant WHERE name = ?", (name,))


def _write(statement: str, parameters: tuple[str, ...]) -> bool:
    connection = _connect(_path())
    try:
        with connection:
            return connection.execute(statement, parameters).rowcount > 0
    finally:
        connection.close()
