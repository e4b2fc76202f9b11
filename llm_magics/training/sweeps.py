"""From a configuration with a ``sweep:`` block to its trials on Ray Tune.

``plan_sweep`` checks every swept value, then every trial as ``plan_run`` checks a run (nothing
written if one fails; the error names every bad value, and the first trial of any other problem);
``start_sweep`` records the sweep and one run per trial, then hands the trials to Ray Tune.
``SweepRun`` is the handle: its trials' runs, ``wait``, ``stop``, ``best``.
"""

from __future__ import annotations

import math
import sys
import threading
import time
import uuid
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llm_magics.config.sweep import Sweep, described, each_value, parse_sweep, trials
from llm_magics.core.errors import ConfigError, RunError, did_you_mean
from llm_magics.core.processes import process_owner
from llm_magics.runs import logs
from llm_magics.runs.run import Control, Run, RunState
from llm_magics.store.records import best_of, now
from llm_magics.store.run_dirs import claim
from llm_magics.training.launch import Placement, Plan, job_of, plan_run, recorder_options, write_records
from llm_magics.training.recorder import Recorder

if TYPE_CHECKING:
    from llm_magics.config.configuration import LLMTrainingConfiguration
    from llm_magics.store.database import DatabaseHandle


@dataclass
class SweepPlan:
    """A sweep whose every trial passed the checks; nothing written yet."""

    name: str
    sweep: Sweep
    values: list[dict[str, Any]]
    plans: list[Plan]
    db: DatabaseHandle


def plan_sweep(
    name: str,
    mapping: dict[str, Any],
    db: DatabaseHandle,
    *,
    ray_address: str | None = None,
    settings: Placement | None = None,
) -> SweepPlan:
    """Checks the sweep, each swept value and each trial; raises one user error with every
    problem (a value by its value, anything else by the first trial it fails), having written nothing."""
    from llm_magics.config import methods
    from llm_magics.config.configuration import ALIASES, LLMTrainingConfiguration
    from llm_magics.config.validation import init_fields

    mapping = dict(mapping)
    block = mapping.pop("sweep")
    method = mapping.get("method", "sft")
    own = methods.own_settings(method) if method in methods.METHODS else ()  # e.g. a DPO sweep over beta
    sweep = parse_sweep(block, [*init_fields(LLMTrainingConfiguration), *ALIASES, *own])
    base = LLMTrainingConfiguration.from_dict(mapping)
    _check_values(sweep, mapping)
    _check_metric(sweep.metric, base)
    values = trials(sweep, base.seed)
    plans, failed = [], dict[str, str]()
    with warnings.catch_warnings(record=True) as warned:  # the trials share their documents: each warning once
        warnings.simplefilter("always")
        for number, trial in enumerate(values, 1):
            try:
                config = LLMTrainingConfiguration.from_dict({**mapping, **trial})
                plans.append(
                    plan_run(name, config, db, backend="ray", ray_address=ray_address, settings=settings or Placement())
                )
            except ConfigError as error:
                for problem in error.problems:  # a problem of many trials is said once, by its first
                    failed.setdefault(problem, f"sweep trial {number} of {len(values)} ({described(trial)}): {problem}")
    said = set()
    for warning in warned:
        if (warning.category, str(warning.message)) not in said:
            said.add((warning.category, str(warning.message)))
            warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
    if failed:
        raise ConfigError(list(failed.values()))
    return SweepPlan(name, sweep, values, plans, db)


def _check_values(sweep: Sweep, mapping: dict[str, Any]) -> None:
    """Each swept value alone in the configuration: every bad one reported at once, by its value."""
    from llm_magics.config.configuration import LLMTrainingConfiguration

    problems = []
    for key, value, how in each_value(sweep):
        try:
            LLMTrainingConfiguration.from_dict({**mapping, key: value})
        except ConfigError as error:
            problems += [f"sweep: {described({key: value})}{how}: {problem}" for problem in error.problems]
    if problems:
        raise ConfigError(list(dict.fromkeys(problems)))


