"""Opening a database, and the handle on it: the pymongo API on the data, plus the package's
records (``store``), ``show`` and ``execute``.

The seed's ``load`` and ``apply``, and ``run`` (a run's handle), are floors up, in ``api``: the
storage floor knows records, not what builds, trains or follows them.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Any, TypeVar

from llm_magics.core.cache import ModelCache
from llm_magics.core.errors import DatabaseError, did_you_mean, one_of
from llm_magics.core.secrets import redact_text
from llm_magics.store.query import Operation, Select, execute
from llm_magics.store.records import Store

DEFAULT_DIR = ".llm_magics"
_SCHEMES = ("embedded", "mongomock", "mongodb", "mongodb+srv")
_KINDS = ("model", "run", "checkpoint")
# one in-memory server per process, shared by every mongomock:// handle (like a real server)
_memory_server: Any = None

Handle = TypeVar("Handle", bound="DatabaseHandle")


def open_database(uri: str | None = None, *, timeout_ms: int = 3000, cls: type[Handle] | None = None) -> Handle:
    """Opens a database (see ``llm_magics.connect`` for the URIs); ``cls`` is the handle's class."""
    handle_class: Any = cls or DatabaseHandle
    uri = uri or f"embedded://{DEFAULT_DIR}"
    scheme, separator, rest = uri.partition("://")
    if scheme not in _SCHEMES or not separator:
        raise DatabaseError(
            f"database URI '{redact_text(uri)}': the scheme must be {one_of(s + '://' for s in _SCHEMES)}"
            f"{did_you_mean(scheme, _SCHEMES)}"
        )
    if scheme == "embedded":
        return handle_class(*_embedded(Path(rest or DEFAULT_DIR)))
    if scheme == "mongomock":
        return handle_class(*_in_memory(rest.strip("/") or "test"))
    return handle_class(*_server(uri, timeout_ms))


def _embedded(directory: Path) -> tuple[Any, str, Path, Any]:
    from llm_magics.store.embedded import EmbeddedClient

    directory = directory.expanduser().resolve()
    try:
        directory.mkdir(parents=True, exist_ok=True)
        client = EmbeddedClient(directory / "store.sqlite")
    except OSError as error:
        raise DatabaseError(f"cannot open the embedded store in {directory}: {error.strerror}") from None
    return client["default"], f"embedded://{directory}", directory / "artifacts", client


def _in_memory(name: str) -> tuple[Any, str, Path, Any]:
    import mongomock
    from mongomock.store import ServerStore

    from llm_magics.store import linear_cursor

    linear_cursor.install()
    global _memory_server
    if _memory_server is None:
        _memory_server = ServerStore()
    client = mongomock.MongoClient(_store=_memory_server)
    return client[name], f"mongomock://{name}", Path(DEFAULT_DIR).resolve() / "artifacts", client


def _server(uri: str, timeout_ms: int) -> tuple[Any, str, Path, Any]:
    import pymongo
    from pymongo.errors import ConfigurationError, PyMongoError

    try:
        client = pymongo.MongoClient(uri, serverSelectionTimeoutMS=timeout_ms, connectTimeoutMS=timeout_ms)
        client.admin.command("ping")
    except (ConfigurationError, ValueError) as error:  # ValueError: a bad port or IPv6 address
        raise DatabaseError(f"database URI '{redact_text(uri)}': {redact_text(error)}") from None
    except PyMongoError as error:
        hosts = ", ".join(f"{host}:{port}" for host, port in client.topology_description.server_descriptions())
        raise DatabaseError(
            f"cannot reach MongoDB at {hosts or redact_text(uri)} within {timeout_ms / 1000:g} s "
            f"({redact_text(str(error).split(',')[0])}) — is the server running and the URI right?"
        ) from None
    return client.get_default_database("llm_magics"), uri, Path(DEFAULT_DIR).resolve() / "artifacts", client


class DatabaseHandle:
    """A database: ``db["docs"]`` (always the collection) and the rest of the pymongo API on the
    data, plus the package's records in ``store`` and ``show`` / ``execute``.

    An attribute the handle does not have is the pymongo database's (``db.list_collection_names()``);
    a collection that shares a name with one of the handle's attributes is ``db["store"]``.
    """

    def __init__(self, mongo_db: Any, uri: str, artifacts: Path, client: Any = None):
        self.mongo_db = mongo_db
        self.uri = redact_text(uri)
        self._connect_uri = uri  # with its password: only a detached run's process receives it
        self.artifacts = artifacts
        self.client = client
        # how long a finished run keeps retrying writes the database did not take
        self.retry_seconds = 30.0
        self.model_cache = ModelCache()  # shared by every model loaded from this database

    def __repr__(self) -> str:
        return f"{type(self).__name__}('{self.uri}')"

    def __getitem__(self, name: str) -> Any:
        return self.mongo_db[name]

    def __getattr__(self, name: str) -> Any:
        # the rest of the pymongo Database API: list_collection_names, get_collection, ...
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.mongo_db, name)

    @cached_property
    def store(self) -> Store:
        """The package's models, runs, metrics and checkpoints in this database."""
        store = Store(self.mongo_db)
        store.reap()
        return store

    @property
    def downloads(self) -> Path:
        """Where checkpoints stored in the database (GridFS) are cached on this machine."""
        return self.artifacts / ".downloads"

    def show(self, kind: str = "model", name: str | None = None) -> list[Any]:
        """Lists records: ``show("model")`` names; ``show("run", NAME)`` and
        ``show("checkpoint", NAME)`` the records of a model (all runs without a name)."""
        if kind not in _KINDS:
            raise DatabaseError(f"show: kind must be {one_of(_KINDS)}{did_you_mean(kind, _KINDS)}")
        if kind == "model":
            return self.store.model_names()
        if kind == "run":
            return self.store.list_runs(name)
        if name is None:
            raise DatabaseError("show('checkpoint', NAME): name the model")
        return self.store.list_checkpoints(name)

    def execute(self, query: Select | Operation) -> Any:
        """The seed's form: runs ``Collection(NAME).insert_many(docs)``, ``.find(...)`` and the like."""
        return execute(self.mongo_db, query)
