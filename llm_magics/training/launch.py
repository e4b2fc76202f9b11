"""From a validated configuration to a started run: check everything, then write, then train.

``plan`` does every check that can fail (model path, data, arguments, resume point) without
writing anything, so a rejected run leaves no record and no directory. ``launch`` writes the
records and hands the job to a runner.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llm_magics.artifacts import local_copy
from llm_magics.errors import ConfigError, RunError
from llm_magics.loader import BaseModel, check_adapter, check_model_path, check_target_modules, load_tokenizer
from llm_magics.store import now

if TYPE_CHECKING:
    from llm_magics.config import LLMTrainingConfiguration
    from llm_magics.data import TrainingSet
    from llm_magics.db import Database
    from llm_magics.run import Run

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
BACKENDS = ("kernel", "thread", "ray")


def check_name(name: str, what: str = "model name") -> str:
    """Names become directory names: letters, digits, '.', '_' and '-', no '..'."""
    if not isinstance(name, str) or not _NAME.fullmatch(name) or ".." in name:
        raise ConfigError(f"{what} {name!r}: use letters, digits, '.', '_' and '-' (at most 100, no '..' or '/')")
    return name


@dataclass
class Plan:
    """A run that passed every check and has not written anything yet."""

    name: str
    config: LLMTrainingConfiguration
    base: BaseModel
    data: TrainingSet
    backend: str
    db: Database
    resume_from: dict[str, Any] | None = None
    adapter: str | None = None

    @property
    def template(self) -> dict[str, Any]:
        return self.data.format.to_dict()


def plan(
    name: str,
    config: LLMTrainingConfiguration,
    db: Database,
    *,
    transform: Callable[[dict], Any] | None = None,
    backend: str | None = None,
    resume: str | int | bool | None = None,
) -> Plan:
    """Checks a run; raises a user error, having written nothing, if it cannot start."""
    check_name(name)
    backend = backend or config.backend or ("ray" if config.runs_on_ray else "kernel")
    path = check_model_path(config.model)
    resume_from = _resume_point(db, name, resume)
    adapter = resolve_adapter(db, config.adapter_id)
    model_kwargs, tokenizer_kwargs = _remote_code(config)
    tokenizer = load_tokenizer(path, tokenizer_kwargs)
    from llm_magics.data import build

    data = build(db, config, tokenizer, transform)
    if backend != "ray":
        config.training_arguments(output_dir=str(db.artifacts))  # the trainer's own checks
    base = BaseModel(path, config.bits, config.task, model_kwargs, tokenizer_kwargs, data.labels)
    if config.use_lora and config.lora_target_modules and adapter is None and resume_from is None:
        check_target_modules(base, config.lora_target_modules)
    return Plan(name, config, base, data, backend, db, resume_from, adapter)


def _remote_code(config: LLMTrainingConfiguration) -> tuple[dict[str, Any], dict[str, Any]]:
    """``trust_remote_code: true`` lets the model's and the tokenizer's own code run; off by default."""
    model_kwargs, tokenizer_kwargs = dict(config.model_kwargs), dict(config.tokenizer_kwargs)
    if config.trust_remote_code:
        model_kwargs.setdefault("trust_remote_code", True)
        tokenizer_kwargs.setdefault("trust_remote_code", True)
    return model_kwargs, tokenizer_kwargs


def _resume_point(db: Database, name: str, resume: str | int | bool | None) -> dict[str, Any] | None:
    if resume is None or resume is False:
        return None
    record = db.store.checkpoint(name, "latest" if resume is True else resume)
    return {**record, "path": str(local_copy(db.store.db, db.downloads, record, for_resume=True))}


def resolve_adapter(db: Database, adapter_id: str | None) -> str | None:
    """An adapter directory from a path or ``checkpoint://NAME/STEP``, checked."""
    if adapter_id is None:
        return None
    if adapter_id.startswith("checkpoint://"):
        model, _, ref = adapter_id.removeprefix("checkpoint://").partition("/")
        record = db.store.checkpoint(model, ref or None)
        return str(local_copy(db.store.db, db.downloads, record))
    return str(check_adapter(Path(adapter_id).expanduser()).resolve())


def _upload(config: LLMTrainingConfiguration) -> str | None:
    """What of each checkpoint goes to GridFS: nothing, the weights, or everything."""
    if config.artifacts != "db":
        return None
    return "all" if config.upload_optimizer_state else "weights"


def launch(plan: Plan, *, on_start: Callable[[Run], None] | None = None, quiet: bool | None = None) -> Run:
    """Writes the model and run records and starts training on the plan's backend.

    ``on_start`` gets the run before training begins (to show a view or listen to its state).
    """
    from llm_magics.run import Control, Run, RunState
    from llm_magics.training.recorder import Recorder
    from llm_magics.training.train import TrainJob

    config, db = plan.config, plan.db
    run_id = uuid.uuid4().hex[:8]
    output_dir = Path(config.output_dir or db.artifacts / plan.name).expanduser().resolve() / run_id
    _write_records(plan, run_id, output_dir)
    state = RunState(run_id, plan.name, plan.backend)
    run = Run(db, run_id, state, Control())
    recorder = Recorder(
        db.store,
        state,
        keep=config.save_total_limit,
        template=plan.template,
        log_metrics=config.log_to_db,
        output_dir=str(output_dir),
        grace=db.retry_seconds,
        upload=_upload(config),
    )
    job = TrainJob(
        run_id,
        plan.base,
        config.to_dict(masked=False),  # the trainer needs the real hub_token
        plan.data.train,
        plan.data.valid,
        str(output_dir),
        resume_from=plan.resume_from["path"] if plan.resume_from else None,
        adapter=plan.adapter,
        template=plan.template,
        quiet=config.disable_tqdm is not False if quiet is None else quiet,
    )
    if on_start is not None:
        on_start(run)
    if plan.backend == "kernel":
        from llm_magics.training.local import run_blocking

        run_blocking(job, recorder, run)
    elif plan.backend == "thread":
        from llm_magics.training.local import run_in_thread

        run_in_thread(job, recorder, run)
    else:
        from llm_magics.training.ray import run_on_ray

        run_on_ray(job, recorder, run, config)
    return run


def _write_records(plan: Plan, run_id: str, output_dir: Path) -> None:
    from llm_magics.db import redacted

    config, store = plan.config, plan.db.store
    if plan.backend not in BACKENDS:
        raise RunError(f"backend {plan.backend!r}: must be one of {', '.join(BACKENDS)}")
    store.save_model(
        plan.name,
        base_model=plan.base.path,
        bits=plan.base.bits,
        task=plan.base.task,
        model_kwargs=redacted(plan.base.model_kwargs),  # a masked token is not passed when loading
        tokenizer_kwargs=redacted(plan.base.tokenizer_kwargs),
        labels=plan.data.labels,
        adapter_id=config.adapter_id,
    )
    store.add_run(
        {
            "_id": run_id,
            "model": plan.name,
            "status": "starting",
            "backend": plan.backend,
            "config": config.to_dict(),
            "data": plan.data.selection.to_dict(),
            "format": plan.data.format.kind,
            "counts": plan.data.counts,
            "started": now(),
            "output_dir": str(output_dir),
            "step": 0,
            "total_steps": None,
            "resumed_from": plan.resume_from["_id"] if plan.resume_from else None,
        }
    )
