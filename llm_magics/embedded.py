"""The default database: mongomock's query engine over documents kept in one SQLite file.

Why not montydb: its SQLite storage cannot be shared between threads (a background training run
writes while the kernel reads), it scans and decodes every stored document on each query, and its
query semantics differ from the mongomock store the tests use. Here every read is served from
memory by the same engine as ``mongomock://``; every write is a SQLite transaction (WAL, so a
``kill -9`` loses at most the write in flight and never corrupts the file); and a change
committed by another process (another kernel, a Ray worker) is noticed through SQLite's
``data_version`` and reloaded before the next read.
"""

from __future__ import annotations

import sqlite3
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

import bson
import mongomock
from mongomock.store import CollectionStore, DatabaseStore, ServerStore

_SCHEMA = """
CREATE TABLE IF NOT EXISTS collections (
    db TEXT NOT NULL, name TEXT NOT NULL, version INTEGER NOT NULL DEFAULT 0,
    indexes BLOB, PRIMARY KEY (db, name));
CREATE TABLE IF NOT EXISTS documents (
    db TEXT NOT NULL, name TEXT NOT NULL, key BLOB NOT NULL, doc BLOB NOT NULL,
    PRIMARY KEY (db, name, key));
"""


class _File:
    """The SQLite file: one connection shared by all threads, one transaction per write."""

    def __init__(self, path: Path):
        self.lock = threading.RLock()
        self._connection = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30)
        self._connection.execute("PRAGMA journal_mode=WAL")
        self._connection.execute("PRAGMA synchronous=NORMAL")
        self._connection.executescript(_SCHEMA)

    def data_version(self) -> int:
        return self._connection.execute("PRAGMA data_version").fetchone()[0]

    def versions(self) -> dict[tuple[str, str], int]:
        rows = self._connection.execute("SELECT db, name, version FROM collections")
        return {(db, name): version for db, name, version in rows}

    def load(self, db: str, name: str) -> tuple[list[bytes], bytes | None]:
        rows = self._connection.execute("SELECT doc FROM documents WHERE db=? AND name=? ORDER BY rowid", (db, name))
        docs = [row[0] for row in rows]
        found = self._connection.execute("SELECT indexes FROM collections WHERE db=? AND name=?", (db, name)).fetchone()
        return docs, found[0] if found else None

    def write(self, db: str, name: str, sql: str, params: tuple) -> tuple[int, int]:
        """Runs one statement and bumps the collection's version in one transaction.

        Returns the version before and after, so the caller can tell whether another
        process changed the collection in between.
        """
        with self.lock:
            self._connection.execute("BEGIN IMMEDIATE")
            try:
                before = self._connection.execute(
                    "SELECT version FROM collections WHERE db=? AND name=?", (db, name)
                ).fetchone()
                self._connection.execute(
                    "INSERT INTO collections (db, name, version) VALUES (?, ?, 1) "
                    "ON CONFLICT (db, name) DO UPDATE SET version = version + 1",
                    (db, name),
                )
                if sql:
                    self._connection.execute(sql, params)
                self._connection.execute("COMMIT")
            except BaseException:
                self._connection.execute("ROLLBACK")
                raise
        old = before[0] if before else 0
        return old, old + 1

    def drop(self, db: str, name: str) -> None:
        with self.lock:
            self._connection.execute("BEGIN IMMEDIATE")
            self._connection.execute("DELETE FROM documents WHERE db=? AND name=?", (db, name))
            self._connection.execute("DELETE FROM collections WHERE db=? AND name=?", (db, name))
            self._connection.execute("COMMIT")

    def close(self) -> None:
        self._connection.close()


def _key(object_id: object) -> bytes:
    return bson.encode({"_id": object_id})


