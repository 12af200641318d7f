"""The tenant directory: which tenants exist, their display name and colour.

One SQLite database, by default ``tenants.sqlite3`` in the host app's
instance folder (``TENANT_DIRECTORY`` in config, or the
``FLASK_TENANT_DIRECTORY`` environment variable, overrides it).
"""

from __future__ import annotations

import sqlite3
import typing as t
from dataclasses import dataclass

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


class DuplicateTenant(Exception):
    """A tenant with that name exists already."""


def _connect(path: str) -> sqlite3.Connection:
    connection = sqlite3.connect(path, timeout=10)
    connection.row_factory = sqlite3.Row
    return connection


def init_directory(path: str, seed_demo: bool) -> None:
    """Create the directory's table, and the demo tenants if it is new."""
    with _connect(path) as connection:
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute(SCHEMA)
        empty = connection.execute("SELECT COUNT(*) FROM tenant").fetchone()[0] == 0
        if seed_demo and empty:
            connection.executemany(
                "INSERT OR IGNORE INTO tenant (name, display_name, colour) VALUES (?, ?, ?)",
                DEMO_TENANTS,
            )
    connection.close()


def _path() -> str:
    return t.cast(str, current_app.config["TENANT_DIRECTORY"])


def get_tenant(name: str) -> Tenant | None:
    """The tenant called ``name``, or ``None``. Needs the host app's context."""
    connection = _connect(_path())
    try:
        row = connection.execute(
            "SELECT name, display_name, colour FROM tenant WHERE name = ?", (name,)
        ).fetchone()
    finally:
        connection.close()
    return Tenant(*row) if row is not None else None


def list_tenants() -> list[Tenant]:
    """Every tenant, by name."""
    connection = _connect(_path())
    try:
        rows = connection.execute(
            "SELECT name, display_name, colour FROM tenant ORDER BY name"
        ).fetchall()
    finally:
        connection.close()
    return [Tenant(*row) for row in rows]


def add_tenant(name: str, display_name: str, colour: str) -> Tenant:
    """Add a tenant.

    :raises DuplicateTenant: if the name is taken.
    """
    connection = _connect(_path())
    try:
        with connection:
            connection.execute(
                "INSERT INTO tenant (name, display_name, colour) VALUES (?, ?, ?)",
                (name, display_name, colour),
            )
    except sqlite3.IntegrityError as e:
        raise DuplicateTenant(name) from e
    finally:
        connection.close()
    return Tenant(name, display_name, colour)
