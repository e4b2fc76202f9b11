"""Training on Ray: Ray Train's TorchTrainer runs the same train function in each worker.

The kernel never blocks: Ray starts, and the trainer runs, in a background thread. Events flow
back through a small actor (a queue) that the kernel drains into the recorder, so metrics and
checkpoints reach the store and the live view even when the workers cannot reach the database
(an in-memory one, say). On a worker of another node, checkpoint files travel with their event
and the kernel writes them into its own artifact directory (sha256 checked); on the kernel's
node, workers write where the kernel reads. Through Ray Client (``ray://``) every worker counts as
another node: the kernel's machine is not part of the cluster.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import pickle
import shutil
import tempfile
import threading
import time
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from llm_magics.core.errors import ConfigError, RunError
from llm_magics.core.secrets import redact_text
from llm_magics.runs.run import Run
from llm_magics.store.artifacts import file_digests, written_whole
from llm_magics.training.local import describe
from llm_magics.training.ray_log import ray_logged, stderr_logged
from llm_magics.training.recorder import Recorder
from llm_magics.training.train import TrainJob, train

_BUILT_HERE = ("train_loop_per_worker", "train_loop_config", "datasets")
_POLL = 0.25  # seconds between drains of the worker events


def ray_trainer_kwargs(ray_configs: dict[str, Any] | None, run_id: str, storage: Path | None) -> dict[str, Any]:
    """``ray_configs`` for TorchTrainer: plain mappings become ScalingConfig / RunConfig.

    ``storage`` is Ray Train's ``storage_path`` unless ``run_config`` sets one; None leaves Ray's.
    """
    from ray.train import RunConfig, ScalingConfig

    given = dict(ray_configs or {})
    built = [key for key in _BUILT_HERE if key in given]
    if built:
        raise ConfigError(f"ray_configs: {', '.join(built)} is built by llm_magics; remove it")
    scaling = given.pop("scaling_config", None) or {}
    run = given.pop("run_config", None) or {}
    if isinstance(scaling, dict):
        scaling = ScalingConfig(**{"num_workers": 1, "use_gpu": _cluster_has_gpus(), **scaling})
    if isinstance(run, dict):
        defaults = {"name": f"llm_magics-{run_id}"} | ({} if storage is None else {"storage_path": str(storage)})
        run = RunConfig(**{**defaults, **run})
    return {"scaling_config": scaling, "run_config": run, **given}


def through_client(address: str | None) -> bool:
    """Whether the kernel reaches Ray through Ray Client (a ``ray://`` address).

    The driver then runs on the cluster: ``get_node_id()`` names a cluster node, not the kernel's
    machine, so no worker can write where the kernel reads.
    """
    import ray.util.client

    return (address or "").startswith("ray://") or ray.util.client.ray.is_connected()


def default_storage(address: str | None, client: bool, output_dir: Path) -> Path | None:
    """Ray Train's ``storage_path`` when ``ray_configs`` sets none: beside the runs for a local
    Ray; on a cluster Ray's own default, since the workers may not be able to write the kernel's disk."""
    if client or address not in (None, "local"):
        return None
    return output_dir.parent / "ray"


def _cluster_has_gpus() -> bool:
    import ray

    return ray.cluster_resources().get("GPU", 0) > 0


# A local Ray's raylet gives its agent (a Python process) about 30 s to start, and gives up for
# good when it has not: on two cores busy with other work the agent took 60 s (the raylet's log:
# "Timed out waiting for file .../metrics_agent_port_..."). Each start is a new chance.
_LOCAL_STARTS = 3


def start_ray(address: str | None) -> None:
    """Connects to ``address`` (a running cluster) or starts a local Ray; reuses a connection.

    A local Ray's processes are killed when the thread that started them ends (Linux's
    parent-death signal follows the thread), so ``ray.init`` runs in a thread that lives as long
    as the kernel, not in the run's own thread. What Ray says while it starts goes to the log of
    the run that starts it (``ray_log``).
    """
    import ray

    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    started: Future[None] = Future()

    def keep_ray() -> None:
        for attempt in range(1, _LOCAL_STARTS + 1):
            try:
                with stderr_logged():  # its warnings belong in the run's log, not in a cell
                    ray.init(address=address, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
                break
            except Exception as error:
                if attempt == _LOCAL_STARTS or address is not None or "timed out during startup" not in str(error):
                    started.set_exception(error)
                    return
                ray.shutdown()
            except BaseException as error:
                started.set_exception(error)
                return
        started.set_result(None)
        threading.Event().wait()

    threading.Thread(target=keep_ray, daemon=True, name="llm_magics-ray-host").start()
    started.result()


def run_on_ray(
    job: TrainJob,
    recorder: Recorder,
    run: Run,
    address: str | None,
    ray_configs: dict[str, Any] | None,
    log: Path | None = None,
) -> threading.Thread:
    """Starts the run on Ray (a cluster at ``address``, else a local one) in the background;
    returns the driving thread. ``ray_configs`` go to Ray Train's ``TorchTrainer``; Ray's own log
    goes to ``log`` while the run trains (None: where Ray writes it)."""
    thread = threading.Thread(
        target=_drive,
        args=(job, recorder, run, address, ray_configs, log),
        daemon=True,
        name=f"llm_magics-ray-{job.run_id}",
    )
    thread.start()
    return thread


def _drive(
    job: TrainJob,
    recorder: Recorder,
    run: Run,
    address: str | None,
    ray_configs: dict[str, Any] | None,
    log: Path | None,
) -> None:
    with ray_logged(log):
        _train_on_ray(job, recorder, run, address, ray_configs)


def _train_on_ray(
    job: TrainJob, recorder: Recorder, run: Run, address: str | None, ray_configs: dict[str, Any] | None
) -> None:
    pump: _Pump | None = None
    _, control = run.live()
    try:
        start_ray(address)
        import cloudpickle
        import ray
        from ray.train.torch import TorchTrainer

        client = through_client(address)
        job = dataclasses.replace(
            job,
            kernel_node=ray.get_runtime_context().get_node_id(),
            ship_checkpoints=True if client else job.ship_checkpoints,
        )
        channel = _channel_class().remote()
        control.on_stop = lambda: channel.request_stop.remote()
        if control.stop.is_set():
            channel.request_stop.remote()
        pump = _Pump(channel, recorder, Path(job.output_dir))
        pump.start()
        storage = default_storage(address, client, Path(job.output_dir))
        kwargs = ray_trainer_kwargs(ray_configs, job.run_id, storage)
        # the job travels as bytes: Ray Train's controller holds the loop's config, and unpickling
        # the job there would import trl, transformers and peft for nothing (5 s of CPU a run)
        packed = cloudpickle.dumps(job)
        trainer = TorchTrainer(_worker_loop, train_loop_config={"job": packed, "channel": channel}, **kwargs)
        trainer.fit()
        pump.close()
        if pump.error is not None:
            recorder.finish("failed", describe(pump.error))
        else:
            recorder.finish("stopped" if pump.stopped else "completed")
    except BaseException as error:
        if pump is not None:
            pump.close()
        recorder.finish("failed", worker_error(error) or describe(error))
    finally:
        run.finished()


def worker_error(error: BaseException) -> str | None:
    """The worker's own exception line ('ValueError: ...') out of Ray's wrapped failure, with
    passwords hidden (a bucket's URI in an error message)."""
    text = str(error)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for line in reversed(lines):
        head = line.split(":", 1)[0]
        if head.endswith(("Error", "Exception")) and " " not in head and not head.startswith("ray."):
            return redact_text(line)
    return None


class _Pump(threading.Thread):
    """Drains the workers' events into the recorder, writing shipped checkpoint files first.

    A failure here (shipped files that do not match their sha256, say) would leave the run
    unrecorded while it trains on, so it stops the workers and is kept in ``error`` for the runner.
    """

    def __init__(self, channel: Any, recorder: Recorder, output_dir: Path, lane: int = 0):
        super().__init__(daemon=True, name="llm_magics-ray-events")
        self.channel, self.recorder, self.output_dir, self.lane = channel, recorder, output_dir, lane
        self.stopped = self.ended = False  # ended: the trainer's end came (not cut short from outside)
        self.error: BaseException | None = None
        self._closing = threading.Event()

    def run(self) -> None:
        while self.error is None and not self._closing.wait(_POLL):
            self._drain()

    def close(self) -> None:
        self._closing.set()
        self.join()
        self._drain()  # what arrived after the last look

    def _drain(self) -> None:
        import ray

        if self.error is not None:
            return
        try:
            for event in ray.get(self.channel.drain.remote(self.lane)):
                if "contents" in event:
                    event = self._materialize(event)
                if event["kind"] == "end":
                    self.stopped, self.ended = event["stopped"], True
                self.recorder(event)
        except Exception as error:
            # the recorder words its own failures; anything else is said to have stopped the run
            stopped = f"recording the run failed, so it was stopped: {describe(error)}"
            self.error = error if isinstance(error, RunError) else RunError(stopped)
            self.channel.request_stop.remote(self.lane)

    def _materialize(self, event: dict[str, Any]) -> dict[str, Any]:
        """Writes a shipped checkpoint into the kernel's directory, complete before it is named."""
        contents = event.pop("contents")
        final = self.output_dir / f"checkpoint-{event['step']}"  # workers elsewhere made nothing here
        with written_whole(final) as partial:
            for name, data in contents.items():
                target = partial / name
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)
            if file_digests(partial) != event["files"]:
                raise RuntimeError(f"checkpoint {event['step']}: the shipped files do not match their sha256")
        return {**event, "path": str(final)}