class _Collection(CollectionStore):
    def __init__(self, server: EmbeddedServer, db: str, name: str):
        super().__init__(name)
        self._server, self._db = server, db

    # reads: refresh first, so a write by another process is seen
    def __contains__(self, key: Any) -> bool:
        self._server.refresh()
        return super().__contains__(key)

    def __getitem__(self, key: Any) -> Any:
        self._server.refresh()
        return super().__getitem__(key)

    def __len__(self) -> int:
        self._server.refresh()
        return super().__len__()

    @property
    def documents(self) -> Any:
        self._server.refresh()
        return super().documents

    @property
    def is_created(self) -> bool:
        return bool(self._documents or self.indexes or self._is_force_created)

    # writes: SQLite first, memory after, so a failed write changes neither
    def __setitem__(self, key: Any, value: dict[str, Any]) -> None:
        self._write(
            "INSERT INTO documents (db, name, key, doc) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (db, name, key) DO UPDATE SET doc = excluded.doc",
            (self._db, self.name, _key(key), bson.encode(value)),
        )
        super().__setitem__(key, value)

    def __delitem__(self, key: Any) -> None:
        self._write("DELETE FROM documents WHERE db=? AND name=? AND key=?", (self._db, self.name, _key(key)))
        super().__delitem__(key)

    def create(self) -> None:
        self._write("", ())
        super().create()

    def create_index(self, index_name: str, index_dict: dict[str, Any]) -> None:
        super().create_index(index_name, index_dict)
        self._save_indexes()

    def drop_index(self, index_name: str) -> None:
        super().drop_index(index_name)
        self._save_indexes()

    def drop(self) -> None:
        self._server.file.drop(self._db, self.name)
        self._server.forget(self._db, self.name)
        super().drop()

    def _save_indexes(self) -> None:
        self._write(
            "UPDATE collections SET indexes=? WHERE db=? AND name=?",
            (bson.encode({"indexes": _plain_indexes(self.indexes)}), self._db, self.name),
        )

    def _write(self, sql: str, params: tuple) -> None:
        before, after = self._server.file.write(self._db, self.name, sql, params)
        self._server.wrote(self._db, self.name, before, after)

    def persist(self, key: Any) -> None:
        """Writes the in-memory document ``key`` (changed in place by an update) to the file."""
        doc = self._documents.get(key)
        if doc is not None:
            self._write(
                "UPDATE documents SET doc=? WHERE db=? AND name=? AND key=?",
                (bson.encode(doc), self._db, self.name, _key(key)),
            )

    def _reload(self, docs: list[bytes], indexes: bytes | None, exists: bool = True) -> None:
        loaded = OrderedDict()
        for raw in docs:
            doc = bson.decode(raw)
            loaded[doc["_id"]] = doc
        with self._rwlock.writer():
            self._documents = loaded
        stored = bson.decode(indexes)["indexes"] if indexes else {}
        # BSON has no tuples; mongomock compares index keys as lists of (field, direction) tuples
        self.indexes = {
            name: {**index, "key": [tuple(pair) for pair in index["key"]]} for name, index in stored.items()
        }
        self._is_force_created = exists


def _plain_indexes(indexes: dict[str, Any]) -> dict[str, Any]:
    """Index definitions as BSON takes them: mongomock may keep a key as ``dict_items``."""
    plain = {}
    for name, index in indexes.items():
        plain[name] = {**index, "key": [list(pair) for pair in index["key"]]}
        if isinstance(index.get("partialFilterExpression"), dict):
            plain[name]["partialFilterExpression"] = dict(index["partialFilterExpression"])
    return plain


class _Database(DatabaseStore):
    def __init__(self, server: EmbeddedServer, name: str):
        super().__init__()
        self._server, self._name = server, name

    def __getitem__(self, col_name: str) -> _Collection:
        try:
            return self._collections[col_name]
        except KeyError:
            col = self._collections[col_name] = _Collection(self._server, self._name, col_name)
            return col

    def list_created_collection_names(self) -> list[str]:
        self._server.refresh()
        return super().list_created_collection_names()

    def rename(self, name: str, new_name: str) -> None:
        # mongomock renames in memory only; copy through the file so the new name persists
        old = self[name]
        target = self[new_name]
        for doc in list(old.documents):
            target[doc["_id"]] = doc
        old.drop()


