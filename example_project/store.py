"""A tenant's own notes database: one SQLite file per tenant, with a small
pool of connections that :meth:`NoteStore.close` shuts when the tenant app is
evicted.

Only :class:`NoteStore` itself creates the file, when it is made (at the
tenant's creation). Its later connections open the file as it is, so an
instance of a deleted tenant that some process still holds cannot bring the
file back: its writes fail instead of being acknowledged and lost.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import typing as t
from urllib.parse import quote

SCHEMA = """
CREATE TABLE IF NOT EXISTS note (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    body TEXT NOT NULL,
    created_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP
)
"""


class NoteStore:
    """Notes of one tenant in the SQLite file at ``path``."""

    def __init__(self, path: str, pool_size: int = 4) -> None:
        self.path = path
        self._pool: list[sqlite3.Connection] = []
        self._pool_size = pool_size
        self._lock = threading.Lock()
        self.closed = False
        connection = _open(path, create=True)
        try:
            with connection:
                connection.execute("PRAGMA journal_mode=WAL")
                connection.execute(SCHEMA)
        finally:
            connection.close()

    @contextlib.contextmanager
    def connection(self) -> t.Iterator[sqlite3.Connection]:
        """A pooled connection, committed on success, returned afterwards."""
        with self._lock:
            connection = self._pool.pop() if self._pool else None
        if connection is None:
            connection = _open(self.path)
        try:
            with connection:
                yield connection
        finally:
            with self._lock:
                keep = not self.closed and len(self._pool) < self._pool_size
                if keep:
                    self._pool.append(connection)
            if not keep:
                connection.close()

    def list(self) -> list[sqlite3.Row]:
        with self.connection() as connection:
            return connection.execute(
                "SELECT id, body, created_at FROM note ORDER BY id DESC"
            ).fetchall()

    def add(self, body: str) -> None:
        with self.connection() as connection:
            connection.execute("INSERT INTO note (body) VALUES (?)", (body,))

    def delete(self, note_id: int) -> None:
        with self.connection() as connection:
            connection.execute("DELETE FROM note WHERE id = ?", (note_id,))

    def close(self) -> None:
        """Close the pooled connections. Connections in use by requests
        still running are closed when those requests give them back."""
        with self._lock:
            self.closed = True
            pool, self._pool = self._pool, []
        for connection in pool:
            connection.close()

    @property
    def pooled(self) -> int:
        """How many idle connections are open."""
        return len(self._pool)


def _open(path: str, create: bool = False) -> sqlite3.Connection:
    """A connection to the notes file at ``path``, made if ``create``."""
    mode = "rwc" if create else "rw"
    uri = f"file:{quote(os.path.abspath(path))}?mode={mode}"
    connection = sqlite3.connect(uri, uri=True, timeout=10, check_same_thread=False)
    connection.row_factory = sqlite3.Row
    return connection


def remove_files(path: str) -> None:
    """Delete the notes file at ``path`` and SQLite's files beside it."""
    for name in (path, f"{path}-wal", f"{path}-shm", f"{path}-journal"):
        with contextlib.suppress(FileNotFoundError):
            os.remove(name)
