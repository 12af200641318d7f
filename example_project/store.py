"""A tenant's own notes database: one SQLite file per tenant, with a small
pool of connections that :meth:`NoteStore.close` shuts when the tenant app is
evicted.

Only :class:`NoteStore` itself creates the file, when it is made (at the
tenant's creation), and each use checks first that the file is still the
one it made. So an instance of a deleted tenant that some process still
holds (Redis down, or none) neither brings the file back, nor writes through
a pooled connection into the deleted file, nor into the file of a new signup
of the name: it raises :exc:`NotesDeleted`. (A deletion between the check
and the write can still lose that one write.)
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import typing as t
import weakref
from urllib.parse import quote

SCHEMA = """
CREATE TABLE IF NOT EXISTS note (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    body TEXT NOT NULL,
    created_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP
)
"""


class NotesDeleted(sqlite3.OperationalError):
    """The notes file this store made was deleted: its tenant was."""


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
        # Held open while the store lives, so that a new file made at the
        # path (a new signup of the name) cannot reuse its inode.
        self._file = os.open(path, os.O_RDONLY)
        weakref.finalize(self, os.close, self._file)

    @contextlib.contextmanager
    def connection(self) -> t.Iterator[sqlite3.Connection]:
        """A pooled connection, committed on success, returned afterwards.

        :raises NotesDeleted: the file was deleted since the store made it.
        """
        if not _same_file(self.path, self._file):
            raise NotesDeleted(f"{self.path} was deleted, and its tenant with it.")
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


def _same_file(path: str, fd: int) -> bool:
    """Whether ``path`` is still the file open as ``fd``."""
    try:
        return os.path.samestat(os.stat(path), os.fstat(fd))
    except FileNotFoundError:
        return False


def remove_files(path: str) -> None:
    """Delete the notes file at ``path`` and SQLite's files beside it."""
    for name in (path, f"{path}-wal", f"{path}-shm", f"{path}-journal"):
        with contextlib.suppress(FileNotFoundError):
            os.remove(name)
