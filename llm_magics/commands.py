"""What the magics do, as plain functions that work without IPython."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from llm_magics.errors import ConfigError, RunError

if TYPE_CHECKING:
    from pathlib import Path

    from llm_magics.db import Database
    from llm_magics.display import Comparison, DryRun, Table
    from llm_magics.run import Run


def finetune(
    db: Database,
    name: str,
    mapping: dict[str, Any],
    *,
    backend: str | None = None,
    dry_run: bool = False,
    resume: str | int | None = None,
    on_start: Callable[[Run], None] | None = None,
) -> Run | DryRun:
    """Trains model ``name`` with the configuration ``mapping`` (a cell body), or only checks it."""
    from llm_magics.config import LLMTrainingConfiguration
    from llm_magics.training.launch import launch, plan

    config = LLMTrainingConfiguration.from_dict(mapping)
    checked = plan(name, config, db, backend=backend, resume=resume)
    if dry_run:
        return dry_run_report(checked)
    return launch(checked, on_start=on_start)


def dry_run_report(checked: Any) -> DryRun:
    from llm_magics.display import DryRun
    from llm_magics.estimate import estimate
    from llm_magics.loader import load_tokenizer

    data = checked.data
    longest = max(len(ids) for ids in data.train["input_ids"])
    tokenizer = load_tokenizer(checked.base.path, checked.base.tokenizer_kwargs)
    return DryRun(checked, estimate(checked.config, checked.base, longest), tokenizer)


def export(db: Database, target: str, directory: str) -> Path:
    """``%llm_export NAME@STEP DIR``: the checkpoint merged into its base, saved in DIR."""
    name, ref = parse_target(target)
    return db.load("model", name).export(directory, checkpoint=ref)


def parse_target(target: str) -> tuple[str, str | int | None]:
    """'NAME', 'NAME@STEP', 'NAME@best', 'NAME@latest' or 'NAME@RUN:STEP' -> (name, reference)."""
    name, _, ref = target.partition("@")
    if not name:
        raise ConfigError(f"'{target}': name the model, e.g. my-model@best")
    return name, reference(ref) if ref else None


def reference(ref: str) -> str | int:
    """'200' -> 200; '@best' -> 'best'; 'RUN:STEP' as it is."""
    ref = ref.lstrip("@")
    return int(ref) if ref.isdigit() else ref


def predict(
    db: Database,
    target: str,
    prompts: list[str],
    *,
    compare: list[str] | None = None,
    base: bool = False,
    **generate_kwargs: Any,
) -> str | list[str] | Comparison:
    """Generates with a model's checkpoint; with ``compare``, with several, side by side."""
    from llm_magics.display import Comparison
    from llm_magics.model import load_model

    if not prompts:
        raise ConfigError('give a prompt: %llm_predict NAME "prompt" (or the cell body of %%llm_predict NAME)')
    name, ref = parse_target(target)
    if compare:
        answers = {}
        for each in compare:
            answers[each.lstrip("@")] = load_model(db, name, reference(each)).predict(prompts, **generate_kwargs)
        return Comparison(name, prompts, answers)
    llm = load_model(db, name, None if base else ref)
    answers = llm.predict(prompts, **({"adapter": None} if base else {}), **generate_kwargs)
    return answers[0] if len(prompts) == 1 else answers


def runs_table(db: Database, model: str | None = None) -> Table:
    """Every run (or a model's): name, id, status, backend, steps, last loss, started, duration."""
    from llm_magics.display import Table

    if model is not None:
        db.store.model(model)  # an unknown name is an error with the close ones, not an empty table
    rows = []
    for run in db.store.list_runs(model):
        steps = f"{run.get('step', 0)}/{run['total_steps']}" if run.get("total_steps") else str(run.get("step", 0))
        loss = run.get("last_loss")
        duration = run.get("duration")
        rows.append(
            [
                run["model"],
                run["_id"],
                run["status"],
                run.get("backend"),
                steps,
                "" if loss is None else f"{loss:.4g}",
                run["started"].strftime("%Y-%m-%d %H:%M:%S"),
                "" if duration is None else f"{duration:.1f} s",
            ]
        )
    columns = ["name", "run", "status", "backend", "steps", "last loss", "started (UTC)", "duration"]
    return Table(columns, rows, title=f"runs in {db.uri}", css_class="llm-runs")


def stop(db: Database, run_id: str) -> Run:
    """Asks a run training in this process to save a checkpoint and stop."""
    from llm_magics.run import active_run

    run = active_run(run_id)
    if run is None:
        record = db.store.run(run_id)  # names close ids when it does not exist
        raise RunError(f"run {run_id} is not training in this kernel (status: {record['status']})")
    return run.stop()
