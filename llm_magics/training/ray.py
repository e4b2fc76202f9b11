"""Training on Ray: Ray Train's TorchTrainer runs the same train function in each worker.

The kernel never blocks: Ray starts, and the trainer runs, in a background thread. Events flow
back through a small actor (a queue) that the kernel drains into the recorder, so metrics and
checkpoints reach the store and the live view even when the workers cannot reach the database
(an in-memory one, say). On a worker of another node, checkpoint files travel with their event
and the kernel writes them into its own artifact directory (sha256 checked); on the kernel's
node, workers write where the kernel reads.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llm_magics.errors import ConfigError

if TYPE_CHECKING:
    from llm_magics.run import Run
    from llm_magics.training.recorder import Recorder
    from llm_magics.training.train import TrainJob

_BUILT_HERE = ("train_loop_per_worker", "train_loop_config", "datasets")
_POLL = 0.25  # seconds between drains of the worker events


def ray_trainer_kwargs(ray_configs: dict[str, Any] | None, run_id: str, storage: Path) -> dict[str, Any]:
    """``ray_configs`` for TorchTrainer: plain mappings become ScalingConfig / RunConfig."""
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
        run = RunConfig(**{"name": f"llm_magics-{run_id}", "storage_path": str(storage), **run})
    return {"scaling_config": scaling, "run_config": run, **given}


def _cluster_has_gpus() -> bool:
    import ray

    return ray.cluster_resources().get("GPU", 0) > 0


def start_ray(address: str | None) -> None:
    """Connects to ``address`` (a running cluster) or starts a local Ray; reuses a connection."""
    import ray

    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    ray.init(address=address, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)


def run_on_ray(job: TrainJob, recorder: Recorder, run: Run, config: Any) -> threading.Thread:
    """Starts the run on Ray in the background; returns the driving thread."""
    thread = threading.Thread(
        target=_drive, args=(job, recorder, run, config), daemon=True, name=f"llm_magics-ray-{job.run_id}"
    )
    thread.start()
    return thread


def _drive(job: TrainJob, recorder: Recorder, run: Run, config: Any) -> None:
    from llm_magics.training.local import describe

    pump: _Pump | None = None
    try:
        start_ray(config.ray_address)
        import ray
        from ray.train.torch import TorchTrainer

        job = dataclasses.replace(job, kernel_node=ray.get_runtime_context().get_node_id())
        channel = _channel_class().remote()
        run.control.on_stop = lambda: channel.request_stop.remote()
        if run.control.stop.is_set():
            channel.request_stop.remote()
        pump = _Pump(channel, recorder, Path(job.output_dir))
        pump.start()
        kwargs = ray_trainer_kwargs(config.ray_configs, job.run_id, Path(job.output_dir).parent / "ray")
        trainer = TorchTrainer(_worker_loop, train_loop_config={"job": job, "channel": channel}, **kwargs)
        trainer.fit()
        pump.close()
        recorder.finish("stopped" if pump.stopped else "completed")
    except BaseException as error:
        if pump is not None:
            pump.close()
        recorder.finish("failed", worker_error(error) or describe(error))
    finally:
        run.finished()


def worker_error(error: BaseException) -> str | None:
    """The worker's own exception line ('ValueError: ...') out of Ray's wrapped failure."""
    text = str(error)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for line in reversed(lines):
        head = line.split(":", 1)[0]
        if head.endswith(("Error", "Exception")) and " " not in head and not head.startswith("ray."):
            return line
    return None


class _Pump(threading.Thread):
    """Drains the workers' events into the recorder, writing shipped checkpoint files first."""

    def __init__(self, channel: Any, recorder: Recorder, output_dir: Path):
        super().__init__(daemon=True, name="llm_magics-ray-events")
        self.channel, self.recorder, self.output_dir = channel, recorder, output_dir
        self.stopped = False
        self._closing = threading.Event()

    def run(self) -> None:
        while not self._closing.wait(_POLL):
            self._drain()

    def close(self) -> None:
        self._closing.set()
        self.join()
        self._drain()  # what arrived after the last look

    def _drain(self) -> None:
        import ray

        for event in ray.get(self.channel.drain.remote()):
            if "contents" in event:
                event = self._materialize(event)
            if event["kind"] == "end":
                self.stopped = event["stopped"]
            self.recorder(event)

    def _materialize(self, event: dict[str, Any]) -> dict[str, Any]:
        """Writes a shipped checkpoint into the kernel's directory, complete before it is named."""
        from llm_magics.artifacts import file_digests

        contents = event.pop("contents")
        final = self.output_dir / f"checkpoint-{event['step']}"
        partial = Path(tempfile.mkdtemp(prefix=".partial-", dir=self.output_dir.parent))
        for name, data in contents.items():
            target = partial / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        if file_digests(partial) != event["files"]:
            shutil.rmtree(partial)
            raise RuntimeError(f"checkpoint {event['step']}: the shipped files do not match their sha256")
        final.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(final, ignore_errors=True)
        partial.rename(final)
        return {**event, "path": str(final)}