class EmbeddedServer(ServerStore):
    """A mongomock server store whose documents live in ``path`` (a SQLite file)."""

    def __init__(self, path: Path):
        super().__init__()
        self.file = _File(path)
        self._known: dict[tuple[str, str], int] = {}
        self._data_version: int | None = None
        self.refresh()

    def __getitem__(self, db_name: str) -> _Database:
        try:
            return self._databases[db_name]
        except KeyError:
            db = self._databases[db_name] = _Database(self, db_name)
            return db

    def list_created_database_names(self) -> list[str]:
        self.refresh()
        return super().list_created_database_names()

    def refresh(self) -> None:
        """Reloads the collections that another connection changed since the last look."""
        with self.file.lock:
            version = self.file.data_version()
            if version == self._data_version:
                return
            self._data_version = version
            current = self.file.versions()
            for db, name in list(self._known):
                if (db, name) not in current:
                    self[db][name]._reload([], None, exists=False)
                    self._known.pop((db, name))
            for (db, name), stored in current.items():
                if self._known.get((db, name)) != stored:
                    self[db][name]._reload(*self.file.load(db, name))
                    self._known[(db, name)] = stored

    def wrote(self, db: str, name: str, before: int, after: int) -> None:
        """Notes our own write; if another process wrote in between, reload that collection."""
        with self.file.lock:
            stale = self._known.get((db, name), 0) != before
            self._known[(db, name)] = after
            if stale:
                self[db][name]._reload(*self.file.load(db, name))

    def forget(self, db: str, name: str) -> None:
        with self.file.lock:
            self._known.pop((db, name), None)

    def close(self) -> None:
        self.file.close()


_touched = threading.local()


class _UpdatingCollection(mongomock.Collection):
    """mongomock changes updated documents in place; this writes each changed one to the file."""

    def _update(self, *args: Any, **kwargs: Any) -> Any:
        ids: list[Any] = []
        _touched.ids = ids
        try:
            return super()._update(*args, **kwargs)
        finally:
            _touched.ids = None
            for key in dict.fromkeys(ids):
                self._store.persist(key)

    def _apply_update_document(self, existing_document: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        self._note(existing_document)
        return super()._apply_update_document(existing_document, *args, **kwargs)

    def _apply_update_pipeline(self, existing_document: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        self._note(existing_document)
        return super()._apply_update_pipeline(existing_document, *args, **kwargs)

    @staticmethod
    def _note(document: dict[str, Any]) -> None:
        ids = getattr(_touched, "ids", None)
        if ids is not None and "_id" in document:
            ids.append(document["_id"])


class _UpdatingDatabase(mongomock.Database):
    def get_collection(self, name: str, *args: Any, **kwargs: Any) -> Any:
        if name not in self._collection_accesses:
            self._ensure_valid_collection_name(name)
            self._collection_accesses[name] = _UpdatingCollection(
                self,
                name=name,
                read_preference=self.read_preference,
                codec_options=self._codec_options,
                _db_store=self._store,
            )
        return super().get_collection(name, *args, **kwargs)


class EmbeddedClient(mongomock.MongoClient):
    """A mongomock client over an ``EmbeddedServer`` (the pymongo API, persisted)."""

    def __init__(self, path: Path):
        self.server = EmbeddedServer(path)
        super().__init__(_store=self.server)

    def get_database(self, name: str | None = None, *args: Any, **kwargs: Any) -> Any:
        if name is not None and name not in self._database_accesses:
            self._database_accesses[name] = _UpdatingDatabase(
                self,
                name,
                read_preference=self.read_preference,
                codec_options=self._codec_options,
                _store=self._store[name],
            )
        return super().get_database(name, *args, **kwargs)

    def close(self) -> None:
        super().close()
        self.server.close()
