"""From a validated configuration to a started run: check everything, then write, then train.

``plan_run`` does every check that can fail (name, where it trains, model path, data, arguments,
resume point) without writing anything, so a rejected run leaves no record and no directory.
``start_run`` writes the records and hands the job to a runner.
"""

from __future__ import annotations

import dataclasses
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llm_magics.config.eval_generate import best_by
from llm_magics.config.refs import LATEST, CheckpointRef, parse_ref
from llm_magics.core.errors import ConfigError, DataWarning, did_you_mean, one_of
from llm_magics.core.secrets import masked
from llm_magics.models.loader import BaseModel, check_model_path, check_target_modules, load_tokenizer, resolve_adapter
from llm_magics.runs import logs
from llm_magics.runs.run import Control, Run, RunState
from llm_magics.store.records import now
from llm_magics.store.run_dirs import claim
from llm_magics.training.evaluation import plan_evaluation
from llm_magics.training.recorder import Recorder
from llm_magics.training.train import TrainJob, trainer_arguments

if TYPE_CHECKING:
    from llm_magics.config.configuration import LLMTrainingConfiguration
    from llm_magics.data.training_set import TrainingSet
    from llm_magics.eval.scorer import EvalJob
    from llm_magics.store.database import DatabaseHandle
    from llm_magics.training.rewards import Reward, Tried

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
BACKENDS = ("kernel", "thread", "process", "ray", "ray-job")


def check_name(name: str, what: str = "model name") -> str:
    """Names become directory names: letters, digits, '.', '_' and '-', no '..'."""
    if not isinstance(name, str) or not _NAME.fullmatch(name) or ".." in name:
        raise ConfigError(f"{what} {name!r}: use letters, digits, '.', '_' and '-' (at most 100, no '..' or '/')")
    return name


@dataclass(frozen=True)
class Placement:
    """Where a run trains: a backend, and the Ray cluster's address for the 'ray' backend."""

    backend: str = "kernel"
    ray_address: str | None = None


def placement(
    config: LLMTrainingConfiguration,
    *,
    backend: str | None = None,
    ray_address: str | None = None,
    settings: Placement = Placement(),
    detach: bool = False,
) -> Placement:
    """Decides where a run trains: what the caller asks (the magic's flags, ``fit``'s arguments)
    first, then the configuration (``backend``, ``on_ray``, ``ray_address``), then the settings
    (``%config LLMMagics``). ``detach``: in a process of its own, or as a Ray Job when on Ray."""
    if detach and backend in ("kernel", "thread"):
        raise ConfigError(f"detach: a detached run trains in a process of its own or as a Ray Job, not on {backend!r}")
    if ray_address is not None and backend is None:
        backend = "ray"
    backend = backend or config.backend or ("ray" if config.on_ray or config.ray_address else settings.backend)
    if backend not in BACKENDS:
        raise ConfigError(f"backend {backend!r}: must be {one_of(BACKENDS)}{did_you_mean(str(backend), BACKENDS)}")
    if detach:  # the rest says where its process runs: here, or on Ray
        backend = "ray-job" if backend in ("ray", "ray-job") else "process"
    if backend not in ("ray", "ray-job"):
        return Placement(backend)
    return Placement(backend, ray_address or config.ray_address or settings.ray_address)


@dataclass
class Plan:
    """A run that passed every check and has not written anything yet."""

    name: str
    run_id: str
    config: LLMTrainingConfiguration
    recorded_config: dict[str, Any]  # the configuration as the run's record keeps it (secrets masked)
    base: BaseModel
    data: TrainingSet
    where: Placement
    db: DatabaseHandle
    output_dir: Path
    args: Any | None  # the trainer's SFTConfig, built and checked here; None when a Ray worker builds it
    resume_from: dict[str, Any] | None = None
    adapter: str | None = None
    rewards: list[Reward] = dataclasses.field(default_factory=list)  # grpo's functions
    packed_rewards: list[bytes] | None = None  # the same, to travel to a process or a Ray worker
    tried: Tried | None = None  # what the functions answered on the base model's completion
    evaluation: EvalJob | None = None  # eval_generate: the held-out examples, metrics and judges
    keep_data: Callable[[], None] | None = None  # keeps the tokenized sets for the next run (data.cache)
    config_set: list[str] = dataclasses.field(default_factory=list)  # its keys set away from their defaults

    @property
    def template(self) -> dict[str, Any]:
        return self.data.format.to_dict()


