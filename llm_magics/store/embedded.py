"""The default database: mongomock's query engine over documents kept in one SQLite file, shared
by threads and by processes (two kernels, a training process and the kernel watching it).

Why not montydb: its SQLite storage cannot be shared between threads, it decodes every stored
document on each query, and its query semantics differ from the mongomock store the tests use.

How it stays right with several processes:

- Reads are served from memory by mongomock. A collection is read from the file when first used,
  and after another process's commit (SQLite's ``data_version`` says so) only the documents that
  changed are read again (``embedded_file``).
- A write operation (``insert_many``, ``update_one``, ``create_index``...) is one SQLite
  ``BEGIN IMMEDIATE`` transaction, which keeps every other writer out. Inside it the collection
  first catches up with what is committed, then mongomock applies the operation to the current
  documents (so two processes' ``$set`` of different fields both stay, and a duplicate ``_id`` or a
  unique index raises ``DuplicateKeyError`` wherever it was inserted first), then the changed
  documents are written and committed. After the commit nothing can raise. A transaction that
  fails before its commit leaves the file as it was, and memory is read back from it.
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bson
import mongomock
from mongomock import helpers
from mongomock.store import CollectionStore, DatabaseStore, ServerStore
from pymongo.errors import PyMongoError, WriteError

from llm_magics.store import linear_cursor
from llm_magics.store.embedded_file import Head, StoreFile

_BAD_VALUE = 2  # MongoDB's code for an operation its values do not allow
# the collection operations that write: each runs in one transaction
_WRITES = (
    "insert_one",
    "insert_many",
    "update_one",
    "update_many",
    "replace_one",
    "delete_one",
    "delete_many",
    "find_one_and_delete",
    "find_one_and_replace",
    "find_one_and_update",
    "bulk_write",
    "create_index",
    "create_indexes",
    "drop_index",
    "drop_indexes",
)


def _key(memory_key: Any) -> bytes:
    """A document's key in the file: its ``_id`` as BSON."""
    return bson.encode({"_id": memory_key})


def _memory_key(object_id: Any) -> Any:
    """A document's key in mongomock's memory (a mapping ``_id`` is kept hashable)."""
    return helpers.hashdict(object_id) if isinstance(object_id, dict) else object_id


def _plain_indexes(indexes: dict[str, Any]) -> dict[str, Any]:
    """Index definitions as BSON takes them: mongomock may keep a key as ``dict_items``."""
    plain = {}
    for name, index in indexes.items():
        plain[name] = {**index, "key": [list(pair) for pair in index["key"]]}
        if isinstance(index.get("partialFilterExpression"), dict):
            plain[name]["partialFilterExpression"] = dict(index["partialFilterExpression"])
    return plain


@dataclass
class _Changed:
    """What one transaction changed in one collection's memory."""

    upserts: dict[Any, None] = field(default_factory=dict)  # ordered: documents keep the order they came in
    deletes: set[Any] = field(default_factory=set)
    indexes: bool = False
    created: bool = False
    dropped: bool = False


@dataclass
class _Transaction:
    """A write in progress: the collections it caught up and what it changed in each."""

    synced: set[int] = field(default_factory=set)
    changed: dict[_Collection, _Changed] = field(default_factory=dict)

    def of(self, collection: _Collection) -> _Changed:
        changed = self.changed.get(collection)
        if changed is None:
            changed = self.changed[collection] = _Changed()
        return changed


