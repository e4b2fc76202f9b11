"""lm-evaluation-harness tasks on stored checkpoints (``%llm_eval NAME --harness TASKS``), an
optional extra: ``pip install 'llm_magics[harness]'``.

The checkpoint (its adapter on its base, as ``%llm_predict`` loads it) runs the harness's tasks:
its own (``--tasks-dir DIR`` of task YAML files, e.g. over a local JSONL file) or the harness's
built-in ones (which fetch their datasets from the Hub). Each task's metrics are recorded like
``eval_generate``'s (``eval_TASK/METRIC`` on the checkpoint's record, under the key of the
settings; reused when asked again the same way), and each document's sample as a scored example.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llm_magics.config.refs import CheckpointRef
from llm_magics.core.errors import ConfigError, ModelError, did_you_mean
from llm_magics.models.checkpoint import checkpoint_model
from llm_magics.models.loader import load_cached

if TYPE_CHECKING:
    from llm_magics.store.database import DatabaseHandle

Progress = Callable[[str, int, int], None]
_INSTALL = "pip install 'llm_magics[harness]'"


def harness_tasks(tasks: list[str], tasks_dir: str | None) -> Any:
    """lm-eval's ``TaskManager`` for ``tasks_dir`` (or its built-in tasks), the names checked."""
    try:
        from lm_eval.tasks import TaskManager
    except ImportError:
        raise ModelError(f"--harness needs lm-evaluation-harness — {_INSTALL}") from None
    if tasks_dir is not None and not Path(tasks_dir).expanduser().is_dir():
        raise ConfigError(f"--tasks-dir: {tasks_dir!r} is not a directory of task YAML files")
    manager = TaskManager(include_path=str(Path(tasks_dir).expanduser()) if tasks_dir else None,
                          include_defaults=tasks_dir is None)  # fmt: skip
    known = manager.all_tasks
    unknown = [task for task in tasks if task not in known]
    if unknown:
        where = f"in {tasks_dir}" if tasks_dir else "among lm-eval's tasks"
        hint = did_you_mean(unknown[0], known) or (f"; it has {', '.join(known[:8])}" if known else "")
        raise ConfigError(f"--harness: no task {unknown[0]!r} {where}{hint}")
    return manager


def run_harness(
    db: DatabaseHandle,
    name: str,
    ref: CheckpointRef | str | int | None,
    tasks: list[str],
    *,
    every: bool = False,
    tasks_dir: str | None = None,
    limit: int | None = None,
    batch_size: int = 8,
    progress: Progress | None = None,
    trust_remote_code: bool = False,
) -> list[dict[str, Any]]:
    """Runs ``tasks`` on checkpoint ``ref`` of ``name`` (``every``: all of them); returns one
    ``{checkpoint, run, step, scores, missing, count, reused}`` per checkpoint."""
    manager = harness_tasks(tasks, tasks_dir)
    records = db.store.list_checkpoints(name) if every else [db.store.checkpoint(name, ref)]
    settings = {"harness": tasks, "tasks_dir": tasks_dir, "limit": limit, "task_files": _task_files(tasks_dir)}
    key = "harness-" + hashlib.blake2b(json.dumps(settings, sort_keys=True).encode(), digest_size=8).hexdigest()
    return [
        _score(db, name, record, manager, tasks, settings, key, limit, batch_size, progress, trust_remote_code)
        for record in records
    ]


def _task_files(tasks_dir: str | None) -> str | None:
    """A digest of the task directory's YAML files: a changed task is evaluated again."""
    if tasks_dir is None:
        return None
    digest = hashlib.blake2b(digest_size=8)
    for path in sorted(Path(tasks_dir).expanduser().rglob("*.yaml")):
        digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()


