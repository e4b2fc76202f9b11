"""The SQLite file of the embedded store: documents (BSON), one version counter per collection,
and what changed at each version, so another process catches up by reading only the changes.

Every row written carries the collection's version after the write that wrote it; a deleted
document leaves a tombstone with that version. A process that knows version ``v`` of a
collection reads the rows and tombstones above ``v``. Tombstones are purged in batches; a
process that knew a version below the purged ones (``floor``) reloads the collection whole.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

_SCHEMA = """
CREATE TABLE IF NOT EXISTS collections (
    db TEXT NOT NULL, name TEXT NOT NULL, version INTEGER NOT NULL DEFAULT 0,
    indexes BLOB, PRIMARY KEY (db, name));
CREATE TABLE IF NOT EXISTS documents (
    db TEXT NOT NULL, name TEXT NOT NULL, key BLOB NOT NULL, doc BLOB NOT NULL,
    PRIMARY KEY (db, name, key));
CREATE TABLE IF NOT EXISTS tombstones (
    db TEXT NOT NULL, name TEXT NOT NULL, key BLOB NOT NULL, version INTEGER NOT NULL,
    PRIMARY KEY (db, name, key));
"""
# what a store written by an earlier version lacks: added in place, so it keeps working
_COLUMNS = {
    "collections": {"floor": "INTEGER NOT NULL DEFAULT 0", "created": "INTEGER NOT NULL DEFAULT 1"},
    "documents": {"version": "INTEGER NOT NULL DEFAULT 0"},
}
_INDEXES = """
CREATE INDEX IF NOT EXISTS documents_by_version ON documents (db, name, version);
CREATE INDEX IF NOT EXISTS tombstones_by_version ON tombstones (db, name, version);
"""
_KEEP_TOMBSTONES = 10_000  # per collection; past that the oldest half goes and ``floor`` rises


def _statements(script: str) -> list[str]:
    return [statement.strip() for statement in script.split(";") if statement.strip()]


@dataclass
class Head:
    """A collection's row: its version, the version below which changes can no longer be read,
    its indexes (BSON) and whether it exists."""

    version: int = 0
    floor: int = 0
    indexes: bytes | None = None
    created: bool = False


class StoreFile:
    """One connection shared by this process's threads (``lock`` serializes them); a write is one
    ``BEGIN IMMEDIATE`` transaction, which also keeps other processes' writers out.

    Writers of several processes take turns through a lock file first: SQLite's own wait for a busy
    database sleeps longer and longer between tries, so a process that writes in a tight loop
    would keep another one waiting for seconds; the kernel wakes a process waiting for the lock
    file as soon as it is free.
    """

    def __init__(self, path: Path, timeout: float = 60.0):
        self.lock = threading.RLock()
        self.writing = False  # whether the open transaction is a write
        self.timeout = timeout  # seconds a writer waits for its turn, then fails as SQLite does
        self._turns = _open_turns(path.with_name(path.name + ".lock"))
        self._connection = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=timeout)
        self._connection.execute("PRAGMA journal_mode=WAL")
        self._connection.execute("PRAGMA synchronous=NORMAL")
        with self.lock:
            self.begin()  # one process migrates; the others wait, then find it done
            try:
                for statement in (*_statements(_SCHEMA), *_statements(_INDEXES)):
                    self._connection.execute(statement)
                    if statement.startswith("CREATE TABLE"):
                        self._add_missing_columns()
                self.commit()
            except BaseException:
                self.rollback()
                raise

    def _add_missing_columns(self) -> None:
        for table, columns in _COLUMNS.items():
            present = {row[1] for row in self._connection.execute(f"PRAGMA table_info({table})")}
            if not present:
                continue  # not created yet
            for column, declaration in columns.items():
                if column not in present:
                    self._connection.execute(f"ALTER TABLE {table} ADD COLUMN {column} {declaration}")

    # --- transactions (the caller holds ``lock``) ---

    def begin(self, write: bool = True) -> None:
        if not write:
            self._connection.execute("BEGIN")
            return
        _take_turn(self._turns, self.timeout)
        try:
            self._connection.execute("BEGIN IMMEDIATE")
        except BaseException:
            _end_turn(self._turns)
            raise
        self.writing = True

    def commit(self) -> None:
        self._connection.execute("COMMIT")
        self._done()

    def rollback(self) -> None:
        if self._connection.in_transaction:
            self._connection.execute("ROLLBACK")
        self._done()

    def _done(self) -> None:
        if self.writing:
            self.writing = False
            _end_turn(self._turns)

    @property
    def in_transaction(self) -> bool:
        return self._connection.in_transaction

    def data_version(self) -> int:
        """Changes when another connection commits (this one's own commits leave it)."""
        return self._connection.execute("PRAGMA data_version").fetchone()[0]

    # --- reading ---

    def head(self, db: str, name: str) -> Head:
        found = self._connection.execute(
            "SELECT version, floor, indexes, created FROM collections WHERE db=? AND name=?", (db, name)
        ).fetchone()
        return Head(found[0], found[1], found[2], bool(found[3])) if found else Head()

    def documents(self, db: str, name: str) -> list[bytes]:
        rows = self._connection.execute("SELECT doc FROM documents WHERE db=? AND name=? ORDER BY rowid", (db, name))
        return [row[0] for row in rows]

    def changes(self, db: str, name: str, since: int) -> tuple[list[bytes], list[bytes]]:
        """The documents written and the keys deleted after version ``since``."""
        written = self._connection.execute(
            "SELECT doc FROM documents WHERE db=? AND name=? AND version>? ORDER BY rowid", (db, name, since)
        )
        deleted = self._connection.execute(
            "SELECT key FROM tombstones WHERE db=? AND name=? AND version>?", (db, name, since)
        )
        return [row[0] for row in written], [row[0] for row in deleted]

    def document(self, db: str, name: str, key: bytes) -> bytes | None:
        found = self._connection.execute(
            "SELECT doc FROM documents WHERE db=? AND name=? AND key=?", (db, name, key)
        ).fetchone()
        return found[0] if found else None

    def collection_names(self, db: str) -> list[str]:
        rows = self._connection.execute("SELECT name FROM collections WHERE db=? AND created=1 ORDER BY name", (db,))
        return [row[0] for row in rows]

    def database_names(self) -> list[str]:
        return [row[0] for row in self._connection.execute("SELECT DISTINCT db FROM collections WHERE created=1")]

    # --- writing (inside a write transaction) ---

    def write(
        self,
        db: str,
        name: str,
        upserts: Iterable[tuple[bytes, bytes]],
        deletes: Iterable[bytes],
        indexes: bytes | None = None,
        *,
        created: bool = True,
    ) -> int:
        """Writes a collection's changes as its next version; returns that version."""
        version = self.head(db, name).version + 1
        rows = [(db, name, key, doc, version) for key, doc in upserts]
        self._connection.executemany(
            "INSERT INTO documents (db, name, key, doc, version) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (db, name, key) DO UPDATE SET doc=excluded.doc, version=excluded.version",
            rows,
        )
        if self._has_tombstones(db, name):  # a deleted document written again is no longer deleted
            self._connection.executemany(
                "DELETE FROM tombstones WHERE db=? AND name=? AND key=?", [(db, name, row[2]) for row in rows]
            )
        gone = [(db, name, key) for key in deletes]
        self._connection.executemany("DELETE FROM documents WHERE db=? AND name=? AND key=?", gone)
        self._connection.executemany(
            "INSERT OR REPLACE INTO tombstones (db, name, key, version) VALUES (?, ?, ?, ?)",
            [(*row, version) for row in gone],
        )
        self._connection.execute(
            "INSERT INTO collections (db, name, version, indexes, created) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (db, name) DO UPDATE SET version=excluded.version, created=excluded.created, "
            "indexes=coalesce(excluded.indexes, collections.indexes)",
            (db, name, version, indexes, int(created)),
        )
        if gone:
            self._purge_tombstones(db, name)
        return version

    def clear(self, db: str, name: str, *, created: bool) -> int:
        """Empties a collection (a drop, or the source of a rename) as its next version; whoever
        knew an earlier version reloads it whole."""
        version = self.head(db, name).version + 1
        self._connection.execute("DELETE FROM documents WHERE db=? AND name=?", (db, name))
        self._connection.execute("DELETE FROM tombstones WHERE db=? AND name=?", (db, name))
        self._connection.execute(
            "INSERT INTO collections (db, name, version, floor, indexes, created) VALUES (?, ?, ?, ?, NULL, ?) "
            "ON CONFLICT (db, name) DO UPDATE SET version=excluded.version, floor=excluded.floor, "
            "indexes=NULL, created=excluded.created",
            (db, name, version, version, int(created)),
        )
        return version

    def _has_tombstones(self, db: str, name: str) -> bool:
        found = self._connection.execute("SELECT 1 FROM tombstones WHERE db=? AND name=? LIMIT 1", (db, name))
        return found.fetchone() is not None

    def _purge_tombstones(self, db: str, name: str) -> None:
        count = self._connection.execute(
            "SELECT count(*) FROM tombstones WHERE db=? AND name=?", (db, name)
        ).fetchone()[0]
        if count <= _KEEP_TOMBSTONES:
            return
        cut = self._connection.execute(
            "SELECT version FROM tombstones WHERE db=? AND name=? ORDER BY version LIMIT 1 OFFSET ?",
            (db, name, count // 2),
        ).fetchone()[0]
        self._connection.execute("DELETE FROM tombstones WHERE db=? AND name=? AND version<?", (db, name, cut))
        self._connection.execute("UPDATE collections SET floor=? WHERE db=? AND name=?", (cut - 1, db, name))

    def close(self) -> None:
        self._connection.close()
        if self._turns is not None:
            os.close(self._turns)


def _open_turns(path: Path) -> int | None:
    """The lock file writers take turns through (None where there is no ``fcntl``: Windows, or a
    lock file this user may not open: SQLite's own lock still keeps writers apart). Only its
    owner may open it: whoever can open a file can hold its lock and stop the owner's writes."""
    try:
        import fcntl  # noqa: F401
    except ImportError:
        return None
    with contextlib.suppress(OSError):
        turns = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        if os.fstat(turns).st_uid == os.getuid():
            os.fchmod(turns, 0o600)  # made 0666 by earlier versions
        return turns
    return None


def _take_turn(turns: int | None, timeout: float) -> None:
    """Waits for this process's turn to write, at most ``timeout`` seconds (what SQLite waits for a
    busy database): a writer stopped while holding its turn (SIGSTOP, a debugger) makes the others
    fail as SQLite would, not wait forever."""
    if turns is None:
        return
    import fcntl

    deadline, pause = time.monotonic() + timeout, 0.0005
    while True:
        try:
            fcntl.flock(turns, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise sqlite3.OperationalError(
                    f"database is locked: another process has held its turn to write for {timeout:g} s"
                ) from None
            time.sleep(pause)
            pause = min(pause * 2, 0.01)  # a turn comes round within milliseconds when writers are alive


def _end_turn(turns: int | None) -> None:
    if turns is not None:
        import fcntl

        fcntl.flock(turns, fcntl.LOCK_UN)
