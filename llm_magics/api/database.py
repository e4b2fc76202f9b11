"""The seed's Python API on a database: ``connect()`` (or ``superduper()``) gives a ``Database``
whose ``load`` builds a model from its records and whose ``apply`` trains one."""

from __future__ import annotations

from typing import Any

from llm_magics.api.classification import TextClassification
from llm_magics.api.llm import LLM
from llm_magics.config.refs import CheckpointRef
from llm_magics.core.errors import DatabaseError
from llm_magics.runs.run import Run, active_run
from llm_magics.runs.target import resolve_run
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


def data_report(
    db: DatabaseHandle,
    collection: str,
    *,
    model: str | None = None,
    max_length: int | None = None,
    keys: dict[str, Any] | None = None,
) -> Any:
    """``%llm_data COLLECTION [--model M] [--max-length N]``: the data report; ``model``: a model
    path, or a stored model's name (its base's tokenizer), for the token lengths and the label mask."""
    from llm_magics.config.data_keys import DataKeys
    from llm_magics.data.report import data_report as report

    tokenizer = _tokenizer_of(db, model) if model else None
    given = DataKeys(collection=collection, max_length=max_length, **keys) if keys else None
    return report(db.mongo_db, collection, keys=given, tokenizer=tokenizer, max_length=max_length)


def _tokenizer_of(db: DatabaseHandle, model: str) -> Any:
    from llm_magics.models.loader import check_model_path, load_tokenizer

    if db.store.has_model(model.partition("@")[0]):
        from llm_magics.models.checkpoint import stored_model

        base = stored_model(db, model).base
        return load_tokenizer(base.path, base.tokenizer_kwargs)
    return load_tokenizer(check_model_path(model))


class Database(DatabaseHandle):
    """A database handle (the pymongo API on the data, ``show``, ``execute``) with the seed's
    ``load`` and ``apply``, and ``run``."""

    def run(self, target: str) -> Run:
        """The run with this id, or model ``target``'s latest active run (else its latest), wherever
        it trains: ``status``, ``step``, ``wait()``, ``stop()``."""
        run_id = resolve_run(self.store, target).run_id  # an unknown word fails with the close ones
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

    def ingest(self, source: Any, collection: str, **options: Any) -> Any:
        """Writes ``source`` into ``collection``: a JSONL, JSON, CSV/TSV or Parquet file (or a glob of
        them), a folder of .txt / .md files, a dataset saved with ``save_to_disk``, a DataFrame or a
        list of dicts. ``replace``, ``dedupe``, ``skip_bad``: see ``data.ingest.ingest``."""
        from llm_magics.data.ingest import ingest

        return ingest(self.mongo_db, source, collection, **options)

    def data_report(
        self, collection: str, *, model: str | None = None, max_length: int | None = None, **keys: Any
    ) -> Any:
        """What ``collection`` holds and what training will see of it (``data.report``); ``model``:
        a model path or name whose tokenizer measures the token lengths and the label mask; ``keys``:
        the configuration's data keys (prompt, response, messages, X), else those of the format found."""
        return data_report(self, collection, model=model, max_length=max_length, keys=keys or None)

    def apply(self, model: LLM) -> LLM:
        """The seed's form: trains ``model`` with its ``trainer`` configuration, then returns it."""
        if model.trainer is None:
            raise DatabaseError("apply: the model has no trainer= configuration to train with")
        model.fit(configuration=model.trainer, db=self).wait()
        return model
