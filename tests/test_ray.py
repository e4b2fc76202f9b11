"""Training on a local Ray cluster with two CPU workers (Ray Train's TorchTrainer)."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest
from helpers import qa_docs, small_config

from llm_magics import LLM

pytestmark = [pytest.mark.ray, pytest.mark.slow]
ray = pytest.importorskip("ray")
TWO_WORKERS = {"scaling_config": {"num_workers": 2}}


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def test_a_ray_cell_returns_at_once_and_records_checkpoints(shell, db):
    db["docs"].insert_many(qa_docs(40, valid_every=5))
    steps_seen = []
    shell.ns["seen"] = steps_seen
    started = time.monotonic()
    shell.run(
        "%%llm_finetune ray-model --ray -o run\n"
        "model: {{ base_path }}\ndata: docs\nbits: 4\nlora_r: 4\nmax_length: 32\nmax_steps: 6\nsave_steps: 2\n"
        "eval_steps: 2\neval_strategy: steps\nray_configs: {scaling_config: {num_workers: 2}}"
    )
    returned = time.monotonic() - started
    run = shell.ns["run"]
    run.state.listeners.append(lambda state: steps_seen.append(state.step))
    assert returned < 3, returned
    run.wait(300)
    assert run.status == "completed", run.error
    assert [c["step"] for c in run.checkpoints] == [2, 4, 6]
    assert len(set(steps_seen)) >= 3  # the live state moved while the workers trained
    assert run.metrics["eval_loss"].notna().sum() == 3
    answer, _ = shell.run('%llm_predict ray-model@4 "### Human: 1 ### Assistant:" --max-new-tokens 3')
    assert isinstance(answer, str)


def test_a_worker_error_fails_the_run_with_the_workers_message(db, tiny_path):
    db["docs"].insert_many(qa_docs(20))
    config = small_config(model_kwargs={"attn_implementation": "no-such-attention"})
    run = LLM("ray-broken", tiny_path).fit(
        select="docs", db=db, configuration=config, on_ray=True, ray_configs=TWO_WORKERS
    )
    run.wait(300)
    assert run.status == "failed"
    assert "no-such-attention" in run.error and run.record["error"] == run.error
    assert "\n" not in run.error  # the worker's own line, not Ray's whole report


def test_checkpoints_from_another_node_travel_to_the_kernel(db, tiny_path, workdir):
    """What a remote cluster does: the files come with the event and are written here, checked."""
    from llm_magics.run import Control, Run, RunState
    from llm_magics.store import now
    from llm_magics.training.launch import plan
    from llm_magics.training.ray import run_on_ray
    from llm_magics.training.recorder import Recorder
    from llm_magics.training.train import TrainJob

    db["docs"].insert_many(qa_docs(20))
    config = small_config(model=tiny_path, data="docs", max_steps=4, eval_strategy="no", ray_configs=TWO_WORKERS)
    checked = plan("shipped", config, db, backend="ray")
    run_id = uuid.uuid4().hex[:8]
    kernel_dir = workdir / "kernel-side" / run_id
    db.store.add_run({"_id": run_id, "model": "shipped", "status": "starting", "started": now()})
    db.store.save_model("shipped", base_model=checked.base.path, bits=None, task="causal-lm")
    run = Run(db, run_id, RunState(run_id, "shipped", "ray"), Control())
    job = TrainJob(
        run_id,
        checked.base,
        config.to_dict(),
        checked.data.train,
        None,
        str(kernel_dir),
        template=checked.template,
        ship_checkpoints=True,
    )
    run_on_ray(job, Recorder(db.store, run.state), run, config)
    run.wait(300)
    assert run.status == "completed", run.error
    records = db.show("checkpoint", "shipped")
    assert [c["step"] for c in records] == [2, 4]
    assert all(Path(c["path"]).parent == kernel_dir for c in records)
    assert isinstance(db.load("model", "shipped").predict("hi", max_new_tokens=2), str)  # sha256 verified on load


def test_stop_ends_a_ray_run_with_a_final_checkpoint(db, tiny_path):
    db["docs"].insert_many(qa_docs(20))
    config = small_config(max_steps=100_000, save_steps=100_000, eval_strategy="no")
    run = LLM("ray-stopped", tiny_path).fit(
        select="docs", db=db, configuration=config, on_ray=True, ray_configs=TWO_WORKERS
    )
    deadline = time.monotonic() + 240
    while run.step < 3:
        assert time.monotonic() < deadline and run.status not in ("failed", "completed"), run.error
        time.sleep(0.2)
    run.stop().wait(120)
    assert run.status == "stopped"
    assert run.checkpoints[-1]["step"] == run.record["step"] >= 3