def _score(
    db: DatabaseHandle,
    name: str,
    record: dict[str, Any],
    manager: Any,
    tasks: list[str],
    settings: dict[str, Any],
    key: str,
    limit: int | None,
    batch_size: int,
    progress: Progress | None,
    trust_remote_code: bool,
) -> dict[str, Any]:
    import lm_eval
    from lm_eval.models.huggingface import HFLM

    checkpoint = str(record["_id"])
    summary = {"checkpoint": checkpoint, "run": record["run"], "step": record.get("step")}
    known: dict[str, Any] = record["evaluations"] if isinstance(record.get("evaluations"), dict) else {}
    if isinstance(known.get(key), dict):
        return {**summary, **{k: known[key].get(k) for k in ("scores", "missing", "count")}, "reused": True}
    if progress is not None:
        progress(checkpoint, 0, 1)
    stored = checkpoint_model(db, name, record, trust_remote_code=trust_remote_code)
    loaded = load_cached(db.model_cache, stored.base)
    with loaded.using(stored.adapter) as model:
        model_device = str(model.device)
        lm = HFLM(pretrained=model, tokenizer=loaded.tokenizer, batch_size=batch_size, device=model_device)
        found = lm_eval.simple_evaluate(
            model=lm, tasks=tasks, task_manager=manager, limit=limit, log_samples=True, bootstrap_iters=0
        )
    scores, rows = _results(found or {}, tasks)
    evaluation = {"scores": scores, "missing": {}, "count": len(rows), "settings": settings, "step": record.get("step")}
    fields = {"run": record["run"], "model": name, "checkpoint": checkpoint, "step": record.get("step"), "key": key}
    db.store.add_evaluations([{**fields, **row} for row in rows], {"checkpoint": checkpoint, "key": key,
                                                                    "evaluation": evaluation})  # fmt: skip
    if progress is not None:
        progress(checkpoint, 1, 1)
    return {**summary, "scores": scores, "missing": {}, "count": len(rows), "reused": False}


def _results(found: dict[str, Any], tasks: list[str]) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """Each task's numbers as ``TASK/METRIC`` (lm-eval's ``,none`` filter suffix dropped, its
    standard errors left out), and each document's sample as a scored example."""
    scores: dict[str, float] = {}
    for task, metrics in (found.get("results") or {}).items():
        for metric, value in metrics.items():
            named = metric.removesuffix(",none")
            if isinstance(value, int | float) and not isinstance(value, bool) and "stderr" not in named:
                scores[f"{task}/{named}".replace(".", "_")] = float(value)
    rows: list[dict[str, Any]] = []
    for task in tasks:
        for sample in (found.get("samples") or {}).get(task, []):
            metrics = sample.get("metrics") or []
            values = {f"{task}/{m}": float(sample[m]) for m in metrics if isinstance(sample.get(m), int | float)}
            arguments = sample.get("arguments") or [[""]]
            rows.append(
                {
                    "index": len(rows),
                    "id": f"{task}:{sample.get('doc_id')}",
                    "prompt": str(arguments[0][0]) if arguments and arguments[0] else "",
                    "reference": str(_reference(sample)),
                    "prediction": str(_prediction(sample)),
                    "scores": values,
                }
            )
    return scores, rows


def _reference(sample: dict[str, Any]) -> Any:
    """A generation task's expected answer, or a multiple-choice task's right choice."""
    target, choices = sample.get("target"), [a[1] for a in sample.get("arguments") or [] if len(a) > 1]
    return choices[target] if isinstance(target, int) and 0 <= target < len(choices) else target


def _prediction(sample: dict[str, Any]) -> Any:
    """A generation task's answer, or a multiple-choice task's likeliest choice."""
    responses = sample.get("filtered_resps") or []
    if responses and all(isinstance(r, list | tuple) and r and isinstance(r[0], float) for r in responses):
        best = max(range(len(responses)), key=lambda i: responses[i][0])
        choices = [a[1] for a in sample.get("arguments") or []]
        return choices[best] if best < len(choices) else best
    return responses[0] if responses else ""