@functools.cache
def _channel_class() -> Any:
    import ray

    @ray.remote(num_cpus=0)
    class Channel:
        """Events from rank 0 to the kernel, and the kernel's stop request to every worker."""

        def __init__(self):
            self.events: list[dict[str, Any]] = []
            self.stop = False

        def put(self, event: dict[str, Any]) -> None:
            self.events.append(event)

        def drain(self) -> list[dict[str, Any]]:
            events, self.events = self.events, []
            return events

        def request_stop(self) -> None:
            self.stop = True

        def stopping(self) -> bool:
            return self.stop

    return Channel


class _WorkerStop:
    """The kernel's stop request, agreed on by all workers at the same step."""

    def __init__(self, channel: Any):
        self.channel, self._asked, self._looked = channel, False, 0.0

    def is_set(self) -> bool:
        import ray
        import torch
        import torch.distributed as dist

        if not self._asked and time.monotonic() - self._looked > 0.5:
            self._asked, self._looked = ray.get(self.channel.stopping.remote()), time.monotonic()
        if not dist.is_initialized():
            return self._asked
        # every rank calls this once per step: all stop at the step where any saw the request
        device = "cuda" if dist.get_backend() == "nccl" else "cpu"
        flag = torch.tensor([int(self._asked)], device=device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item())


class _WorkerSink:
    """Rank 0's events to the kernel; checkpoint files go along when the kernel cannot read them."""

    def __init__(self, channel: Any, ship: bool):
        self.channel, self.ship = channel, ship

    def __call__(self, event: dict[str, Any]) -> None:
        if self.ship and event["kind"] == "checkpoint":
            root = Path(event["path"])
            event = {**event, "contents": {f["name"]: (root / f["name"]).read_bytes() for f in event["files"]}}
        reply = self.channel.put.remote(event)
        if event["kind"] in ("checkpoint", "end"):
            import ray

            ray.get(reply)  # delivered before training goes on (or the worker exits)


def _worker_loop(loop_config: dict[str, Any]) -> None:
    """Runs in each Ray Train worker."""
    import ray
    import ray.train.torch

    from llm_magics.training.train import train

    job, channel = loop_config["job"], loop_config["channel"]
    ship = job.ship_checkpoints
    if ship is None:  # a worker on the kernel's node writes where the kernel reads
        ship = ray.get_runtime_context().get_node_id() != job.kernel_node
    if ship:
        job = dataclasses.replace(job, output_dir=tempfile.mkdtemp(prefix=f"llm_magics-{job.run_id}-"))
    device = ray.train.torch.get_device()
    device_map = {"": device} if device.type == "cuda" else None
    # the callback emits on the main process (rank 0) only; every rank obeys a stop
    train(job, _WorkerSink(channel, ship), _WorkerStop(channel), device_map=device_map)