def plan_run(
    name: str,
    config: LLMTrainingConfiguration,
    db: DatabaseHandle,
    *,
    transform: Callable[[dict], Any] | None = None,
    backend: str | None = None,
    ray_address: str | None = None,
    settings: Placement = Placement(),
    resume: CheckpointRef | str | int | bool | None = None,
    detach: bool = False,
) -> Plan:
    """Checks a run; raises a user error, having written nothing, if it cannot start."""
    check_name(name)
    where = placement(config, backend=backend, ray_address=ray_address, settings=settings, detach=detach)
    if where.backend in ("process", "ray-job"):
        from llm_magics.training import detached, ray_job

        detached.check_database(db)
        if where.backend == "ray-job":
            ray_job.check_database(db, where.ray_address)
            ray_job.client(where.ray_address)  # a cluster to submit to, or a short error
    if where.ray_address != config.ray_address and where.backend in ("ray", "ray-job"):
        config = dataclasses.replace(config, ray_address=where.ray_address)  # recorded with the run
    path = check_model_path(config.model)
    resume_from = _resume_point(db, name, resume if resume is not None else config.resume_from_checkpoint)
    if resume_from is not None:
        _check_same_base(db, resume_from, path)
    adapter = resolve_adapter(db, config.adapter_id)
    model_kwargs, tokenizer_kwargs = _loading_kwargs(config)
    tokenizer = load_tokenizer(path, tokenizer_kwargs)
    from llm_magics.data.cache import cached_build

    # the configuration is read here, once, for what the data and the run's record need of it
    keys, (recorded, changed) = config.data_keys(), config.recorded()
    keep_data = None
    if config.method == "sft":  # tokenized once per documents, tokenizer and keys (data.cache)
        cache = db.artifacts.parent / "cache" / "tokenized"
        data, keep_data = cached_build(db.mongo_db, keys, tokenizer, transform, cache)
    else:
        from llm_magics.data import preference

        data = preference.build(db.mongo_db, keys, tokenizer, transform)
    _warn_about(data, config)
    run_id = uuid.uuid4().hex[:8]
    output_dir = Path(config.output_dir or db.artifacts / name).expanduser().resolve() / run_id
    # the trainer's own checks run here; a Ray worker builds its arguments where it trains
    args = None if where.backend in ("ray", "ray-job") else trainer_arguments(config, str(output_dir))
    base = BaseModel(path, config.bits, config.task, model_kwargs, tokenizer_kwargs, data.labels)
    if config.use_lora and config.lora_target_modules and adapter is None and resume_from is None:
        check_target_modules(base, config.lora_target_modules)
    plan = Plan(name, run_id, config, recorded, base, data, where, db, output_dir, args, resume_from, adapter)
    plan.keep_data, plan.config_set = keep_data, changed
    if config.method == "grpo":
        _plan_rewards(plan, tokenizer, resume_from)
    if config.eval_generate is not None:
        plan.evaluation = plan_evaluation(config, db, transform, travels=where.backend not in ("kernel", "thread"))
    return plan


def _warn_about(data: TrainingSet, config: LLMTrainingConfiguration) -> None:
    """What the data report would find and training would hide: documents cut at max_length, and
    documents that repeat another one (``%llm_data`` names them)."""
    import warnings

    counts = data.counts
    total = counts.get("train_docs", 0) + counts.get("valid_docs", 0)
    if counts.get("cut"):
        warnings.warn(
            f"data: {counts['cut']} of {total} documents are longer than max_length {config.max_length} and are cut "
            f"there (what follows is not trained) — %llm_data {data.selection.collection} names them",
            DataWarning,
            stacklevel=3,
        )
    if counts.get("duplicates"):
        warnings.warn(
            f"data: {counts['duplicates']} exact duplicate document(s) — %llm_data {data.selection.collection} "
            "names them (%llm_ingest --dedupe keeps them out)",
            DataWarning,
            stacklevel=3,
        )


def _plan_rewards(plan: Plan, tokenizer: Any, resume_from: dict[str, Any] | None) -> None:
    """GRPO's functions: resolved, able to travel where the run trains, the same names as the run
    it resumes, and tried on a real completion of the model the run starts from."""
    from llm_magics.training import rewards

    plan.rewards = rewards.resolve(plan.config.reward_funcs)
    if plan.where.backend not in ("kernel", "thread"):
        plan.packed_rewards = rewards.packed(plan.rewards)
    if resume_from is not None:
        trained = [r.get("name") for r in plan.db.store.run(resume_from["run"]).get("rewards") or []]
        given = [r.name for r in plan.rewards]
        if trained and given != trained:
            raise ConfigError(
                f"resume: run {resume_from['run']} trained with reward functions {', '.join(map(str, trained))}; "
                f"give those again (got {', '.join(given)})"
            )
    length = plan.config.method_args.get("max_completion_length") or 32
    plan.tried = rewards.try_on_base(
        plan.rewards, plan.base, plan.adapter, tokenizer, plan.data.example, min(int(length), 32)
    )


