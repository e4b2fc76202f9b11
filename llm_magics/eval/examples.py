"""The documents a checkpoint is scored on: each one's prompt, its expected answer, its fields.

By default they are the run's own held-out split, found as training finds it (``_fold: valid``,
else the same share of documents chosen by the same hash of their ids), so evaluation never
scores a document the run trained on. ``eval_generate.select`` names documents of their own.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from llm_magics.core.errors import DataError
from llm_magics.data.formats import as_messages
from llm_magics.data.training_set import (
    Format,
    Selection,
    bucket,
    check_collection,
    documents,
    held_out,
    joined_prompt,
)

if TYPE_CHECKING:
    from llm_magics.config.data_keys import DataKeys


def held_out_examples(
    mongo_db: Any,
    keys: DataKeys,
    reference: str,
    limit: int,
    select: dict[str, Any] | None = None,
    transform: Callable[[dict], Any] | None = None,
) -> list[dict[str, Any]]:
    """Up to ``limit`` examples ``{id, prompt, reference, document}`` (a prompt is text or a chat)."""
    own = select is not None
    selection = (
        Selection(select["collection"], dict(select.get("filter") or {}), None, select.get("limit"))
        if (select is not None)
        else Selection.of(keys)
    )
    check_collection(mongo_db, selection)
    fmt = Format(kind="examples", fields=())
    marked, unassigned = [], []
    for docs in documents(mongo_db, selection, fmt, transform, every_field=True):
        for doc in docs:
            if own or doc.get("_fold") == "valid":
                marked.append(doc)
            elif doc.get("_fold") is None:
                unassigned.append((bucket(doc, keys.seed), doc))
    if not own:
        cutoff = held_out([b for b, _ in unassigned], keys, marked_valid=len(marked))
        marked += [doc for b, doc in unassigned if b < cutoff]
    if not marked:
        raise DataError(
            "eval_generate: no held-out document to score — mark some with _fold: valid, set valid_fraction, "
            "or give eval_generate.select"
        )
    return [_example(doc, keys, reference) for doc in marked[:limit]]


def _example(doc: dict[str, Any], keys: DataKeys, reference: str) -> dict[str, Any]:
    where = f"(document {doc.get('_id')})"
    if keys.messages and reference == keys.messages:
        chat = as_messages(doc.get(keys.messages) or [])
        turns = [i for i, m in enumerate(chat) if isinstance(m, dict) and m.get("role") == "assistant"]
        if not turns:
            raise DataError(f"{keys.messages}: a held-out chat has no assistant turn to compare with {where}")
        prompt: Any = chat[: turns[-1]]
        answer = chat[turns[-1]].get("content")
    else:
        prompt = doc.get(keys.prompt) if isinstance(keys.prompt, str) else None
        if isinstance(keys.prompt, list) and doc.get(keys.prompt[0]) is not None:  # alpaca's parts, joined
            prompt = joined_prompt((*(doc.get(p) or "" for p in keys.prompt), None))[0]
        answer = doc.get(reference)
        if isinstance(answer, list):  # a chat answer: its assistant turn's text
            answer = next((m.get("content") for m in answer if isinstance(m, dict)), None)
    if prompt is None or answer is None:
        missing = keys.prompt if prompt is None else reference
        raise DataError(f"{missing}: missing in a held-out document {where} — evaluation compares it")
    if not isinstance(answer, str):
        raise DataError(f"{reference}: the expected answer must be text, got {type(answer).__name__} {where}")
    fields = {k: v for k, v in doc.items() if k not in ("_id", "_fold")}
    return {"id": str(doc.get("_id")), "prompt": prompt, "reference": answer, "document": fields}
