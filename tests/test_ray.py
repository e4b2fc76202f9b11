"""Training on Ray with Ray Train's TorchTrainer: a local Ray (two CPU workers) and a cluster
reached through Ray Client (``ray://``) whose processes cannot see the kernel's files."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import qa_docs, small_config

from llm_magics import LLM

pytestmark = [pytest.mark.ray, pytest.mark.slow]
ray = pytest.importorskip("ray")
ONE_WORKER = {"scaling_config": {"num_workers": 1}}
TWO_WORKERS = {"scaling_config": {"num_workers": 2}}
# The tests on the local Ray that the first has llm_magics start share it: one pytest worker runs
# them in turn (with test_sweep.py's). Those that start a cluster of their own run in turn in
# another ("ray-own"): at most two Rays start at once on the machine. Each Ray has its own ports
# and session; a cluster started with ``ray start --temp-dir`` is found by no plain ``ray.init``.
SHARED_LOCAL_RAY = pytest.mark.xdist_group("ray")
OWN_RAY = pytest.mark.xdist_group("ray-own")


@pytest.fixture
def local_ray():
    """The local Ray the first test had llm_magics start (or one started here for a test run alone)."""
    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)


@SHARED_LOCAL_RAY
def test_fit_on_ray_starts_a_local_ray_follows_the_workers_and_stops_them_at_one_step_with_a_checkpoint(db, tiny_path):
    """No Ray running and no address: llm_magics starts a local Ray (every CPU of the machine) and
    returns at once. The live view follows the two workers; stop ends both at the step they agree
    on, with a final checkpoint. (One run does both: each Ray Train run costs about 20 CPU-s of
    Ray's own actors, whatever it trains. A run that completes on Ray: notebooks/ray.ipynb.)"""
    ray.shutdown()
    db["docs"].insert_many(qa_docs(40, valid_every=5))
    seen = []  # (step, status, time) at each change of the live state

    def follow(run):
        run.state.listeners.append(lambda state: seen.append((state.step, state.status, time.time())))

    llm = LLM("ray-model", tiny_path, bits=4)
    config = small_config(max_length=32, max_steps=100_000, save_steps=10, eval_steps=10)
    run = llm.fit(select="docs", db=db, configuration=config, on_ray=True, ray_configs=TWO_WORKERS, on_start=follow)
    assert run.status in ("starting", "running")  # the notebook is free while Ray starts and trains
    deadline = time.monotonic() + 300
    while run.step < 25:  # two evaluations and two checkpoints, in several drains (0.25 s apart)
        assert time.monotonic() < deadline and run.status not in ("failed", "completed", "stopped"), run.error
        time.sleep(0.2)
    run.stop().wait(120)
    assert run.status == "stopped", run.error
    for thread in threading.enumerate():
        if thread.name == f"llm_magics-ray-{run.id}":
            thread.join(60)  # the thread that ran it has ended
    assert {"gcs_server", "raylet"} <= _live_children()  # the Ray it started outlives the run's thread
    steps = [c["step"] for c in run.checkpoints]
    assert steps[:2] == [10, 20] and steps == sorted(set(steps)), steps
    assert steps[-1] == run.record["step"] >= 25  # the final checkpoint is where both workers stopped
    assert run.metrics["eval_loss"].notna().sum() >= 2
    # the live view moved while the workers trained, well before the run ended
    live = {step for step, status, at in seen if status == "running" and 0 < step < 20 and run.state.ended - at > 1}
    assert len(live) >= 2, seen
    assert isinstance(llm.predict("### Human: 1 ### Assistant:", checkpoint=20, max_new_tokens=3), str)


def _live_children() -> set[str]:
    import psutil

    children = psutil.Process().children(recursive=True)
    return {p.name() for p in children if p.is_running() and p.status() != psutil.STATUS_ZOMBIE}


@SHARED_LOCAL_RAY
def test_a_worker_error_fails_the_run_with_the_workers_message_passwords_hidden(local_ray, db, tiny_path):
    """Two runs that fail on their worker, at once (one CPU each): a model setting whose error holds a
    password, and deepspeed settings, which only the worker turns into TrainingArguments (the
    kernel does not build them for a Ray run): without the package, that is where it fails, and says
    why."""
    db["docs"].insert_many(qa_docs(20))
    attention = "s3://AK:hunter2@bucket/no-such-attention"  # a value whose error message holds a password
    broken = LLM("ray-broken", tiny_path).fit(
        select="docs",
        db=db,
        configuration=small_config(model_kwargs={"attn_implementation": attention}),
        on_ray=True,
        ray_configs=ONE_WORKER,
    )
    deepspeed = None
    if importlib.util.find_spec("deepspeed") is None:  # it tells by deepspeed's absence
        config = small_config(deepspeed={"train_micro_batch_size_per_gpu": "auto"}, eval_strategy="no")
        deepspeed = LLM("ray-deepspeed", tiny_path).fit(
            select="docs", db=db, configuration=config, on_ray=True, ray_configs=ONE_WORKER
        )
    broken.wait(300)
    assert broken.status == "failed"
    assert "no-such-attention" in broken.error and broken.record["error"] == broken.error
    assert "hunter2" not in broken.error and "s3://AK:***@bucket" in broken.error
    assert "\n" not in broken.error  # the worker's own line, not Ray's whole report
    if deepspeed is not None:
        deepspeed.wait(300)
        assert deepspeed.status == "failed"
        assert "deepspeed" in deepspeed.error and "PackageNotFoundError" in deepspeed.error, deepspeed.error


def _forced_shipping_run(db, tiny_path, kernel_dir, name, config):
    """A run whose workers send their checkpoint files to the kernel, as workers on another node do."""
    from llm_magics.runs.run import Control, Run, RunState
    from llm_magics.store.records import now
    from llm_magics.training.launch import plan_run
    from llm_magics.training.ray import run_on_ray
    from llm_magics.training.recorder import Recorder
    from llm_magics.training.train import TrainJob

    checked = plan_run(name, config, db, backend="ray")
    run_id = uuid.uuid4().hex[:8]
    db.store.add_run({"_id": run_id, "model": name, "status": "starting", "started": now()})
    db.store.save_model(name, base_model=checked.base.path, bits=None, task="causal-lm")
    run = Run(db, run_id, RunState(run_id, name, "ray"), Control())
    job = TrainJob(
        run_id,
        checked.base,
        checked.config,
        checked.data.train,
        None,
        str(kernel_dir / run_id),
        template=checked.template,
        ship_checkpoints=True,
    )
    run_on_ray(job, Recorder(db.store, run.state), run, None, config.ray_configs)
    return run


@SHARED_LOCAL_RAY
def test_grpo_learns_with_its_reward_by_value_while_a_run_with_corrupted_files_fails(
    local_ray, db, tiny_path, workdir, monkeypatch
):
    """Two runs at once on one Ray (one CPU each), as the worker-error test runs two: a GRPO run whose
    reward function is a local one (importable by no name, so sent by value) learns; a run whose
    shipped checkpoint files do not match their sha256 (corrupted on the way) ends, said so."""
    from test_rewards import PROMPTS, grpo_config

    from llm_magics.training import ray as on_ray

    materialize = on_ray._Pump._materialize

    def corrupted(pump, event):
        name = event["files"][0]["name"]
        event["contents"][name] += b"corrupted"
        return materialize(pump, event)

    def share_of_e(completions, **kwargs):
        return [c.count("e") / max(1, len(c)) for c in completions]

    monkeypatch.setattr(on_ray._Pump, "_materialize", corrupted)  # only runs that ship files reach it
    db["prompts"].insert_many(PROMPTS)
    config = grpo_config(reward_funcs=[share_of_e], max_steps=60, save_steps=30)
    grpo = LLM("grpo-ray", tiny_path).fit(configuration=config, db=db, on_ray=True, ray_configs=ONE_WORKER)
    db["docs"].insert_many(qa_docs(20))
    config = small_config(model=tiny_path, data="docs", max_steps=100_000, eval_strategy="no", ray_configs=ONE_WORKER)
    run = _forced_shipping_run(db, tiny_path, workdir / "kernel-side", "corrupted", config)

    run.wait(300)
    assert run.status == "failed"
    assert run.error == run.record["error"]
    assert run.error.startswith("recording the run failed, so it was stopped: RuntimeError: checkpoint 2:")
    assert "sha256" in run.error
    assert run.record["step"] < 100 and run.checkpoints == []  # stopped; no record names missing files

    assert grpo.wait(300).status == "completed", grpo.error
    assert grpo.record["backend"] == "ray" and [r["name"] for r in grpo.record["rewards"]] == ["share_of_e"]
    reward = grpo.metrics["rewards/share_of_e/mean"].tolist()
    assert reward[-1] > reward[0] + 0.3, reward
    assert len(grpo.completions()) == 12 * 8


@SHARED_LOCAL_RAY
def test_which_connections_ship_checkpoints_and_where_ray_train_stores(local_ray, tmp_path):
    from llm_magics.training.ray import default_storage, ray_trainer_kwargs, through_client

    assert through_client("ray://head.example:10001")
    assert not through_client(None) and not through_client("10.0.0.1:6379")  # a driver on a cluster node
    runs = tmp_path / "artifacts" / "model"
    assert default_storage(None, False, runs / "r1") == runs / "ray"  # a local Ray: beside the runs
    assert default_storage("ray://head.example:10001", True, runs / "r1") is None
    assert default_storage("10.0.0.1:6379", False, runs / "r1") is None
    from ray.train.constants import DEFAULT_STORAGE_PATH

    assert ray_trainer_kwargs(None, "r1", None)["run_config"].storage_path == DEFAULT_STORAGE_PATH
    chosen = ray_trainer_kwargs({"run_config": {"storage_path": "s3://bucket/ray"}}, "r1", runs / "ray")
    assert chosen["run_config"].storage_path == "s3://bucket/ray"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _private_mount(hidden: Path) -> list[str]:
    """The command prefix that runs a process seeing an empty ``hidden`` directory; skips if it cannot."""
    unshare = ["unshare", "--mount"] + ([] if os.geteuid() == 0 else ["--map-root-user"])
    prefix = [*unshare, "sh", "-c", 'mount -t tmpfs none "$0" && exec "$@"', str(hidden)]
    if not shutil.which("unshare") or subprocess.run([*prefix, "true"], capture_output=True).returncode:
        pytest.skip("needs a private mount namespace (unshare --mount) to hide the kernel's files from the cluster")
    return prefix


def _client_server_logs(temp: Path) -> str:
    """The Ray Client servers' error logs of a cluster: why a client could not connect."""
    logs = sorted(temp.glob("session_*/logs/ray_client_server*"))
    return "\n".join(f"--- {log.name}\n{log.read_text()[-3000:]}" for log in logs)


def _ray_head(command: list[str], env: dict[str, str], port: int) -> subprocess.Popen:
    """``ray start --head --block`` started, once ``port`` answers. Ray gives its processes 30 s to
    register and a busy machine can take longer: a head that gave up is started once more.

    Each cluster gets its own dashboard-agent port: at Ray's fixed default (52365) a new head's
    agent meets the agent of a cluster that is still going away, stays up without serving, and
    the cluster never takes a job ("No available agent", the CI run of stop 21)."""
    for _attempt in (1, 2):
        head = subprocess.Popen(command, env=env, start_new_session=True, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while head.poll() is None and time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                return head
            time.sleep(0.5)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(head.pid, signal.SIGKILL)
        head.wait()
    raise AssertionError(f"the Ray head did not start twice: {' '.join(command)}")


@contextlib.contextmanager
def _cluster_behind_ray_client(hidden: Path) -> Iterator[tuple[str, Path]]:
    """A one-node Ray cluster in its own processes, which see ``hidden`` empty (as another machine
    would); yields its Ray Client address and its temporary directory (with its logs)."""
    pytest.importorskip("grpc", reason="Ray Client needs ray[client]")
    prefix = _private_mount(hidden)
    temp = Path(tempfile.mkdtemp(prefix="llm-rc-", dir="/tmp"))  # Ray's socket paths must stay short
    port = _free_port()
    ray_cli = Path(sys.executable).parent / "ray"
    command = [str(ray_cli), "start", "--head", "--block", f"--port={_free_port()}", f"--ray-client-server-port={port}"]
    command += ["--num-cpus=2", "--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={temp}"]
    command += [f"--dashboard-agent-listen-port={_free_port()}"]  # see _ray_head
    env = {
        **os.environ,
        "RAY_AUTH_MODE": "disabled",  # no token for a throwaway cluster
        # The Ray Client proxy forks a server per client while gRPC's threads run; gRPC >= 1.81
        # restarts its poller in the forked child, Popen closes the poller's fd before exec, and
        # the child aborts (EBADF in epoll_wait, grpc/grpc#43055): "Starting Ray client server
        # failed", about one connection in three on a loaded machine. No fork handlers, no restart.
        "GRPC_ENABLE_FORK_SUPPORT": "false",
    }
    head = _ray_head([*prefix, *command], env, port)
    try:
        yield f"ray://127.0.0.1:{port}", temp
    finally:
        os.killpg(head.pid, signal.SIGKILL)  # a throwaway cluster: no graceful shutdown to wait for
        head.wait()
        shutil.rmtree(temp, ignore_errors=True)


@OWN_RAY
def test_a_ray_client_cluster_sends_its_checkpoints_to_the_kernel(db, tiny_path, workdir):
    """Through ``ray://`` the kernel's machine is not a cluster node: the workers cannot write where
    the kernel reads, so the checkpoint files come back over Ray and predict loads them here."""
    ray.shutdown()  # a kernel talks to one Ray: this one reaches a cluster through Ray Client
    db["docs"].insert_many(qa_docs(20))
    db.artifacts.mkdir(parents=True, exist_ok=True)
    shared = workdir / "shared"  # storage the cluster writes, as the README asks for
    ray_configs = {**ONE_WORKER, "run_config": {"storage_path": str(shared)}}
    with _cluster_behind_ray_client(db.artifacts) as (address, temp):
        llm = LLM("ray-client", tiny_path)
        config = small_config(max_steps=4, eval_strategy="no")
        run = llm.fit(select="docs", db=db, configuration=config, ray_address=address, ray_configs=ray_configs)
        run.wait(300)
        ray.shutdown()
        logs = _client_server_logs(temp) if run.status != "completed" else ""
    assert run.status == "completed", f"{run.error}\n{logs}"
    assert [c["step"] for c in run.checkpoints] == [2, 4]
    assert all(Path(c["path"]).is_relative_to(db.artifacts / "ray-client") for c in run.checkpoints)
    assert (shared / f"llm_magics-{run.id}").is_dir()
    assert isinstance(llm.predict("hi", checkpoint=2, max_new_tokens=2), str)  # sha256 checked on load


@OWN_RAY
def test_ray_detach_submits_a_ray_job_whose_driver_records_the_run_and_stops_from_anywhere(tiny_path, workdir):
    """``--ray --detach``: a Ray Job on a cluster of its own (``ray start --head``, as a user runs
    it): the kernel only submits; the job's driver trains with Ray Train, writes the records to
    the embedded store (the cluster is on this machine), reads its stop request there, and its
    output is the job's log."""
    from llm_magics import commands, connect

    db = connect()
    db["docs"].insert_many(qa_docs(30))
    temp = Path(tempfile.mkdtemp(prefix="llm-job-", dir="/tmp"))  # Ray's socket paths must stay short
    port, dashboard = _free_port(), _free_port()
    command = [str(Path(sys.executable).parent / "ray"), "start", "--head", "--block", f"--port={port}"]
    command += [f"--dashboard-port={dashboard}", "--include-dashboard=true", "--num-cpus=2", "--disable-usage-stats"]
    command += [f"--temp-dir={temp}", f"--dashboard-agent-listen-port={_free_port()}"]  # see _ray_head
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "GRPC_ENABLE_FORK_SUPPORT": "false"}
    head = _ray_head(command, env, dashboard)
    try:
        config = small_config(max_steps=5000, save_steps=1000, eval_strategy="no")
        run = LLM("ray-job", tiny_path).fit(
            select="docs", db=db, configuration=config, ray_address=f"127.0.0.1:{port}", ray_configs=ONE_WORKER,
            detach=True,
        )  # fmt: skip
        record = run.record
        assert record["backend"] == "ray-job" and record["ray_job"]["submission_id"] == f"llm_magics-{run.id}"
        deadline = time.monotonic() + 240
        while not (run.state.status == "running" and run.state.step >= 2):
            assert time.monotonic() < deadline and run.state.status not in ("failed", "interrupted"), run.state.error
            time.sleep(0.5)
        assert run.record["owner"]["pid"] != os.getpid()  # the driver's, on the cluster
        connect().run(run.id).stop()  # from another connection, as another kernel would
        assert run.wait(240).status == "stopped", run.error
        assert run.checkpoints[-1]["step"] == run.record["step"]
        assert not (Path(record["output_dir"]) / "ray-job.pkl").exists()  # the job's file is read once
        output = "\n".join(commands.log_lines(db, run.id, 200))
        assert f"run {run.id} of ray-job: training in process" in output and f"run {run.id}: stopped" in output
    finally:
        os.killpg(head.pid, signal.SIGKILL)
        head.wait()
        shutil.rmtree(temp, ignore_errors=True)


def test_ray_detach_keeps_the_embedded_store_to_a_cluster_on_this_machine(tiny_path, workdir):
    from llm_magics import connect
    from llm_magics.core.errors import ConfigError

    db = connect()
    db["docs"].insert_many(qa_docs(10))
    with pytest.raises(ConfigError, match=r"the embedded store is a file on this machine.*use mongodb://"):
        LLM("far", tiny_path).fit(
            select="docs", db=db, configuration=small_config(), ray_address="ray://head.invalid:10001", detach=True
        )
    assert db.show("run") == []