def _loading_kwargs(config: LLMTrainingConfiguration) -> tuple[dict[str, Any], dict[str, Any]]:
    """``from_pretrained``'s arguments for the model and the tokenizer: their kwargs, the attention
    kernel, and ``trust_remote_code: true``, which lets their own code run (off by default)."""
    model_kwargs, tokenizer_kwargs = dict(config.model_kwargs), dict(config.tokenizer_kwargs)
    if config.attn_implementation:
        model_kwargs["attn_implementation"] = config.attn_implementation
    if config.trust_remote_code:
        model_kwargs.setdefault("trust_remote_code", True)
        tokenizer_kwargs.setdefault("trust_remote_code", True)
    return model_kwargs, tokenizer_kwargs


def _resume_point(
    db: DatabaseHandle, name: str, resume: CheckpointRef | str | int | bool | None
) -> dict[str, Any] | None:
    if resume is None or resume is False:
        return None
    record = db.store.checkpoint(name, LATEST if resume is True else parse_ref(resume))
    return {**record, "path": str(db.store.local_checkpoint(record, db.downloads, for_resume=True))}


def _check_same_base(db: DatabaseHandle, checkpoint: dict[str, Any], path: str) -> None:
    """A run resumes on the base its checkpoint trained on."""
    trained = db.store.run_base(checkpoint["run"])["model"]
    if trained != path:
        raise ConfigError(
            f"resume: checkpoint {checkpoint['run']}:{checkpoint['step']} trained on '{trained}', not on "
            f"'{path}' — set model: {trained} to continue it"
        )


def _upload(config: LLMTrainingConfiguration) -> str | None:
    """What of each checkpoint goes to GridFS: nothing, the weights, or everything."""
    if config.artifacts != "db":
        return None
    return "all" if config.upload_optimizer_state else "weights"


def start_run(plan: Plan, *, on_start: Callable[[Run], None] | None = None) -> Run:
    """Writes the model and run records and starts training where the plan says.

    ``on_start`` gets the run before training begins (to show a view or listen to its state).
    """
    config, db = plan.config, plan.db
    job = job_of(plan)
    if plan.where.backend in ("process", "ray-job"):
        run = _start_detached(plan, job) if plan.where.backend == "process" else _submit_ray_job(plan, job)
        if on_start is not None:
            on_start(run)
        return run
    log = logs.create(plan.output_dir)  # the run's training log, as a detached run keeps one
    write_records(plan, log=str(log))
    state = RunState(plan.run_id, plan.name, plan.where.backend, config=plan.recorded_config)
    state.config_set = plan.config_set
    run = Run(db, plan.run_id, state, Control())
    recorder = Recorder(db.store, state, **recorder_options(plan), log=str(log))
    if on_start is not None:
        on_start(run)
    if plan.where.backend == "kernel":
        from llm_magics.training.local import run_blocking

        run_blocking(job, recorder, run)
    elif plan.where.backend == "thread":
        from llm_magics.training.local import run_in_thread

        run_in_thread(job, recorder, run)
    else:
        from llm_magics.training.ray import run_on_ray

        run_on_ray(job, recorder, run, plan.where.ray_address, config.ray_configs, log=log)
    return run


def job_of(plan: Plan) -> TrainJob:
    """What the training process needs of a plan. The reward functions travel as the job's own
    (packed, for another process), not inside its configuration."""
    config = plan.config if plan.config.reward_funcs is None else plan.config.replace(reward_funcs=None)
    return TrainJob(
        plan.run_id,
        plan.base,
        config,
        plan.data.train,
        plan.data.valid,
        str(plan.output_dir),
        args=plan.args,
        resume_from=plan.resume_from["path"] if plan.resume_from else None,
        adapter=plan.adapter,
        template=plan.template,
        reward_funcs=plan.packed_rewards or [reward.function for reward in plan.rewards] or None,
        evaluation=plan.evaluation,
    )


def recorder_options(plan: Plan) -> dict[str, Any]:
    config = plan.config
    return {
        "keep": config.save_total_limit,
        "template": plan.template,
        "log_metrics": config.log_to_db,
        "output_dir": str(plan.output_dir),
        "grace": plan.db.retry_seconds,
        "upload": _upload(config),
    }


