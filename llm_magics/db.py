"""connect(uri) and the Database handle: the pymongo API on the data, plus show / load / apply."""

from __future__ import annotations

import re
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llm_magics.errors import DatabaseError, did_you_mean, one_of

if TYPE_CHECKING:
    from llm_magics.loader import ModelCache
    from llm_magics.store import Store

DEFAULT_DIR = ".llm_magics"
_SCHEMES = ("embedded", "mongomock", "mongodb", "mongodb+srv")
_PASSWORD_IN_NETLOC = re.compile(r"(?P<head>[a-z][a-z0-9+.-]*://[^:/@\s]*:)(?P<secret>[^@\s]*)(?P<tail>@)", re.I)
# an option whose name holds password / pwd / secret / token (tlsCertificateKeyFilePassword=...)
_PASSWORD_IN_QUERY = re.compile(r"(?P<head>[?&][^=&\s]*(?:password|pwd|secret|token)[^=&\s]*=)[^&\s]*", re.I)
# a property inside an option's value (authMechanismProperties=AWS_SESSION_TOKEN:...)
_SECRET_PROPERTY = re.compile(r"(?P<head>[=,][a-z_]*(?:password|secret|token)[a-z_]*(?::|%3A))[^,&\s]*", re.I)
MASK = "***"
# tokenizer settings named like secrets that are not
_NOT_SECRET = frozenset({"bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token"})
# one in-memory server per process, shared by every mongomock:// handle (like a real server)
_memory_server: Any = None


def redact(text: str) -> str:
    """Hides passwords in anything that may contain a URI (a database's, a bucket's)."""
    text = _PASSWORD_IN_NETLOC.sub(r"\g<head>***\g<tail>", str(text))
    text = _SECRET_PROPERTY.sub(r"\g<head>***", text)
    return _PASSWORD_IN_QUERY.sub(r"\g<head>***", text)


def is_secret(key: Any) -> bool:
    """Whether a setting's name says its value is a credential: token, hub_token, password, api_key..."""
    name = str(key).lower().replace("-", "_")
    if name in _NOT_SECRET:
        return False
    return name == "token" or name.endswith("_token") or any(w in name for w in ("password", "secret", "api_key"))


