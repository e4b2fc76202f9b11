"""The seed's Python API on a database: ``connect()`` (or ``superduper()``) gives a ``Database``
whose ``load`` builds a model from its records and whose ``apply`` trains one."""

from __future__ import annotations

from llm_magics.classification import TextClassification
from llm_magics.db import DatabaseHandle, open_database
from llm_magics.errors import DatabaseError
from llm_magics.model import LLM
from llm_magics.refs import CheckpointRef


def connect(uri: str | None = None, *, timeout_ms: int = 3000) -> Database:
    """Opens a database.

    Args:
        uri: None or ``embedded://DIR`` for the persistent embedded store (default
            ``.llm_magics/`` in the working directory); ``mongomock://NAME`` for an in-memory
            one; ``mongodb://...`` / ``mongodb+srv://...`` for a MongoDB server.
        timeout_ms: how long to wait for a MongoDB server before giving up.
    """
    return open_database(uri, timeout_ms=timeout_ms, cls=Database)


superduper = connect
"""The seed's name for ``connect``: ``db = superduper("mongomock://test_llm")``."""


def load_llm(db: DatabaseHandle, name: str, checkpoint: CheckpointRef | str | int | None = None) -> LLM:
    """Model ``name`` bound to its selected (else latest) or given checkpoint, resolved once here:
    an ``LLM``, or a ``TextClassification`` for a classifier."""
    model = db.store.model(name)
    record = db.store.checkpoint(name, checkpoint)  # fails now, with the valid choices, if it does not exist
    cls = TextClassification if model.get("task") == TextClassification.task else LLM
    return cls.of_checkpoint(db, model, record, checkpoint)


class Database(DatabaseHandle):
    """A database handle (the pymongo API on the data, ``show``, ``execute``) with the seed's
    ``load`` and ``apply``."""

    def load(self, kind: str, name: str, checkpoint: CheckpointRef | str | int | None = None) -> LLM:
        """Loads a model: the selected checkpoint, else the latest; or ``checkpoint`` =
        a step, 'RUN:STEP', 'latest' or 'best'."""
        if kind != "model":
            raise DatabaseError(f"load: only 'model' can be loaded, not {kind!r}")
        return load_llm(self, name, checkpoint)

    def apply(self, model: LLM) -> LLM:
        """The seed's form: trains ``model`` with its ``trainer`` configuration, then returns it."""
        if model.trainer is None:
            raise DatabaseError("apply: the model has no trainer= configuration to train with")
        model.fit(configuration=model.trainer, db=self).wait()
        return model
