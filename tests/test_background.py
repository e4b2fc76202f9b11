"""Runs that do not block: --async in a thread, and Ray Train with two CPU workers."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from helpers import qa_docs, small_config

from llm_magics import LLM

pytestmark = pytest.mark.slow
LONG = {"max_steps": 100_000, "save_steps": 100_000, "eval_strategy": "no"}


def wait_for_step(run, step: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while run.step < step:
        assert time.monotonic() < deadline, f"run stuck at step {run.step} ({run.status}: {run.error})"
        time.sleep(0.05)


def test_async_returns_at_once_and_the_notebook_stays_usable(shell, db):
    db["docs"].insert_many(qa_docs(30))
    started = time.monotonic()
    shell.run("%%llm_finetune bg --async -o run\nmodel: {{ base_path }}\ndata: docs\nlora_r: 4\nmax_steps: 40")
    returned = time.monotonic() - started
    run = shell.ns["run"]
    assert returned < 3 and run.status in ("starting", "running")
    answer, _ = shell.run("1 + 1")  # other cells run meanwhile
    assert answer == 2
    run.wait(120)
    assert run.status == "completed" and run.checkpoints[-1]["step"] == 40


def test_the_views_stop_button_saves_a_final_checkpoint(db, tiny_path):
    from llm_magics.widgets.progress import TrainingView

    db["docs"].insert_many(qa_docs(30))
    views = []
    run = LLM("stopped", tiny_path).fit(
        select="docs",
        db=db,
        configuration=small_config(**LONG),
        backend="thread",
        on_start=lambda r: views.append(TrainingView(r, 0.1)),
    )
    wait_for_step(run, 3)
    views[0].stop_button.click()
    run.wait(60)
    assert run.status == "stopped"
    final = run.checkpoints[-1]
    assert final["step"] == run.record["step"] >= 3 and Path(final["path"]).is_dir()
    assert views[0].stop_button.disabled


def test_two_background_runs_keep_their_records_apart(db, tiny_path):
    db["docs"].insert_many(qa_docs(30))
    runs = [
        LLM(name, tiny_path).fit(
            select="docs",
            db=db,
            backend="thread",
            configuration=small_config(max_steps=steps, save_steps=2, eval_strategy="no"),
        )
        for name, steps in (("first", 4), ("second", 6))
    ]
    for run in runs:
        run.wait(120)
    assert [run.status for run in runs] == ["completed", "completed"]
    assert [c["step"] for c in db.show("checkpoint", "first")] == [2, 4]
    assert [c["step"] for c in db.show("checkpoint", "second")] == [2, 4, 6]
    assert len(runs[0].metrics) == 4 and len(runs[1].metrics) == 6
    assert {c["run"] for c in db.show("checkpoint", "second")} == {runs[1].id}


def test_an_error_in_the_thread_marks_the_run_failed_and_shows_it(db, tiny_path):
    from llm_magics.widgets.progress import TrainingView, summary_html

    db["docs"].insert_many(qa_docs(30))
    views = []
    config = small_config(model_kwargs={"attn_implementation": "no-such-attention"})
    run = LLM("failing", tiny_path).fit(
        select="docs",
        db=db,
        configuration=config,
        backend="thread",
        on_start=lambda r: views.append(TrainingView(r, 0.1)),
    )
    run.wait(60)
    assert run.status == "failed" and "no-such-attention" in run.error
    assert run.record["status"] == "failed" and run.record["error"] == run.error
    assert "no-such-attention" in summary_html(run.state) and "failed" in views[0].body.value