# what a trial logs (trl's SFTTrainer), each training step it logs and each evaluation
_LOGGED = ("loss", "grad_norm", "learning_rate", "mean_token_accuracy", "entropy", "num_tokens")
_EVALUATED = ("eval_loss", "eval_mean_token_accuracy", "eval_entropy", "eval_num_tokens", "eval_runtime")


def _check_metric(metric: str, config: LLMTrainingConfiguration) -> None:
    """The metric must be one the trials report: a typo would never prune, nor find a best."""
    from llm_magics.config.configuration import reward_name
    from llm_magics.config.methods import signals

    own = signals(config.method, [reward_name(f) for f in config.reward_funcs or []])
    known = [*_LOGGED, *_EVALUATED, *(("eval_accuracy",) if config.task == "text-classification" else ())]
    known += [*own, *(f"eval_{name}" for name in own)]
    block = config.generation_eval()  # eval_generate's scores: ASHA prunes by answer quality
    known += [f"eval_{name}" for name in block.metric_names()] if block is not None else []
    if metric not in known:
        raise ConfigError(f"sweep.metric: the trials do not log '{metric}'{did_you_mean(metric, known)}")
    if metric.startswith("eval_") and str(config.eval_strategy) == "no":
        raise ConfigError(f"sweep.metric: {metric} needs evaluations — set eval_strategy: steps and eval_steps")


class SweepRun:
    """A sweep: ``.id``, ``.runs`` (one per trial), ``.status``, ``.best``, ``.wait()``, ``.stop()``."""

    def __init__(self, db: DatabaseHandle, sweep_id: str, runs: list[Run], control: Control | None = None):
        self.db, self.id, self.runs, self.control = db, sweep_id, runs, control
        # set once a view of the sweep has shown its summary: wait() returns after that, so the
        # summary goes out while the cell that waits still runs (a headless run of the notebook
        # keeps only what a cell sends while it runs)
        self.summaries: list[threading.Event] = []

    def __repr__(self) -> str:
        return (
            f"SweepRun(id='{self.id}', model='{self.record['model']}', status='{self.status}', trials={len(self.runs)})"
        )

    @property
    def record(self) -> dict[str, Any]:
        found = self.db.store.sweeps.find_one({"_id": self.id})
        if found is None:
            raise RunError(f"no sweep with id '{self.id}'")
        return found

    @property
    def status(self) -> str:
        return self.record["status"]

    @property
    def best(self) -> dict[str, Any] | None:
        """The best checkpoint over all trials, by the sweep's metric (None before any evaluation)."""
        return best_checkpoint(self.db, self.record)

    def wait(self, timeout: float | None = None) -> SweepRun:
        for run in self.runs:
            run.wait(timeout)
        if self.control is not None and not self.control.done.wait(timeout):
            raise TimeoutError(f"sweep {self.id} is still running after {timeout} s")
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.control is None and self.status == "running":  # its own process writes its end
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"sweep {self.id} is still running after {timeout} s")
            time.sleep(0.5)
        for shown in list(self.summaries):
            shown.wait(None if deadline is None else max(0.0, deadline - time.monotonic()))
        return self

    def stop(self) -> SweepRun:
        """Asks every trial to save a checkpoint and end; trials not started do not start. A
        detached sweep is asked through the store, from any kernel."""
        if self.control is None:
            record = self.record
            if not record.get("detached") or record["status"] != "running":
                raise RunError(f"sweep {self.id} is not running in this kernel (status: {record['status']})")
            self.db.store.sweeps.update_one({"_id": self.id}, {"$set": {"stop_requested": now()}})
            return self
        if self.control.done.is_set():
            raise RunError(f"sweep {self.id} is not running (status: {self.status})")
        self.control.stop.set()
        if self.control.on_stop is not None:
            self.control.on_stop()
        return self


