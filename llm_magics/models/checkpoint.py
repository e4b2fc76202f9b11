"""A stored checkpoint as a model to load: the base its run trained on, its verified files, its
prompt format. Records are untrusted: a checkpoint's files are read only from its run's own
directory (or GridFS), and a record cannot ask for the model's own code to run."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from llm_magics.config.refs import parse_target
from llm_magics.core.errors import ModelError
from llm_magics.models.loader import BaseModel, check_model_path
from llm_magics.store.artifacts import is_adapter

if TYPE_CHECKING:
    from llm_magics.store.database import DatabaseHandle


@dataclass(frozen=True)
class StoredModel:
    """What generates for a checkpoint: a base, the adapter on it (None: the checkpoint is a whole
    model, its base's path replaced) and the prompt format it trained with."""

    base: BaseModel
    adapter: str | None
    template: dict[str, Any] | None
    record: dict[str, Any] | None = None


def stored_model(db: DatabaseHandle, target: str, *, trust_remote_code: bool = False) -> StoredModel:
    """``NAME@REF`` of ``db`` as a model to load."""
    name, ref = parse_target(target)
    record = db.store.checkpoint(name, ref)
    return checkpoint_model(db, name, record, trust_remote_code=trust_remote_code)


def checkpoint_model(
    db: DatabaseHandle, name: str, record: dict[str, Any], *, trust_remote_code: bool = False
) -> StoredModel:
    base = base_of(name, record, db.store.run_base(record["run"]), trust_remote_code=trust_remote_code)
    path = db.store.local_checkpoint(record, db.downloads)
    if is_adapter(path):
        return StoredModel(base, str(path), record.get("template"), record)
    return StoredModel(dataclasses.replace(base, path=str(path)), None, record.get("template"), record)


def base_of(name: str, record: dict[str, Any], recorded: dict[str, Any], *, trust_remote_code: bool) -> BaseModel:
    """The base that checkpoint ``record`` of model ``name`` trained on, as its run recorded it.

    A record that asks for the model's own code (``trust_remote_code``) loads only when the loading
    user allows it: whoever can write the database must not choose what code runs here.
    """
    model_kwargs, tokenizer_kwargs = (
        dict(recorded.get("model_kwargs") or {}),
        dict(recorded.get("tokenizer_kwargs") or {}),
    )
    asks = any(kwargs.pop("trust_remote_code", False) for kwargs in (model_kwargs, tokenizer_kwargs))
    if asks and not trust_remote_code:
        raise ModelError(
            f"model '{name}' (run {record['run']}) was trained with trust_remote_code: its model runs its own "
            "Python code; load it only if you trust that code: db.load(..., trust_remote_code=True), "
            "%llm_predict --trust-remote-code or %config LLMMagics.trust_remote_code = True"
        )
    if asks:
        model_kwargs["trust_remote_code"] = tokenizer_kwargs["trust_remote_code"] = True
    return BaseModel(
        check_model_path(recorded["model"]),
        recorded.get("bits"),
        recorded.get("task") or "causal-lm",
        model_kwargs,
        tokenizer_kwargs,
        list(recorded.get("labels") or []),
    )
