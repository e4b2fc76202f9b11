"""Detached runs: training in an OS process of its own, which outlives the kernel (SPEC §9).

The kernel starts the process in a new session (a kernel interrupt, restart or shutdown does
not reach it) and hands it the checked job through its stdin, the database URI included: the
password is never on a command line, in an environment or in a file. The process opens the
database itself and writes its run's records, metrics and checkpoints there, with a heartbeat;
it reads stop requests from its run record. The store is the only channel: any kernel follows
the run by reading it. Its output goes to a log file beside its checkpoints, with a line per
logged step, checkpoint, evaluation and warning (``training.run_log``).
"""

from __future__ import annotations

import logging
import os
import pickle
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llm_magics.core.errors import ConfigError
from llm_magics.core.processes import process_owner
from llm_magics.store.records import now

if TYPE_CHECKING:
    from llm_magics.store.database import DatabaseHandle
    from llm_magics.store.records import Store

_log = logging.getLogger(__name__)
HEARTBEAT = 5.0  # seconds between the process's heartbeats
_LOOK = 1.0  # seconds between its looks for a stop request
FLUSH = 1.0  # seconds between its writes of new metric rows and progress (a view looks every 0.5 s)


def check_database(db: DatabaseHandle) -> None:
    """A detached run needs a database that another process can open."""
    if db.uri.startswith("mongomock://"):
        raise ConfigError(
            f"--detach: {db.uri} lives in this kernel's memory, where a training process of its own "
            "cannot see it — use the embedded store (the default: %llm_db embedded://DIR) or mongodb://"
        )


def spawn(log: Path, module: str = "llm_magics.training.detached") -> subprocess.Popen:
    """Starts the training process (``python -m module``), in a session of its own, waiting for
    its job on stdin."""
    with open(log, "ab") as output:
        child = subprocess.Popen(
            [sys.executable, "-u", "-m", module],
            stdin=subprocess.PIPE,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
        )
    # collects its exit status while this kernel lives (no zombie); after that, the system does
    threading.Thread(target=child.wait, daemon=True, name=f"llm_magics-detached-{child.pid}").start()
    return child


def owner(child: subprocess.Popen) -> dict[str, Any]:
    """The process's identity, as its run record keeps it (to tell later whether it is alive)."""
    return process_owner(child.pid)


def hand_over(child: subprocess.Popen, spec: dict[str, Any]) -> None:
    """Sends the job to the process; it starts training once it has it."""
    assert child.stdin is not None
    try:
        pickle.dump(spec, child.stdin, protocol=pickle.HIGHEST_PROTOCOL)
    finally:
        child.stdin.close()


class Heartbeat:
    """In the training process: writes the run's heartbeat every ``every`` seconds and turns a
    stop request in its record into a call of ``stop`` (the run's own). A detached sweep beats
    for all its trials (``run_ids``) and reads its stop request from the sweep's record."""

    def __init__(
        self,
        store: Store,
        run_id: str,
        stop: Callable[[], Any],
        every: float = HEARTBEAT,
        *,
        run_ids: list[str] | None = None,
        requests: Any = None,
    ):
        self.store, self.run_id, self.stop, self.every = store, run_id, stop, every
        self.run_ids, self.requests = run_ids or [run_id], requests if requests is not None else store.runs
        self._asked = False
        self._ended = threading.Event()
        self._thread = threading.Thread(target=self._beat, daemon=True, name="llm_magics-heartbeat")

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._ended.set()
        self._thread.join()

    def _beat(self) -> None:
        last = 0.0
        while not self._ended.wait(_LOOK):
            try:
                record = self.requests.find_one({"_id": self.run_id}, {"stop_requested": 1})
                if record and record.get("stop_requested") and not self._asked:
                    print("stop requested: saving a checkpoint and stopping", flush=True)
                    self._asked = True
                    self.stop()
                if time.monotonic() - last >= self.every:
                    for run_id in self.run_ids:
                        self.store.update_run(run_id)
                    if self.requests is not self.store.runs:  # a sweep's record: it beats too
                        self.requests.update_one({"_id": self.run_id}, {"$set": {"heartbeat": now()}})
                    last = time.monotonic()
            except Exception:  # the database away: the recorder's outbox waits it out
                _log.debug("heartbeat of run %s", self.run_id, exc_info=True)


def _stop_on_signals(stop: threading.Event) -> None:
    """``kill PID`` (SIGTERM) or SIGINT stop the run gracefully, with a final checkpoint."""

    def on_signal(signum: int, frame: Any) -> None:
        print(f"{signal.Signals(signum).name}: saving a checkpoint and stopping", flush=True)
        stop.set()  # a Ray run's driver passes it on to its workers

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)


def main(argv: list[str] | None = None) -> int:
    """The training process: reads its job (from stdin; a Ray Job's driver from the file it is
    given), trains it, records everything in the store."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--ray-job"]:
        from llm_magics.training.ray_job import read_spec

        spec = read_spec(Path(argv[1]))
    else:
        received = sys.stdin.buffer.read()  # at once: the kernel that writes it waits until it is read
        sys.stdin.close()
        spec = pickle.loads(received)  # imports what the job needs (torch, datasets): the kernel is free
    return _train(spec)


def _train(spec: dict[str, Any]) -> int:
    os.chdir(spec["cwd"])
    from llm_magics.runs.run import Control, Run, RunState
    from llm_magics.store.database import open_database
    from llm_magics.store.run_dirs import claim
    from llm_magics.training.local import execute
    from llm_magics.training.recorder import Recorder

    job, on_ray = spec["job"], bool(spec.get("ray"))
    db: DatabaseHandle = open_database(spec["uri"])
    db.retry_seconds = spec["retry_seconds"]
    db.store.update_run(job.run_id, owner=process_owner())  # a Ray Job's driver: known from now on
    claim(Path(job.output_dir), job.run_id)  # its directory on this machine (a cluster's may be another)
    print(f"run {job.run_id} of {spec['model']}: training in process {os.getpid()} on {db.uri}", flush=True)
    backend = "ray-job" if on_ray else "process"
    state, control = RunState(job.run_id, spec["model"], backend), Control()
    run = Run(db, job.run_id, state, control)
    recorder = Recorder(db.store, state, **spec["recorder"], log=sys.stdout)  # this process's output is the log
    _stop_on_signals(control.stop)
    error: BaseException | None = None
    with Heartbeat(db.store, job.run_id, run.stop, spec["heartbeat_every"]):
        if on_ray:
            from llm_magics.training.ray import run_on_ray

            run_on_ray(job, recorder, run, None, spec["ray_configs"]).join()
        else:
            error = execute(job, recorder, run, echo_warnings=False)  # they are in the log once
    if error is not None:
        traceback.print_exception(error)
    print(f"run {job.run_id}: {state.status}" + (f" ({state.error})" if state.error else ""), flush=True)
    return 0 if state.status in ("completed", "stopped") else 1


if __name__ == "__main__":
    sys.exit(main())