@functools.cache
def _channel_class() -> Any:
    import ray

    @ray.remote(num_cpus=0)
    class Channel:
        """Events from rank 0 to the kernel, and the kernel's stop request to every worker.

        A sweep's trials share one channel, each in a lane of its own (its index): one actor, one
        process, however many trials. A run on Ray has lane 0.
        """

        def __init__(self) -> None:
            self.events: dict[int, list[dict[str, Any]]] = {}
            self.stopped: set[int] = set()
            self.all_stopped = False

        def put(self, event: dict[str, Any], lane: int = 0) -> None:
            self.events.setdefault(lane, []).append(event)

        def drain(self, lane: int = 0) -> list[dict[str, Any]]:
            return self.events.pop(lane, [])

        def request_stop(self, lane: int | None = 0) -> None:
            """Stops the run in ``lane``; None stops every lane."""
            if lane is None:
                self.all_stopped = True
            else:
                self.stopped.add(lane)

        def stopping(self, lane: int = 0) -> bool:
            return self.all_stopped or lane in self.stopped

    return Channel


class _WorkerStop:
    """The kernel's stop request, agreed on by all workers at the same step."""

    def __init__(self, channel: Any, lane: int = 0):
        self.channel, self.lane, self._asked, self._looked = channel, lane, False, 0.0

    def is_set(self) -> bool:
        import ray
        import torch
        import torch.distributed as dist

        if not self._asked and time.monotonic() - self._looked > 0.5:
            self._asked, self._looked = ray.get(self.channel.stopping.remote(self.lane)), time.monotonic()
        if not dist.is_initialized():
            return self._asked
        # every rank calls this once per step: all stop at the step where any saw the request
        device = "cuda" if dist.get_backend() == "nccl" else "cpu"
        flag = torch.tensor([int(self._asked)], device=device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item())


