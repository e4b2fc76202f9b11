"""Generation evaluations (SPEC §12): each scored example in a collection of its own, and each
checkpoint's scores on its record, under the key of the settings that produced them.

An example is written once (its id is the checkpoint, the settings' key and its index), so an
interrupted evaluation resumes from what was written, and a retried write does nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from llm_magics.core.errors import RunError


def insert_examples(collection: Any, records: Iterable[dict[str, Any]]) -> None:
    """Adds scored examples, each ``{checkpoint, key, index, ...}``; one already there is kept."""
    from pymongo.errors import BulkWriteError

    rows = [{"_id": f"{r['checkpoint']}:{r['key']}:{r['index']}", **r} for r in records]
    if not rows:
        return
    try:
        collection.insert_many(rows, ordered=False)
    except BulkWriteError as error:
        if any(e["code"] != 11000 for e in error.details["writeErrors"]):
            raise


def examples(collection: Any, checkpoint: str, key: str | None = None) -> list[dict[str, Any]]:
    """A checkpoint's scored examples (of the settings ``key``; all, if None), in their order."""
    query: dict[str, Any] = {"checkpoint": checkpoint}
    if key is not None:
        query["key"] = key
    found = collection.find(query, {"_id": 0})
    return sorted(found, key=lambda r: (str(r.get("key")), r.get("index") if isinstance(r.get("index"), int) else 0))


def set_scores(checkpoints: Any, checkpoint: str, key: str, evaluation: dict[str, Any]) -> None:
    """Records a checkpoint's scores: under ``evaluations.KEY`` with the settings, and as its
    newest ``metrics`` (``eval_NAME``), which the table, ``@best`` and the comparison read."""
    scores = {f"metrics.eval_{name}": value for name, value in (evaluation.get("scores") or {}).items()}
    done = checkpoints.update_one({"_id": checkpoint}, {"$set": {f"evaluations.{key}": evaluation, **scores}})
    if done.matched_count != 1:
        raise RunError(f"checkpoint {checkpoint!r} is no longer recorded: its scores were not kept")