_running: dict[str, SweepRun] = {}  # sweeps running in this kernel, by id


def attached_sweep(db: DatabaseHandle, sweep_id: str) -> SweepRun:
    """The sweep ``sweep_id``: the one running in this kernel, else its trials followed through
    the store (it can be stopped only from the kernel that runs it)."""
    from llm_magics.runs.follow import follow
    from llm_magics.runs.run import active_run

    if sweep_id in _running:
        return _running[sweep_id]
    record = db.store.sweeps.find_one({"_id": sweep_id}) or {}
    runs = [follow(active_run(run_id) or db.run(run_id)) for run_id in record.get("trials", [])]
    return SweepRun(db, sweep_id, runs)


def best_checkpoint(db: DatabaseHandle, record: dict[str, Any]) -> dict[str, Any] | None:
    """The checkpoint of the sweep's trials with the best value of its metric."""
    checkpoints = list(db.store.checkpoints.find({"run": {"$in": record["trials"]}}))
    metric, sign = record["metric"], 1 if record["mode"] == "min" else -1
    if metric == "eval_loss" and sign == 1:
        return best_of(checkpoints)
    scored = [c for c in checkpoints if _finite((c.get("metrics") or {}).get(metric))]  # a NaN never wins
    return min(scored, key=lambda c: sign * c["metrics"][metric], default=None)


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def start_sweep(splan: SweepPlan, *, on_start: Any = None, detach: bool = False) -> SweepRun:
    """Records the sweep and its trials' runs, then starts the trials on Ray Tune: from this
    kernel, or (``detach``) from a process of its own that outlives it."""
    sweep_id = uuid.uuid4().hex[:8]
    jobs = [job_of(plan) for plan in splan.plans]
    # each trial keeps its training log, as any run does
    options = [{**recorder_options(plan), "log": str(plan.output_dir / logs.LOG)} for plan in splan.plans]
    address = splan.plans[0].where.ray_address
    if detach:
        return _start_detached(splan, sweep_id, jobs, options, address, on_start)
    _record(splan, sweep_id, _sweep_log(splan, sweep_id))
    return run_here(splan.db, sweep_id, splan.name, splan.sweep, jobs, options, address, on_start)


def _sweep_log(splan: SweepPlan, sweep_id: str) -> Path:
    """The sweep's log (Ray's own messages; a detached sweep's output) in the sweep's directory,
    beside its trials' (Tune's files go there too), marked as the sweep's: ``%llm_logs SWEEP``
    finds it as a run's log is found."""
    directory = claim(splan.plans[0].output_dir.parent / f"sweep-{sweep_id}", sweep_id)
    return logs.create(directory)


def _record(splan: SweepPlan, sweep_id: str, log: Path, owner: dict[str, Any] | None = None, **extra: Any) -> None:
    """The trials' runs, each with its log, then the sweep's record."""
    for number, (plan, values) in enumerate(zip(splan.plans, splan.values, strict=True), 1):
        trial_log = logs.create(plan.output_dir)
        write_records(plan, owner, sweep=sweep_id, trial=values, trial_number=number, log=str(trial_log), **extra)
    splan.db.store.sweeps.insert_one(
        {
            "_id": sweep_id,
            "model": splan.name,
            **splan.sweep.to_dict(),
            "trials": [plan.run_id for plan in splan.plans],
            "values": splan.values,
            "status": "running",
            "started": now(),
            "output_dir": str(log.parent),
            "log": str(log),
            "detached": owner is not None,
            # whose process runs it, to reap it as runs are reaped when that process is gone
            "owner": owner or process_owner(),
            "heartbeat": now(),
            **({"heartbeat_every": extra["heartbeat_every"]} if "heartbeat_every" in extra else {}),
        }
    )