class _WorkerSink:
    """Rank 0's events to the kernel; checkpoint files go along when the kernel cannot read them."""

    def __init__(self, channel: Any, ship: bool, lane: int = 0):
        self.channel, self.ship, self.lane = channel, ship, lane

    def __call__(self, event: dict[str, Any]) -> None:
        if self.ship and event["kind"] == "checkpoint":
            root = Path(event["path"])
            event = {**event, "contents": {f["name"]: (root / f["name"]).read_bytes() for f in event["files"]}}
        reply = self.channel.put.remote(event, self.lane)
        if event["kind"] in ("checkpoint", "end"):
            import ray

            ray.get(reply)  # delivered before training goes on (or the worker exits)


def _worker_loop(loop_config: dict[str, Any]) -> None:
    """Runs in each Ray Train worker."""
    import ray
    import ray.train.torch

    job, channel = pickle.loads(loop_config["job"]), loop_config["channel"]
    ship = job.ship_checkpoints
    if ship is None:  # a worker on the kernel's node writes where the kernel reads
        ship = ray.get_runtime_context().get_node_id() != job.kernel_node
    if ship:
        job = dataclasses.replace(job, output_dir=tempfile.mkdtemp(prefix=f"llm_magics-{job.run_id}-"))
    device = ray.train.torch.get_device()
    device_map = {"": device} if device.type == "cuda" else None
    try:
        # the callback emits on the main process (rank 0) only; every rank obeys a stop
        train(job, _WorkerSink(channel, ship), _WorkerStop(channel), device_map=device_map)
    finally:
        if ship:  # the kernel has the files: do not fill the cluster's disks
            shutil.rmtree(job.output_dir, ignore_errors=True)