class _Collection(CollectionStore):
    """One collection's documents in memory, caught up with the file before each use."""

    def __init__(self, server: EmbeddedServer, db: str, name: str):
        self._server, self._db = server, db
        self._indexes: dict[str, Any] = {}
        self._loaded = self._stale = False
        self._known = 0  # the collection's version that memory holds
        self._created = False
        super().__init__(name)

    # --- reads: memory, after catching up with the file ---

    @property
    def indexes(self) -> dict[str, Any]:
        self._sync()
        return self._indexes

    @indexes.setter
    def indexes(self, value: dict[str, Any]) -> None:
        self._indexes = value

    def __contains__(self, key: Any) -> bool:
        self._sync()
        return super().__contains__(key)

    def __getitem__(self, key: Any) -> Any:
        self._sync()
        return super().__getitem__(key)

    def __len__(self) -> int:
        self._sync()
        return super().__len__()

    @property
    def documents(self) -> Iterator[dict[str, Any]]:
        self._sync()
        return super().documents

    @property
    def is_created(self) -> bool:
        self._sync()
        return bool(self._documents or self._indexes or self._created or self._is_force_created)

    def _sync(self) -> None:
        server = self._server
        transaction = server.transaction_here()
        if transaction is not None and id(self) in transaction.synced:
            return  # caught up already in this write (most calls of a large insert_many)
        with server.file.lock:
            transaction = server.transaction_here()
            if transaction is not None:
                if id(self) not in transaction.synced:  # the committed state, under the write lock
                    self._catch_up()
                    transaction.synced.add(id(self))
                return
            server.refresh()
            if self._loaded and not self._stale:
                return
            server.file.begin(write=False)  # one snapshot for the version and the rows
            try:
                self._catch_up()
            finally:
                server.file.commit()

    def _catch_up(self) -> None:
        file = self._server.file
        head = file.head(self._db, self.name)
        if not self._loaded or self._known < head.floor or head.version < self._known:
            self._replace(file.documents(self._db, self.name), head)
        elif head.version != self._known:
            written, deleted = file.changes(self._db, self.name, self._known)
            with self._rwlock.writer():
                for raw in deleted:
                    self._documents.pop(_memory_key(bson.decode(raw)["_id"]), None)
                for raw in written:
                    document = bson.decode(raw)
                    self._documents[_memory_key(document["_id"])] = document
            self._set_indexes(head)
        self._known, self._loaded, self._stale = head.version, True, False

    def _replace(self, raws: list[bytes], head: Head) -> None:
        documents: OrderedDict[Any, dict[str, Any]] = OrderedDict()
        for raw in raws:
            document = bson.decode(raw)
            documents[_memory_key(document["_id"])] = document
        with self._rwlock.writer():
            self._documents = documents
        self._set_indexes(head)

    def _set_indexes(self, head: Head) -> None:
        stored = bson.decode(head.indexes)["indexes"] if head.indexes else {}
        # BSON has no tuples; mongomock compares index keys as lists of (field, direction) tuples
        self._indexes = {
            name: {**index, "key": [tuple(pair) for pair in index["key"]]} for name, index in stored.items()
        }
        self._ttl_indexes = {n: i for n, i in self._indexes.items() if i.get("expireAfterSeconds") is not None}
        self._created = head.created

    # --- writes: memory now, the file when the transaction ends ---

    def __setitem__(self, key: Any, value: dict[str, Any]) -> None:
        transaction = self._server.transaction_here()
        if transaction is None:  # a write outside an operation (mongomock's own): one of its own
            with self._server.transaction():
                self[key] = value
            return
        self._sync()
        super().__setitem__(key, value)
        changed = transaction.of(self)
        changed.upserts[key] = None
        changed.deletes.discard(key)

    def __delitem__(self, key: Any) -> None:
        transaction = self._server.transaction_here()
        if transaction is None:
            with self._server.transaction():
                del self[key]
            return
        self._sync()
        super().__delitem__(key)
        changed = transaction.of(self)
        changed.deletes.add(key)
        changed.upserts.pop(key, None)

    def updated(self, document: dict[str, Any]) -> None:
        """mongomock changed ``document`` in place (an update): it is written with the transaction."""
        with self._server.transaction() as transaction:
            transaction.of(self).upserts[_memory_key(document["_id"])] = None

    def create(self) -> None:
        """``create_collection``: checked and done in one write, so of several processes creating
        one collection at once exactly one succeeds, as with MongoDB."""
        from pymongo.errors import CollectionInvalid

        with self._server.transaction() as transaction:
            self._sync()
            if self.is_created:
                raise CollectionInvalid(f"collection {self.name} already exists")
            super().create()
            transaction.of(self).created = True

    def create_index(self, index_name: str, index_dict: dict[str, Any]) -> None:
        with self._server.transaction() as transaction:
            self._sync()
            super().create_index(index_name, index_dict)
            transaction.of(self).indexes = True

    def drop_index(self, index_name: str) -> None:
        with self._server.transaction() as transaction:
            self._sync()
            super().drop_index(index_name)
            transaction.of(self).indexes = True

    def drop(self) -> None:
        with self._server.transaction() as transaction:
            self._sync()
            super().drop()
            self._indexes, self._created = {}, False
            transaction.of(self).dropped = True

    def write(self, changed: _Changed) -> int:
        """Writes what a transaction changed (inside it); returns the collection's new version."""
        file = self._server.file
        if changed.dropped:
            return file.clear(self._db, self.name, created=False)
        present = [key for key in changed.upserts if key in self._documents]
        upserts = [(_key(key), bson.encode(self._documents[key])) for key in present]
        deletes = [_key(key) for key in changed.deletes | (changed.upserts.keys() - set(present))]
        indexes = bson.encode({"indexes": _plain_indexes(self._indexes)}) if changed.indexes else None
        return file.write(self._db, self.name, upserts, deletes, indexes)

    def committed(self, version: int, changed: _Changed) -> None:
        self._known, self._created = version, not changed.dropped

    def forget(self) -> None:
        """Memory may hold what a failed transaction did not write: read it again when next used."""
        self._loaded = False


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
        with self._server.file.lock:
            self._server.refresh()
            return self._server.file.collection_names(self._name)

    @property
    def is_created(self) -> bool:
        return bool(self.list_created_collection_names())

    def rename(self, name: str, new_name: str) -> None:
        """Moves the documents and indexes of ``name`` to ``new_name`` in one transaction."""
        with self._server.transaction():
            source, target = self[name], self[new_name]
            source._sync()
            file = self._server.file
            file.clear(self._name, new_name, created=True)
            documents = [(_key(key), bson.encode(doc)) for key, doc in source._documents.items()]
            indexes = bson.encode({"indexes": _plain_indexes(source._indexes)})
            file.write(self._name, new_name, documents, [], indexes)
            file.clear(self._name, name, created=False)
            source.forget()
            target.forget()