def _start_detached(plan: Plan, job: TrainJob) -> Run:
    """Starts the run's own process, records the run as that process's, and hands it the job.
    The kernel loads no weights: it follows the run through the store."""

    from llm_magics.runs.follow import follow
    from llm_magics.training import detached

    log = logs.create(plan.output_dir)
    child = detached.spawn(log)
    try:
        write_records(plan, owner=detached.owner(child), log=str(log), heartbeat_every=detached.HEARTBEAT)
        detached.hand_over(child, _detached_spec(plan, job))
    except BaseException:
        child.kill()
        raise
    return follow(Run(plan.db, plan.run_id))


def _submit_ray_job(plan: Plan, job: TrainJob) -> Run:
    """Submits the run as a Ray Job, whose driver trains on the cluster and writes the records."""
    from llm_magics.runs.follow import follow
    from llm_magics.training import detached, ray_job

    plan.output_dir.mkdir(parents=True, exist_ok=True)
    spec = {**_detached_spec(plan, job), "ray": True, "ray_configs": plan.config.ray_configs}
    path = ray_job.write_spec(plan.output_dir, spec)
    # whose process trains it is known once the driver starts; until then its heartbeat tells
    write_records(plan, owner={"host": "ray-job"}, heartbeat_every=detached.HEARTBEAT)
    try:
        submitted = ray_job.submit(plan.run_id, path, plan.where.ray_address)
        ray_job.remember(plan.output_dir, submitted)
        plan.db.store.update_run(plan.run_id, ray_job=submitted)
    except BaseException:
        path.unlink(missing_ok=True)
        plan.db.store.runs.delete_one({"_id": plan.run_id})  # nothing was trained
        raise
    return follow(Run(plan.db, plan.run_id))


def _detached_spec(plan: Plan, job: TrainJob) -> dict[str, Any]:
    """What a detached run's process needs: the job, and the database to record it in."""
    import os

    from llm_magics.training import detached

    return {
        "uri": plan.db._connect_uri,
        "cwd": os.getcwd(),
        "model": plan.name,
        "job": dataclasses.replace(job, args=None),  # the process builds the trainer's arguments
        # the views see the run through the store: it writes what is new as often as they look
        "recorder": {**recorder_options(plan), "flush_interval": detached.FLUSH},
        "retry_seconds": plan.db.retry_seconds,
        "heartbeat_every": detached.HEARTBEAT,
    }


def write_records(plan: Plan, owner: dict[str, Any] | None = None, **extra: Any) -> None:
    """The run's records, once its directory is marked as its own (``run_dirs``): only then may
    a path in a record lead into it."""
    store = plan.db.store
    claim(plan.output_dir, plan.run_id)
    if plan.keep_data is not None:
        plan.keep_data()
    base = recorded_base(plan)
    store.save_defaults(plan.name, base)
    chosen = best_by(plan.config.metric_for_best_model, plan.config.greater_is_better)
    if chosen is not None:  # the model's @best follows the metric its newest run chose
        store.save_model(plan.name, best_by=chosen)
    store.add_run(
        {
            "_id": plan.run_id,
            "model": plan.name,
            "status": "starting",
            "backend": plan.where.backend,
            "base": base,
            "config": plan.recorded_config,
            "config_set": plan.config_set,
            "data": plan.data.selection.to_dict(),
            "format": plan.data.format.kind,
            "counts": plan.data.counts,
            "started": now(),
            "output_dir": str(plan.output_dir),
            "step": 0,
            "total_steps": None,
            "resumed_from": plan.resume_from["_id"] if plan.resume_from else None,
            **({"rewards": [reward.record() for reward in plan.rewards]} if plan.rewards else {}),
            **({"evaluation": _evaluation_record(plan.evaluation)} if plan.evaluation else {}),
            **extra,
        },
        owner,
    )


def _evaluation_record(job: EvalJob) -> dict[str, Any]:
    """What a run's record keeps of its evaluation: the settings, their key, each function's text."""
    return {
        "key": job.key,
        "settings": job.settings,
        "functions": [{"name": n, "source": s} for n, s in job.sources.items()],
    }


def recorded_base(plan: Plan) -> dict[str, Any]:
    """What a run trains on, as its record keeps it: each of its checkpoints loads on this base."""
    return {
        "model": plan.base.path,
        "bits": plan.base.bits,
        "task": plan.base.task,
        # a masked token is not passed when loading; the attention kernel is the trainer's, not the model's
        "model_kwargs": masked({k: v for k, v in plan.base.model_kwargs.items() if k != "attn_implementation"}),
        "tokenizer_kwargs": masked(plan.base.tokenizer_kwargs),
        "labels": plan.data.labels,
        "adapter_id": plan.config.adapter_id,
        "template": plan.template,
    }
