"""Sweeps on Ray Tune: each trial runs the same train function as every other backend.

The kernel never blocks: Tune runs in a background thread. Each trial trains in a Tune actor and
sends its events through its own lane of the sweep's one channel, which the kernel drains into
that trial's recorder (as for ``--ray``: the trials never need the database). A trial reports its
evaluation metric to Tune at each evaluation; with ASHA, Tune stops the trials that fall behind,
and the kernel records them ``pruned`` with the step and the metric they stopped at, as soon as
Tune stops them: each trial's run starts and ends with its trial. Stopping the sweep asks every
trial to save a checkpoint and end; trials not started yet do not start.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llm_magics.core.secrets import redact_text
from llm_magics.runs.run import Control, Run
from llm_magics.training.local import describe
from llm_magics.training.ray import _channel_class, _Pump, _WorkerSink, _WorkerStop, start_ray, worker_error
from llm_magics.training.ray_log import ray_logged
from llm_magics.training.recorder import Recorder
from llm_magics.training.train import TrainJob, train

if TYPE_CHECKING:
    from llm_magics.config.sweep import Sweep


def run_on_tune(*args: Any, log: Path | None = None) -> threading.Thread:
    """Starts the sweep's trials on Ray Tune in the background (the arguments are ``_tune``'s);
    Ray's own log goes to ``log`` (the sweep's) meanwhile. Returns the driving thread."""

    def drive() -> None:
        with ray_logged(log):
            _tune(*args)

    thread = threading.Thread(target=drive, daemon=True, name="llm_magics-sweep")
    thread.start()
    return thread


def _tune(
    jobs: list[TrainJob],
    recorders: list[Recorder],
    runs: list[Run],
    sweep: Sweep,
    control: Control,
    storage: Path,
    address: str | None,
    on_end: Callable[[], None] | None,
) -> None:
    pumps: list[_Pump] = []
    ended: set[int] = set()  # the trials whose runs have ended

    def end(index: int, error: BaseException | None) -> None:
        if index not in ended and index < len(pumps):
            ended.add(index)
            pumps[index].close()
            _finish(recorders[index], pumps[index], error, sweep, stopped=control.stop.is_set())
            runs[index].finished()

    try:
        # Tune reports to the notebook's output by default: the sweep view shows the trials instead
        os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
        logging.getLogger("ray.tune").setLevel(logging.WARNING)
        start_ray(address)
        import ray
        from ray import tune

        here = ray.get_runtime_context().get_node_id()
        jobs = [dataclasses.replace(job, kernel_node=here) for job in jobs]

        channel = _channel_class().remote()  # one actor for the sweep: a lane per trial

        def stop_all() -> None:
            channel.request_stop.remote(None)

        control.on_stop = stop_all
        if control.stop.is_set():
            stop_all()
        for lane, run in enumerate(runs):  # one trial stops alone too
            if run.control is not None:
                run.control.on_stop = functools.partial(channel.request_stop.remote, lane)
        pumps = [
            _Pump(channel, recorder, Path(job.output_dir), lane)
            for lane, (recorder, job) in enumerate(zip(recorders, jobs, strict=True))
        ]
        for pump in pumps:
            pump.start()
        trainable = tune.with_resources(
            tune.with_parameters(_trial, jobs=jobs, channel=channel, metric=sweep.metric),
            dict(sweep.resources_per_trial),
        )
        tuner = tune.Tuner(
            trainable,
            param_space={"index": tune.grid_search(list(range(len(jobs))))},
            tune_config=tune.TuneConfig(
                metric=sweep.metric,
                mode=sweep.mode,
                scheduler=_scheduler(sweep, jobs),
                max_concurrent_trials=sweep.max_concurrent_trials,
                reuse_actors=True,  # a trial's process has torch and the rest imported already
            ),
            run_config=tune.RunConfig(
                name=storage.name,
                storage_path=str(storage.parent),
                verbose=0,
                progress_reporter=_silent(),
                callbacks=[_each_trial(recorders, end)],
            ),
        )
        results = {result.config["index"]: result for result in tuner.fit()}
        for index in range(len(jobs)):
            result = results.get(index)
            end(index, result.error if result is not None else None)
    except BaseException as error:
        for pump, recorder in zip(pumps, recorders, strict=False):
            pump.close()
            if recorder.state.status not in ("completed", "stopped", "failed", "pruned"):
                recorder.finish("failed", worker_error(error) or describe(error))
        for recorder in recorders[len(pumps) :]:
            recorder.finish("failed", worker_error(error) or describe(error))
    finally:
        for run in runs:
            run.finished()
        if on_end is not None:
            on_end()


def _silent() -> Any:
    """A Tune progress reporter that reports nothing (in a notebook Tune's own would write into
    whichever cell runs at the time)."""
    from ray.tune import ProgressReporter

    class Silent(ProgressReporter):
        def should_report(self, trials: Any, done: bool = False) -> bool:
            return False

        def report(self, trials: Any, done: bool, *sys_info: Any) -> None:
            return None

    return Silent()


def _each_trial(recorders: list[Recorder], end: Callable[[int, BaseException | None], None]) -> Any:
    """A Tune callback: a trial's run starts when Tune starts the trial, and ends when Tune ends
    it (a pruned one at once), so that each has its own time, not the sweep's."""
    from ray.tune import Callback

    class EachTrial(Callback):
        def __init__(self, recorders: list[Recorder], end: Callable[[int, BaseException | None], None]) -> None:
            self.recorders, self.end = recorders, end  # not a closure's: cloudpickle would take them along

        def __getstate__(self) -> dict[str, Any]:
            return {}  # Tune keeps its configuration in a file, to restore from: the live runs stay here

        def on_trial_start(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
            self.recorders[trial.config["index"]].started()

        def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
            self.end(trial.config["index"], None)

        def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
            self.end(trial.config["index"], trial.get_error())

    return EachTrial(recorders, end)


def _scheduler(sweep: Sweep, jobs: list[TrainJob]) -> Any:
    """ASHA over evaluations (one report per evaluation), or none."""
    if sweep.scheduler == "none":
        return None
    from ray.tune.schedulers import ASHAScheduler

    # past the last report: a trial that gets there ends by itself, with its final checkpoint
    reports = max(_reports(job, sweep.metric) for job in jobs)
    return ASHAScheduler(time_attr="training_iteration", max_t=reports + 1, grace_period=1, reduction_factor=2)


def _reports(job: TrainJob, metric: str) -> int:
    """How often a trial reports ``metric`` to Tune: at each evaluation for an ``eval_`` metric,
    at each logged step for a training one (``loss``): ASHA's rungs count these reports."""
    config = job.config
    every = (config.eval_steps or config.logging_steps) if metric.startswith("eval_") else config.logging_steps
    block = config.generation_eval()
    if block is not None and metric.removeprefix("eval_") in block.metric_names():  # scored where it saves
        every = config.save_steps if block.when == "save" else config.max_steps
    if not every or config.max_steps <= 0:
        return 1
    if every < 1:  # a fraction of the run, as transformers reads it
        every = max(1, math.ceil(config.max_steps * every))
    return max(1, int(config.max_steps // every))


def _finish(recorder: Recorder, pump: _Pump, error: BaseException | None, sweep: Sweep, stopped: bool) -> None:
    state = recorder.state
    if pump.error is not None:
        recorder.finish("failed", describe(pump.error))
    elif error is not None:
        recorder.finish("failed", worker_error(error) or redact_text(describe(error)))
    elif pump.ended:
        recorder.finish("stopped" if pump.stopped else "completed")
    elif stopped and state.step == 0:
        recorder.finish("stopped", "the sweep was stopped before this trial started")
    else:
        value = getattr(state, sweep.metric, None) if sweep.metric.startswith("eval_") else None
        at = f" ({sweep.metric} {value:.4g})" if isinstance(value, float) else ""
        recorder.state.reason = f"stopped by ASHA at step {state.step}{at}: it fell behind the other trials"
        recorder.finish("pruned")


def _trial(config: dict[str, Any], jobs: list[TrainJob], channel: Any, metric: str) -> None:
    """One trial, in a Tune actor: trains its job, reports each evaluation to Tune."""
    from ray import tune

    index = config["index"]
    job = jobs[index]
    stop = _WorkerStop(channel, index)
    if stop.is_set():
        return  # the sweep was stopped before this trial began
    import ray

    forward = _WorkerSink(channel, ship=ray.get_runtime_context().get_node_id() != job.kernel_node, lane=index)

    def sink(event: dict[str, Any]) -> None:
        forward(event)
        if event["kind"] == "log" and event.get(metric) is not None:  # an evaluation: Tune judges it
            tune.report({key: value for key, value in event.items() if isinstance(value, int | float)})

    train(job, sink, stop)