class EmbeddedServer(ServerStore):
    """A mongomock server store whose documents live in ``path`` (a SQLite file)."""

    def __init__(self, path: Path, timeout: float = 60.0):
        super().__init__()
        self.file = StoreFile(path, timeout)
        self._data_version: int | None = None
        self._transaction: _Transaction | None = None
        self._owner: int | None = None  # the thread whose transaction it is

    def __getitem__(self, db_name: str) -> _Database:
        try:
            return self._databases[db_name]
        except KeyError:
            db = self._databases[db_name] = _Database(self, db_name)
            return db

    def list_created_database_names(self) -> list[str]:
        with self.file.lock:
            return self.file.database_names()

    def refresh(self) -> None:
        """After another process's commit, every collection in memory catches up when next used."""
        with self.file.lock:
            version = self.file.data_version()
            if version == self._data_version:
                return
            self._data_version = version
            for db in self._databases.values():
                for collection in db._collections.values():
                    collection._stale = True

    def transaction_here(self) -> _Transaction | None:
        """The write transaction this thread is in, if any. (No lock needed: only this thread sets
        or clears its own.)"""
        return self._transaction if self._owner == threading.get_ident() else None

    @contextlib.contextmanager
    def transaction(self) -> Iterator[_Transaction]:
        """One write: joins the one this thread is in, or begins, writes what changed, commits."""
        with self.file.lock:
            current = self.transaction_here()
            if current is not None:
                yield current
                return
            self.file.begin()
            transaction = self._transaction = _Transaction()
            self._owner = threading.get_ident()
            committed = False
            try:
                try:
                    yield transaction
                finally:  # what the operation changed is written even when it raised part-way,
                    # as MongoDB keeps the first inserts of an insert_many that stops at a duplicate
                    self._transaction = self._owner = None
                    versions = {c: c.write(changed) for c, changed in transaction.changed.items()}
                    self.file.commit()
                    committed = True
                    for collection, version in versions.items():
                        collection.committed(version, transaction.changed[collection])
            except BaseException:
                if not committed:
                    self.file.rollback()
                    for collection in transaction.changed:
                        collection.forget()
                raise

    def close(self) -> None:
        self.file.close()


class _UpdatingCollection(mongomock.Collection):
    """A mongomock collection whose write operations are one transaction each, and whose updates
    in place are written."""

    def _apply_update_document(self, existing_document: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        result = super()._apply_update_document(existing_document, *args, **kwargs)
        self._store.updated(existing_document)
        return result

    def _apply_update_pipeline(self, existing_document: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        result = super()._apply_update_pipeline(existing_document, *args, **kwargs)
        self._store.updated(existing_document)
        return result

    def with_options(self, *args: Any, **kwargs: Any) -> Any:
        other = super().with_options(*args, **kwargs)
        other.__class__ = _UpdatingCollection  # mongomock builds a plain Collection: same fields, our writes
        return other


def _in_one_transaction(name: str) -> Any:
    operation = getattr(mongomock.Collection, name)

    @functools.wraps(operation)
    def write(self: _UpdatingCollection, *args: Any, **kwargs: Any) -> Any:
        server = self._store._server
        if server.transaction_here() is not None:  # inside another write: that one answers for it
            return operation(self, *args, **kwargs)
        try:
            with server.transaction():
                return operation(self, *args, **kwargs)
        except BaseException as error:
            # mongomock changes a document in place before it finds that a later operator cannot
            # apply ($set, then a $inc on a string): memory may hold what the file does not
            self._store.forget()
            if isinstance(error, TypeError | ValueError) and not isinstance(error, PyMongoError):
                raise WriteError(f"{name}: {error}", code=_BAD_VALUE) from None  # what MongoDB raises
            raise

    return write


for _name in _WRITES:
    setattr(_UpdatingCollection, _name, _in_one_transaction(_name))


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

    def with_options(self, *args: Any, **kwargs: Any) -> Any:
        other = super().with_options(*args, **kwargs)
        other.__class__ = _UpdatingDatabase  # mongomock builds a plain Database: same fields, our collections
        return other


class EmbeddedClient(mongomock.MongoClient):
    """A mongomock client over an ``EmbeddedServer`` (the pymongo API, persisted)."""

    def __init__(self, path: Path, timeout: float = 60.0):
        """``timeout``: seconds a write waits for another process's write to end, then fails."""
        linear_cursor.install()
        self.server = EmbeddedServer(path, timeout)
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
