"""``%llm_eval`` / ``llm.evaluate``: stored checkpoints scored by generation, old runs included.

Each checkpoint is scored on its run's held-out documents (found from the run's recorded data
settings, as training found them) or on a collection named for it. Its scores are recorded as at
training time, under the key of the settings: asked again with the same settings, they are
reused; an interrupted evaluation resumes from the examples already written. A record is
untrusted: its data settings only ever query the database, and a judge or a notebook metric is
always given by the caller, never taken from a record.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from llm_magics.config.data_keys import DataKeys
from llm_magics.config.eval_generate import EvalGenerate, Judge, parse
from llm_magics.config.refs import CheckpointRef
from llm_magics.core.errors import ModelError
from llm_magics.core.tables import html_table, text_table
from llm_magics.eval.examples import held_out_examples
from llm_magics.eval.scorer import EvalJob, Scorer, eval_job
from llm_magics.models.checkpoint import StoredModel, checkpoint_model, stored_model
from llm_magics.models.loader import BaseModel, check_model_path, load_cached

if TYPE_CHECKING:
    from llm_magics.store.database import DatabaseHandle

Progress = Callable[[str, int, int], None]  # (checkpoint, examples scored, of how many)
_CODE_OPERATORS = ("$where", "$function", "$accumulator")
_TEXT_KEYS = ("prompt", "response", "messages", "chosen", "prompt_template")


def evaluate_checkpoints(
    db: DatabaseHandle,
    name: str,
    ref: CheckpointRef | str | int | None = None,
    *,
    every: bool = False,
    settings: dict[str, Any] | EvalGenerate | None = None,
    progress: Progress | None = None,
    trust_remote_code: bool = False,
) -> list[dict[str, Any]]:
    """Scores checkpoint ``ref`` of model ``name`` (``every``: all its checkpoints); returns one
    ``{checkpoint, run, step, scores, missing, count, reused}`` per checkpoint."""
    block = parse(settings if settings is not None else {})
    records = db.store.list_checkpoints(name) if every else [db.store.checkpoint(name, ref)]
    if not records:
        db.store.checkpoint(name, ref)  # raises the clearest "no checkpoints" error
    judges = {m.name: judge_model(db, m, trust_remote_code) for m in block.metrics if isinstance(m, Judge)}
    jobs: dict[str, EvalJob] = {}  # per run: its held-out examples
    results = []
    for record in records:
        run_id = record["run"]
        if run_id not in jobs:
            examples = run_examples(db, run_id, block)
            jobs[run_id] = eval_job(block, examples, judges)
        results.append(_score(db, name, record, jobs[run_id], progress, trust_remote_code))
    return results


def judge_model(db: DatabaseHandle, judge: Judge, trust_remote_code: bool = False) -> StoredModel:
    """A judge's model: a stored one (``NAME`` or ``NAME@REF``), else a model path."""
    if db.store.has_model(judge.model.partition("@")[0]):
        return stored_model(db, judge.model, trust_remote_code=trust_remote_code)
    return StoredModel(BaseModel(check_model_path(judge.model)), None, None)


def run_examples(db: DatabaseHandle, run_id: str, block: EvalGenerate) -> list[dict[str, Any]]:
    """The examples a run's checkpoints are scored on: its held-out split, or ``block.select``."""
    keys, reference = run_data_keys(db.store.run(run_id))
    reference = block.reference or reference
    if reference is None:
        raise ModelError(
            f"run {run_id} trained without a response field: name the field holding the expected answers "
            "(--reference FIELD, or reference= in Python)"
        )
    return held_out_examples(db.mongo_db, keys, reference, block.limit, block.select)


def run_data_keys(run: dict[str, Any]) -> tuple[DataKeys, str | None]:
    """The data settings a run recorded, checked like any input (a record is untrusted), and the
    field of its expected answers (None if it has none)."""
    config: dict[str, Any] = run["config"] if isinstance(run.get("config"), dict) else {}
    text: dict[str, str | None] = {k: v if isinstance(v := config.get(k), str) else None for k in _TEXT_KEYS}
    select, data = config.get("select"), config.get("data")
    collection = select.get("collection") if isinstance(select, dict) else select if isinstance(select, str) else data
    if not isinstance(collection, str):
        raise ModelError(f"run {run.get('_id')}: its record names no collection; evaluate it with --on COLLECTION")
    fraction, seed, method = config.get("valid_fraction"), config.get("seed"), config.get("method")
    method = method if method in ("sft", "dpo", "orpo", "simpo", "kto", "grpo") else "sft"
    keys = DataKeys(
        collection=collection,
        select={"collection": collection, "filter": dict(select.get("filter") or {})}
        if isinstance(select, dict)
        else None,
        method=str(method),
        seed=seed if isinstance(seed, int) and not isinstance(seed, bool) else 42,
        valid_fraction=fraction if isinstance(fraction, float | int) and not isinstance(fraction, bool) else None,
        evaluate=config.get("eval_strategy") not in (None, "no"),
        prompt=text["prompt"] or _fields(config.get("prompt")),
        response=text["response"],
        messages=text["messages"],
        chosen=text["chosen"],
        prompt_template=text["prompt_template"],
    )
    if method in ("dpo", "orpo", "simpo"):
        return keys, text["chosen"]
    if method == "sft":
        return keys, text["messages"] or text["response"]
    return keys, None