def redacted(value: Any) -> Any:
    """Plain data that is safe to show or store: credentials in URIs hidden, values of secret
    settings masked, other objects (e.g. a Ray ScalingConfig) as their redacted repr."""
    if isinstance(value, dict):
        return {str(k): MASK if is_secret(k) and isinstance(v, str) and v else redacted(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redacted(v) for v in value]
    if isinstance(value, str):
        return redact(value)
    if value is None or isinstance(value, bool | int | float):
        return value
    return redact(repr(value))


def unmasked(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Keyword arguments without the values a record masked: from_pretrained then falls back
    to the HF_TOKEN environment variable or ``hf auth login``."""
    return {k: v for k, v in kwargs.items() if v != MASK}


def connect(uri: str | None = None, *, timeout_ms: int = 3000) -> Database:
    """Opens a database.

    Args:
        uri: None or ``embedded://DIR`` for the persistent embedded store (default
            ``.llm_magics/`` in the working directory); ``mongomock://NAME`` for an in-memory
            one; ``mongodb://...`` / ``mongodb+srv://...`` for a MongoDB server.
        timeout_ms: how long to wait for a MongoDB server before giving up.
    """
    uri = uri or f"embedded://{DEFAULT_DIR}"
    scheme, _, rest = uri.partition("://")
    if scheme not in _SCHEMES or not _:
        raise DatabaseError(
            f"database URI '{redact(uri)}': the scheme must be {one_of(s + '://' for s in _SCHEMES)}"
            f"{did_you_mean(scheme, _SCHEMES)}"
        )
    if scheme == "embedded":
        return _embedded(Path(rest or DEFAULT_DIR))
    if scheme == "mongomock":
        return _in_memory(rest.strip("/") or "test")
    return _server(uri, timeout_ms)


def _embedded(directory: Path) -> Database:
    from llm_magics.embedded import EmbeddedClient

    directory = directory.expanduser().resolve()
    try:
        directory.mkdir(parents=True, exist_ok=True)
        client = EmbeddedClient(directory / "store.sqlite")
    except OSError as error:
        raise DatabaseError(f"cannot open the embedded store in {directory}: {error.strerror}") from None
    return Database(client["default"], f"embedded://{directory}", directory / "artifacts", client)


def _in_memory(name: str) -> Database:
    import mongomock
    from mongomock.store import ServerStore

    global _memory_server
    if _memory_server is None:
        _memory_server = ServerStore()
    client = mongomock.MongoClient(_store=_memory_server)
    return Database(client[name], f"mongomock://{name}", Path(DEFAULT_DIR).resolve() / "artifacts", client)


def _server(uri: str, timeout_ms: int) -> Database:
    import pymongo
    from pymongo.errors import ConfigurationError, PyMongoError

    try:
        client = pymongo.MongoClient(uri, serverSelectionTimeoutMS=timeout_ms, connectTimeoutMS=timeout_ms)
        client.admin.command("ping")
    except (ConfigurationError, ValueError) as error:  # ValueError: a bad port or IPv6 address
        raise DatabaseError(f"database URI '{redact(uri)}': {redact(error)}") from None
    except PyMongoError as error:
        hosts = ", ".join(f"{host}:{port}" for host, port in client.topology_description.server_descriptions())
        raise DatabaseError(
            f"cannot reach MongoDB at {hosts or redact(uri)} within {timeout_ms / 1000:g} s "
            f"({redact(str(error).split(',')[0])}) — is the server running and the URI right?"
        ) from None
    database = client.get_default_database("llm_magics")
    return Database(database, redact(uri), Path(DEFAULT_DIR).resolve() / "artifacts", client)


class Database:
    """A database handle: ``db["docs"]`` and the rest of the pymongo API on the data, plus
    ``show``, ``load`` and ``apply`` for the package's models, runs and checkpoints."""

    def __init__(self, database: Any, uri: str, artifacts: Path, client: Any = None):
        self.database = database
        self.uri = redact(uri)
        self.artifacts = artifacts
        self.client = client
        # how long a finished run keeps retrying writes the database did not take
        self.retry_seconds = 30.0

    def __repr__(self) -> str:
        return f"Database('{self.uri}')"

    def __getitem__(self, name: str) -> Any:
        return self.database[name]

    def __getattr__(self, name: str) -> Any:
        # the rest of the pymongo Database API: list_collection_names, get_collection, ...
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.database, name)

    @property
    def kind(self) -> str:
        return self.uri.partition("://")[0]

    @cached_property
    def store(self) -> Store:
        from llm_magics.store import Store

        store = Store(self.database)
        store.reap()
        return store

    @property
    def downloads(self) -> Path:
        """Where checkpoints stored in the database (GridFS) are cached on this machine."""
        return self.artifacts / ".downloads"

    @cached_property
    def models(self) -> ModelCache:
        """Loaded base models and adapters, shared by every model loaded from this database."""
        from llm_magics.loader import ModelCache

        return ModelCache()

    def show(self, kind: str = "model", name: str | None = None) -> list[Any]:
        """Lists records: ``show("model")`` names; ``show("run", NAME)`` and
        ``show("checkpoint", NAME)`` the records of a model (all runs without a name)."""
        kinds = ("model", "run", "checkpoint")
        if kind not in kinds:
            raise DatabaseError(f"show: kind must be {one_of(kinds)}{did_you_mean(kind, kinds)}")
        if kind == "model":
            return self.store.model_names()
        if kind == "run":
            return self.store.list_runs(name)
        if name is None:
            raise DatabaseError("show('checkpoint', NAME): name the model")
        return sorted(self.store.list_checkpoints(name), key=lambda c: (c["created"], c["step"]))

    def load(self, kind: str, name: str, checkpoint: str | int | None = None) -> Any:
        """Loads a model: the selected checkpoint, else the latest; or ``checkpoint`` =
        a step, 'RUN:STEP', 'latest' or 'best'."""
        if kind != "model":
            raise DatabaseError(f"load: only 'model' can be loaded, not {kind!r}")
        from llm_magics.model import load_model

        return load_model(self, name, checkpoint)

    def checkpoints_widget(self, name: str | None = None, refresh_interval: float = 1.0) -> Any:
        """The checkpoint browser of model ``name``, bound to this database."""
        from llm_magics.widgets.checkpoints import CheckpointBrowser

        return CheckpointBrowser(self, name, refresh_interval)

    def execute(self, query: Any) -> Any:
        """The seed's form: runs ``Collection(NAME).insert_many(docs)``, ``.find(...)`` and the like."""
        from llm_magics.query import execute

        return execute(self.database, query)

    def apply(self, model: Any) -> Any:
        """The seed's form: trains ``model`` with its ``trainer`` configuration, then returns it."""
        if model.trainer is None:
            raise DatabaseError("apply: the model has no trainer= configuration to train with")
        model.fit(configuration=model.trainer, db=self).wait()
        return model


superduper = connect
"""The seed's name for ``connect``: ``db = superduper("mongomock://test_llm")``."""