def run_here(
    db: DatabaseHandle,
    sweep_id: str,
    name: str,
    sweep: Sweep,
    jobs: list[Any],
    options: list[dict[str, Any]],
    address: str | None,
    on_start: Any = None,
) -> SweepRun:
    """Runs a recorded sweep's trials on Ray Tune from this process, in the background."""
    from llm_magics.training.tune import run_on_tune

    store = db.store
    runs, recorders = [], []
    for job, option in zip(jobs, options, strict=True):
        state = RunState(job.run_id, name, "ray")
        runs.append(Run(db, job.run_id, state, Control()))
        recorders.append(Recorder(store, state, **option))
    control = Control()
    handle = SweepRun(db, sweep_id, runs, control)

    def ended() -> None:
        failed = all(run.status == "failed" for run in runs)
        status = "stopped" if control.stop.is_set() else "failed" if failed else "completed"
        best = best_checkpoint(db, handle.record)
        store.sweeps.update_one(
            {"_id": sweep_id},
            {"$set": {"status": status, "ended": now(), "best": best["_id"] if best else None}},
        )
        control.done.set()
        _running.pop(sweep_id, None)

    _running[sweep_id] = handle
    if on_start is not None:
        on_start(handle)
    storage = Path(jobs[0].output_dir).parent / f"sweep-{sweep_id}"  # _sweep_log's
    run_on_tune(jobs, recorders, runs, sweep, control, storage, address, ended, log=storage / logs.LOG)
    return handle


def _start_detached(
    splan: SweepPlan,
    sweep_id: str,
    jobs: list[Any],
    options: list[dict[str, Any]],
    address: str | None,
    on_start: Any,
) -> SweepRun:
    """The sweep's own process runs it; this kernel follows its trials through the store."""
    import dataclasses
    import os

    from llm_magics.training import detached

    detached.check_database(splan.db)
    log = _sweep_log(splan, sweep_id)
    child = detached.spawn(log, "llm_magics.training.sweeps")
    try:
        _record(splan, sweep_id, log, detached.owner(child), heartbeat_every=detached.HEARTBEAT)
        spec = {
            "uri": splan.db._connect_uri,
            "cwd": os.getcwd(),
            "sweep_id": sweep_id,
            "model": splan.name,
            "sweep": splan.sweep,
            "jobs": [dataclasses.replace(job, args=None) for job in jobs],
            "options": [{**option, "flush_interval": detached.FLUSH} for option in options],
            "address": address,
            "heartbeat_every": detached.HEARTBEAT,
        }
        detached.hand_over(child, spec)
    except BaseException:
        child.kill()
        raise
    handle = attached_sweep(splan.db, sweep_id)
    if on_start is not None:
        on_start(handle)
    return handle


def main() -> int:
    """A detached sweep's process: reads the sweep from stdin, runs its trials, records them."""
    import os
    import pickle
    import sys

    from llm_magics.store.database import open_database
    from llm_magics.training.detached import Heartbeat

    spec = pickle.loads(sys.stdin.buffer.read())
    sys.stdin.close()
    os.chdir(spec["cwd"])
    db: DatabaseHandle = open_database(spec["uri"])
    sweep_id, ids = spec["sweep_id"], [job.run_id for job in spec["jobs"]]
    for run_id in ids:
        db.store.update_run(run_id, owner=process_owner())
    print(f"sweep {sweep_id} of {spec['model']}: {len(ids)} trials in process {os.getpid()} on {db.uri}", flush=True)
    handle = run_here(db, sweep_id, spec["model"], spec["sweep"], spec["jobs"], spec["options"], spec["address"])
    with Heartbeat(db.store, sweep_id, handle.stop, spec["heartbeat_every"], run_ids=ids, requests=db.store.sweeps):
        assert handle.control is not None
        handle.control.done.wait()
    statuses = [run.status for run in handle.runs]
    print(f"sweep {sweep_id}: {handle.status} ({', '.join(statuses)})", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