def _fields(value: Any) -> list[str] | None:
    """A recorded list of field names (alpaca's prompt), or None."""
    return list(value) if isinstance(value, list) and value and all(isinstance(v, str) for v in value) else None


def _recorded_filter(select: dict[str, Any]) -> dict[str, Any]:
    """A recorded query, as plain data only: one that would run code on the server is refused."""
    found = select.get("filter")
    if not isinstance(found, dict):
        return {}
    if any(word in repr(found) for word in _CODE_OPERATORS):
        raise ModelError("the run's recorded filter runs code on the database server; evaluate it with --on COLLECTION")
    return found


def _score(
    db: DatabaseHandle,
    name: str,
    record: dict[str, Any],
    job: EvalJob,
    progress: Progress | None,
    trust_remote_code: bool,
) -> dict[str, Any]:
    checkpoint = str(record["_id"])
    summary = {"checkpoint": checkpoint, "run": record["run"], "step": record.get("step")}
    known = (record.get("evaluations") or {}).get(job.key) if isinstance(record.get("evaluations"), dict) else None
    if isinstance(known, dict) and known.get("count") == len(job.examples):
        return {**summary, **_shown(known), "reused": True}
    done = db.store.checkpoint_evaluations(checkpoint, job.key)
    stored = checkpoint_model(db, name, record, trust_remote_code=trust_remote_code)
    loaded = load_cached(db.model_cache, stored.base)
    total, scored = len(job.examples), len(done)
    if progress is not None:
        progress(checkpoint, scored, total)

    def written(rows: list[dict[str, Any]]) -> None:
        nonlocal scored
        db.store.add_evaluations([_row(record, job.key, row) for row in rows])
        scored += len(rows)
        if progress is not None:
            progress(checkpoint, scored, total)

    with loaded.using(stored.adapter) as model:
        result = Scorer(job)(model, loaded.tokenizer, stored.template, done=done, progress=written)
    evaluation = result.record(job, record.get("step"))
    db.store.add_evaluations([], {"checkpoint": checkpoint, "key": job.key, "evaluation": evaluation})
    return {**summary, **_shown(evaluation), "reused": False}


def _row(record: dict[str, Any], key: str, row: dict[str, Any]) -> dict[str, Any]:
    fields = {"run": record["run"], "model": record.get("model"), "checkpoint": str(record["_id"])}
    return {**fields, "step": record.get("step"), "key": key, **row}


def _shown(evaluation: dict[str, Any]) -> dict[str, Any]:
    return {key: evaluation.get(key) for key in ("scores", "missing", "count")}


class Evaluation:
    """What ``%llm_eval`` scored: a row per checkpoint, a column per metric, how many examples,
    which scores were missing and whether they were reused."""

    def __init__(self, model: str, results: list[dict[str, Any]]):
        self.model, self.results = model, results
        self.metrics = list(dict.fromkeys(name for r in results for name in r.get("scores") or {}))

    def _rows(self) -> tuple[list[str], list[list[Any]]]:
        columns = ["checkpoint", "step", *self.metrics, "examples", "missing", "scored"]
        rows = [
            [
                r["checkpoint"],
                r.get("step"),
                *(_number((r.get("scores") or {}).get(m)) for m in self.metrics),
                r.get("count"),
                ", ".join(f"{k}: {v}" for k, v in (r.get("missing") or {}).items()),
                "reused" if r.get("reused") else "now",
            ]
            for r in self.results
        ]
        return columns, rows

    def to_frame(self) -> Any:
        """The scores as a pandas DataFrame: a row per checkpoint, a column per metric."""
        import pandas as pd

        return pd.DataFrame(
            [{"checkpoint": r["checkpoint"], "step": r.get("step"), **(r.get("scores") or {})} for r in self.results]
        )

    def __repr__(self) -> str:
        return text_table(*self._rows())

    def _repr_html_(self) -> str:
        return html_table(*self._rows(), css_class="llm-evaluation")


def _number(value: Any) -> str:
    return "—" if value is None else f"{value:.4g}" if isinstance(value, int | float) else str(value)
