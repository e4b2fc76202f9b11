"""The seed's Python API on a database: ``connect()`` (or ``superduper()``) gives a ``Database``
whose ``load`` builds a model from its records and whose ``apply`` trains one."""

from __future__ import annotations

from llm_magics.api.classification import TextClassification
from llm_magics.api.llm import LLM
from llm_magics.config.refs import CheckpointRef
from llm_magics.core.errors import DatabaseError
from llm_magics.runs.run import Run, active_run
from llm_magics.store.database import DatabaseHandle, open_database


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


def load_llm(
    db: DatabaseHandle,
    name: str,
    checkpoint: CheckpointRef | str | int | None = None,
    *,
    trust_remote_code: bool = False,
) -> LLM:
    """Model ``name`` bound to its selected (else latest) or given checkpoint, resolved once here,
    on the base that checkpoint trained on: an ``LLM``, or a ``TextClassification`` for a
    classifier. ``trust_remote_code`` allows a model whose record asks for its own code."""
    db.store.model(name)  # an unknown name fails with the close ones
    record = db.store.checkpoint(name, checkpoint)  # fails now, with the valid choices, if it does not exist
    recorded = db.store.run_base(record["run"])
    cls = TextClassification if recorded.get("task") == TextClassification.task else LLM
    return cls.of_checkpoint(db, name, record, checkpoint, recorded=recorded, trust_remote_code=trust_remote_code)


class Database(DatabaseHandle):
    """A database handle (the pymongo API on the data, ``show``, ``execute``) with the seed's
    ``load`` and ``apply``, and ``run``."""

    def run(self, run_id: str) -> Run:
        """The run with this id, wherever it trains: ``status``, ``step``, ``wait()``, ``stop()``."""
        self.store.run(run_id)  # an unknown id fails with the close ones
        return active_run(run_id) or Run(self, run_id)

    def load(
        self,
        kind: str,
        name: str,
        checkpoint: CheckpointRef | str | int | None = None,
        *,
        trust_remote_code: bool = False,
    ) -> LLM:
        """Loads a model: the selected checkpoint, else the latest; or ``checkpoint`` =
        a step, 'RUN:STEP', 'latest' or 'best'. ``trust_remote_code=True`` allows a model that
        runs its own code (one trained with ``trust_remote_code``)."""
        if kind != "model":
            raise DatabaseError(f"load: only 'model' can be loaded, not {kind!r}")
        return load_llm(self, name, checkpoint, trust_remote_code=trust_remote_code)

    def apply(self, model: LLM) -> LLM:
        """The seed's form: trains ``model`` with its ``trainer`` configuration, then returns it."""
        if model.trainer is None:
            raise DatabaseError("apply: the model has no trainer= configuration to train with")
        model.fit(configuration=model.trainer, db=self).wait()
        return model
