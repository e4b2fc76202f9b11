"""Sweeps (SPEC §10): a ``sweep:`` block runs its trials on Ray Tune; every trial is a run."""

from __future__ import annotations

import re
import time

import pytest
from helpers import qa_docs

from llm_magics import commands
from llm_magics.config.sweep import parse_sweep, trials
from llm_magics.core.errors import ConfigError, RunError

KEYS = ["learning_rate", "lora_r", "max_steps", "warmup_steps", "model", "data"]
BODY = {
    "data": "d",
    "max_steps": 16,
    "save_steps": 4,
    "eval_steps": 4,
    "eval_strategy": "steps",
    "per_device_train_batch_size": 2,
    "lora_r": 4,
    "max_length": 64,
}


def test_grids_and_distributions_make_the_trials_the_same_each_time():
    sweep = parse_sweep(
        {"learning_rate": [1e-4, 2e-4], "lora_r": {"choice": [8, 16]}, "warmup_steps": {"randint": [0, 5]},
         "num_samples": 3},
        KEYS,
    )  # fmt: skip
    found = trials(sweep, seed=1)
    assert len(found) == 6 and found == trials(sweep, seed=1)
    assert [t["learning_rate"] for t in found] == [1e-4, 2e-4] * 3
    assert {t["lora_r"] for t in found} <= {8, 16} and all(0 <= t["warmup_steps"] < 5 for t in found)
    assert sweep.metric == "eval_loss" and sweep.mode == "min" and sweep.scheduler == "asha"
    assert parse_sweep({"lora_r": [4], "metric": "eval_accuracy"}, KEYS).mode == "max"
    drawn = trials(parse_sweep({"learning_rate": {"loguniform": [1e-5, 1e-3]}, "num_samples": 20}, KEYS))
    assert all(1e-5 <= t["learning_rate"] <= 1e-3 for t in drawn)


@pytest.mark.parametrize(
    ("block", "message"),
    [
        ({"learning_rat": [1]}, "sweep: unknown key 'learning_rat' — did you mean 'learning_rate'?"),
        ({"model": ["a", "b"]}, "sweep: 'model' is the same for every trial"),
        ({"lora_r": []}, "sweep.lora_r: give at least one value"),
        ({"lora_r": {"normal": [1, 2]}}, "sweep.lora_r: give a list of values, or one of"),
        ({"learning_rate": {"uniform": [1e-3, 1e-4]}}, "low must be below high"),
        ({"learning_rate": {"loguniform": [0, 1e-4]}}, "both bounds must be above 0"),
        ({"lora_r": [4], "scheduler": "hyperband"}, "sweep.scheduler: must be 'asha' or 'none'"),
        ({"lora_r": [4], "num_samples": 0}, "sweep.num_samples: must be a whole number, at least 1"),
        ({"lora_r": [4], "mode": "lowest"}, "sweep.mode: must be 'min' or 'max'"),
        ("lr", "sweep: give a mapping of keys to values"),
        (
            {"lora_r": [], "learning_rat": [1], "scheduler": "hyperband"},
            "3 problems in the configuration:\n  - sweep.lora_r: give at least one value\n"
            "  - sweep: unknown key 'learning_rat' — did you mean 'learning_rate'?\n"
            "  - sweep.scheduler: must be 'asha' or 'none'",
        ),
        ({"lora_r": [4, 8], "num_samples": 50_000_000}, "sweep: 100,000,000 trials (the grid times num_samples); at"),
    ],
)
def test_a_bad_sweep_block_is_a_short_error(block, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        parse_sweep(block, KEYS)


def test_every_bad_value_is_named_and_nothing_is_written(db, tiny_path):
    db["d"].insert_many(qa_docs(20))
    mapping = {**BODY, "model": tiny_path, "sweep": {"lora_r": [4, 0], "learning_rate": [1e-4, -1.0, 0.0]}}
    with pytest.raises(ConfigError) as raised:
        commands.finetune(db, "m", mapping)
    assert str(raised.value) == (
        "3 problems in the configuration:\n"
        "  - sweep: lora_r=0: lora_r: must be at least 1, got 0\n"
        "  - sweep: learning_rate=-1: learning_rate: must be greater than 0, got -1.0\n"
        "  - sweep: learning_rate=0: learning_rate: must be greater than 0, got 0.0"
    )
    combined = {**BODY, "model": tiny_path, "use_lora": False, "sweep": {"bits": [None, 4], "lora_r": [4, 8]}}
    with pytest.raises(ConfigError, match=r"^sweep: bits=4: bits: a quantized model trains only through LoRA"):
        commands.finetune(db, "m", combined)
    bounded = {**BODY, "model": tiny_path, "sweep": {"warmup_steps": {"randint": [-3, 2]}}}
    with pytest.raises(ConfigError, match=r"sweep: warmup_steps=-3 \(a bound of its distribution\): warmup_steps"):
        commands.finetune(db, "m", bounded)
    assert db.show("run") == [] and db.store.sweeps.count_documents({}) == 0


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"metric": "eval_los"}, "sweep.metric: the trials do not log 'eval_los' — did you mean 'eval_loss'?"),
        ({"metric": "eval_loss", "eval": False}, "sweep.metric: eval_loss needs evaluations — set eval_strategy"),
    ],
)
def test_a_metric_the_trials_will_not_log_is_refused(db, tiny_path, options, message):
    db["d"].insert_many(qa_docs(20))
    body = {**BODY, "model": tiny_path}
    if options.pop("eval", True) is False:
        body = {**body, "eval_strategy": "no"}
    mapping = {**body, "sweep": {"lora_r": [4, 8], **options}}
    with pytest.raises(ConfigError, match=re.escape(message)):
        commands.finetune(db, "m", mapping, dry_run=True)
    assert db.show("run") == [] and db.store.sweeps.count_documents({}) == 0


def test_asha_counts_the_reports_the_metric_makes():
    from types import SimpleNamespace

    from llm_magics import LLMTrainingConfiguration
    from llm_magics.training.tune import _reports

    config = LLMTrainingConfiguration(max_steps=40, logging_steps=1, eval_steps=10, save_steps=20)
    job = SimpleNamespace(config=config)
    assert _reports(job, "loss") == 40  # every logged step: ASHA's max_t must not be 4 + 1
    assert _reports(job, "eval_loss") == 4
    scored = config.replace(eval_strategy="steps", data="d", prompt="p", response="r", eval_generate={})
    assert _reports(SimpleNamespace(config=scored), "eval_rouge_l") == 2  # generations are scored where it saves


def test_a_nan_metric_never_becomes_the_sweeps_best(db):
    from llm_magics.training.sweeps import best_checkpoint

    for step, value in ((1, 0.9), (2, float("nan")), (3, 0.7), (4, float("inf"))):
        db.store.checkpoints.insert_one({"_id": f"t-{step}", "run": "t", "step": step, "metrics": {"loss": value}})
    record = {"trials": ["t"], "metric": "loss", "mode": "max"}
    assert best_checkpoint(db, record)["_id"] == "t-1"
    assert best_checkpoint(db, {**record, "mode": "min"})["_id"] == "t-3"


def test_a_sweep_whose_process_died_is_reaped_like_its_trials(db):
    import datetime as dt

    from llm_magics.store.records import now
    from llm_magics.training.sweeps import SweepRun

    gone = {"host": "elsewhere.invalid", "machine": "x", "pid": 1}
    db.store.runs.insert_one({"_id": "trial1", "model": "m", "status": "interrupted", "started": now()})
    db.store.sweeps.insert_one({"_id": "sw1", "model": "m", "status": "running", "trials": ["trial1"],
                                "detached": True, "owner": gone, "heartbeat": now() - dt.timedelta(seconds=1),
                                "heartbeat_every": 0.001,
                                "metric": "eval_loss", "mode": "min"})  # fmt: skip
    handle = SweepRun(db, "sw1", [])
    db.store.reap()
    assert handle.wait(10).status == "interrupted"  # wait() ends
    with pytest.raises(RunError, match="is not running"):
        handle.stop()  # and nobody is asked who is not there


def test_an_ended_sweep_shows_its_heading_its_trials_times_and_which_trial_each_run_is(db):
    """#32: the summary keeps the sweep's name, id and status; each trial has its own time; the
    run list says which trial a run is and what it swept."""
    import datetime as dt
    from types import SimpleNamespace

    from llm_magics.store.records import now
    from llm_magics.training.sweeps import attached_sweep
    from llm_magics.widgets.sweep import SweepView

    db.store.save_model("swept")
    begun = now() - dt.timedelta(minutes=5)
    values = [{"learning_rate": 1e-3, "lora_r": 8}, {"learning_rate": 1e-9, "lora_r": 8}]
    for number, (run_id, status, minutes, duration) in enumerate(
        (("tr000001", "completed", 0, 39.1), ("tr000002", "pruned", 1, 7.5)), 1
    ):
        db.store.add_run({"_id": run_id, "model": "swept", "status": status, "backend": "ray", "sweep": "sw000001",
                          "trial": values[number - 1], "trial_number": number, "step": 8, "total_steps": 24,
                          "started": begun + dt.timedelta(minutes=minutes), "duration": duration})  # fmt: skip
    db.store.sweeps.insert_one({"_id": "sw000001", "model": "swept", "status": "completed", "metric": "eval_loss",
                                "mode": "min", "scheduler": "asha", "trials": ["tr000001", "tr000002"],
                                "values": values, "started": begun})  # fmt: skip
    table = commands.runs_table(db, "swept")
    assert [row[1] for row in table.rows] == [
        "tr000001 · trial 1 · learning_rate=0.001, lora_r=8",
        "tr000002 · trial 2 · learning_rate=1e-09, lora_r=8",
    ]
    assert [row[-1] for row in table.rows] == ["39.1 s", "7.5 s"]
    view = SweepView(attached_sweep(db, "sw000001"))
    assert "00:39" in view.body.value and "00:07" in view.body.value  # each trial's own time
    updated = []
    view._handle = SimpleNamespace(update=updated.append)  # as show() displays it
    view.finish()
    deadline = time.monotonic() + 10
    while not updated:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    summary = updated[0]._repr_mimebundle_()["text/html"]
    assert "llm-sweep-summary" in summary and "<b>swept</b> · sweep <code>sw000001</code>" in summary
    assert '<span class="llm-sweep-status">completed</span>' in summary


def test_a_dry_run_lists_the_trials_and_the_memory_of_the_largest(db, tiny_path):
    db["d"].insert_many(qa_docs(20))
    mapping = {**BODY, "model": tiny_path, "sweep": {"lora_r": [4, 64], "learning_rate": [1e-4, 2e-4]}}
    report = commands.finetune(db, "m", mapping, dry_run=True)
    text = repr(report)
    assert "4 trials on Ray Tune" in text and "the largest needs ≈" in text
    assert [row[1:] for row in report.table().rows] == [
        ["4", "0.0001"],
        ["4", "0.0002"],
        ["64", "0.0001"],
        ["64", "0.0002"],
    ]
    assert db.show("run") == []


@pytest.mark.slow
@pytest.mark.ray
@pytest.mark.xdist_group("ray")  # in turn with test_ray.py's local-Ray tests; the sweeps share the Ray the first starts
def test_a_grid_on_ray_tune_prunes_the_trials_that_fall_behind_and_best_is_the_best_trials(db, tiny_path):
    """Two learning rates far too small to learn, tried after two that learn: ASHA stops them at
    an evaluation; every trial is a run of the model; @best is the best trial's best checkpoint."""
    import ray

    db["d"].insert_many(qa_docs(40))
    sweep = {"learning_rate": [5e-3, 1e-9], "lora_r": [4, 8], "max_concurrent_trials": 2}
    mapping = {**BODY, "model": tiny_path, "max_steps": 24, "sweep": sweep}
    from IPython.utils.capture import capture_output

    channels_before = _channel_actors() if ray.is_initialized() else 0
    with capture_output() as shown:
        handle = commands.finetune(db, "swept", mapping)
        assert handle.status == "running"  # the notebook is free while the trials train
        handle.wait(600)
    assert "Configuration for experiment" not in shown.stdout + shown.stderr  # the view shows it, not Tune
    assert _channel_actors() == channels_before + 1  # one actor, one process, carries every trial's events
    record = handle.record
    assert record["status"] == "completed" and len(record["trials"]) == 4
    runs = {run["_id"]: run for run in db.show("run", "swept")}
    assert set(runs) == set(record["trials"]) and all(run["sweep"] == handle.id for run in runs.values())
    statuses = [runs[run_id]["status"] for run_id in record["trials"]]
    # the two that learn set the bar (ASHA may stop the slower of them: they run side by side);
    # the two that cannot learn start after them and fall far below it at their first rung
    assert "completed" in statuses[:2] and statuses[2:] == ["pruned", "pruned"], statuses
    pruned = runs[record["trials"][2]]
    assert re.match(r"stopped by ASHA at step \d+ \(eval_loss [\d.]+\)", pruned["reason"])
    assert pruned["trial"]["learning_rate"] == 1e-9 and pruned["step"] < 24
    # each trial's own time (#32): it starts when Tune starts it and ends when Tune ends it
    started = [runs[run_id]["started"] for run_id in record["trials"]]
    assert min(started[2:]) > max(started[:2])  # two at a time: the last two waited for a slot
    # (not the sweep's: two trials pruned at one rung may well take the same millisecond-rounded time)
    for run in runs.values():
        assert abs(run["duration"] - (run["ended"] - run["started"]).total_seconds()) < 2, run
    sweep_seconds = (record["ended"] - record["started"]).total_seconds()
    assert all(run["duration"] < sweep_seconds for run in runs.values())
    completed = [run["duration"] for run in runs.values() if run["status"] == "completed"]
    assert max(runs[run_id]["duration"] for run_id in record["trials"][2:]) < min(completed)
    from llm_magics.config.sweep import described

    ids = [row[1] for row in commands.runs_table(db, "swept").rows]
    assert f"{pruned['_id']} · trial 3 · {described(pruned['trial'])}" in ids
    lines = commands.log_lines(db, pruned["_id"], 200)  # the trial's training log
    assert any(" step 4/24  " in line and " eval_loss " in line for line in lines)
    assert lines[-1].split(" ", 2)[2].startswith(f"pruned at step {pruned['step']}/24 after ")
    best = db.store.checkpoint("swept", "best")
    assert best["_id"] == record["best"] and runs[best["run"]]["trial"]["learning_rate"] == 5e-3
    assert isinstance(commands.predict(db, "swept@best", ["what is 3?"], max_new_tokens=2), str)
    from llm_magics.widgets.compare import config_diff
    from llm_magics.widgets.sweep import SweepView

    assert [key for key, _ in config_diff([runs[run_id] for run_id in record["trials"]])] == ["learning_rate", "lora_r"]
    again = SweepView(commands.attach(db, handle.id))  # %llm_attach SWEEP: the ended sweep's trials
    assert again.ended and [state.status for state in again.states] == statuses


def _channel_actors() -> int:
    """How many event channels (Ray actors, each a process) this Ray has started, ended ones too."""
    from ray._private.state import actors

    return sum(actor["ActorClassName"].rsplit(".", 1)[-1] == "Channel" for actor in actors().values())


@pytest.mark.slow
@pytest.mark.ray
@pytest.mark.xdist_group("ray")
def test_a_dpo_sweep_over_beta_is_judged_by_what_its_trials_answer(db, tiny_path):
    """A method's own setting is swept like any key: each trial trains DPO with its beta; the sweep's
    metric is a generation score (eval_generate), reported at each save."""
    from helpers import preference_docs

    db["prefs"].insert_many(preference_docs(4))
    body = {"method": "dpo", "data": "prefs", "prompt": "q", "chosen": "good", "rejected": "bad", "lora_r": 4}
    sweep = {"beta": [0.1, 0.5], "max_concurrent_trials": 2, "scheduler": "none", "metric": "eval_rouge_l"}
    mapping = {**body, "model": tiny_path, "max_steps": 8, "save_steps": 4, "eval_steps": 4, "eval_strategy": "steps"}
    scored = {"eval_generate": {"metrics": ["rouge_l"], "max_new_tokens": 4}}
    handle = commands.finetune(db, "dpo-sweep", {**mapping, **scored, "learning_rate": 5e-3, "sweep": sweep})
    handle.wait(300)
    record = handle.record
    assert record["status"] == "completed", [run.error for run in handle.runs]
    assert record["mode"] == "max"  # a score: greater is better
    runs = [db.store.run(run_id) for run_id in record["trials"]]
    assert [run["config"]["method_args"]["beta"] for run in runs] == [0.1, 0.5]
    assert all(run["status"] == "completed" and run["config"]["method"] == "dpo" for run in runs)
    evaluated = [row for row in db.store.run_metrics(runs[0]["_id"]) if "eval_loss" in row]
    assert len(evaluated) == 2 and all("eval_rewards/margins" in row and "eval_rouge_l" in row for row in evaluated)
    best = handle.best
    assert best["metrics"]["eval_rouge_l"] == max(
        c["metrics"]["eval_rouge_l"]
        for run in runs
        for c in db.store.list_checkpoints("dpo-sweep")
        if c["run"] == run["_id"]
    )


def test_a_methods_signal_and_a_generation_score_are_sweep_metrics(db, tiny_path):
    """What the trials log is what a sweep may be judged by; a typo is named before any trial starts."""
    from helpers import preference_docs

    from llm_magics.training.sweeps import plan_sweep

    db["prefs"].insert_many(preference_docs(1))
    mapping = {"method": "dpo", "data": "prefs", "prompt": "q", "chosen": "good", "rejected": "bad", "model": tiny_path}
    mapping |= {"eval_strategy": "steps", "eval_steps": 4, "save_steps": 4, "eval_generate": {"metrics": ["chrf"]}}
    for metric in ("eval_rewards/margins", "eval_chrf"):
        plan_sweep("m", {**mapping, "sweep": {"beta": [0.1, 0.2], "metric": metric}}, db)
    with pytest.raises(ConfigError, match="the trials do not log 'eval_chr' — did you mean 'eval_chrf'"):
        plan_sweep("m", {**mapping, "sweep": {"beta": [0.1, 0.2], "metric": "eval_chr"}}, db)
    assert not db.store.list_runs()


@pytest.mark.slow
@pytest.mark.ray
@pytest.mark.xdist_group("ray")
def test_a_sweep_stopped_from_its_view_ends_every_trial_with_a_checkpoint(db, tiny_path):
    from llm_magics.widgets.sweep import SweepView, sweep_html

    db["d"].insert_many(qa_docs(40))
    sweep = {"learning_rate": [5e-3, 1e-3], "max_concurrent_trials": 2, "scheduler": "none"}
    mapping = {**BODY, "model": tiny_path, "max_steps": 5000, "save_steps": 1000, "eval_steps": 1000, "sweep": sweep}
    handle = commands.finetune(db, "stopped-sweep", mapping)
    view = SweepView(handle)
    deadline = time.monotonic() + 300
    while not all(run.state.step >= 2 for run in handle.runs):
        assert time.monotonic() < deadline, [run.state.status for run in handle.runs]
        time.sleep(0.5)
    view.stop_button.click()
    handle.wait(300)
    assert handle.record["status"] == "stopped"
    for run in handle.runs:
        record = run.record
        assert record["status"] == "stopped" and run.checkpoints[-1]["step"] == record["step"] < 5000
    html = sweep_html(view.states, view.values, view.metric, view.mode)
    assert html.count('class="llm-trial"') == 2 and "stopped" in html


@pytest.mark.slow
@pytest.mark.ray
@pytest.mark.xdist_group("ray-own")  # a Ray of its own process
def test_a_detached_sweep_runs_in_its_own_process_and_stops_from_another_connection(tiny_path, workdir):
    """``--detach`` on a sweep: its own process runs Ray Tune and records the trials; any kernel
    follows them through the store and can stop it (every trial ends with a checkpoint)."""
    import os

    from llm_magics import connect

    db = connect()  # the embedded store: another process opens it
    db["d"].insert_many(qa_docs(40))
    sweep = {"learning_rate": [5e-3, 1e-3], "max_concurrent_trials": 2, "scheduler": "none"}
    mapping = {**BODY, "model": tiny_path, "max_steps": 5000, "save_steps": 1000, "eval_steps": 1000, "sweep": sweep}
    handle = commands.finetune(db, "detached-sweep", mapping, detach=True)
    record = handle.record
    assert record["detached"] and all(run.followed for run in handle.runs)
    assert {connect().run(run.id).record["owner"]["pid"] for run in handle.runs} != {os.getpid()}
    deadline = time.monotonic() + 300
    while not all(run.state.step >= 2 for run in handle.runs):
        assert time.monotonic() < deadline, [(run.state.status, run.state.error) for run in handle.runs]
        time.sleep(0.5)
    commands.attach(connect(), handle.id).stop()  # another connection: as another kernel would
    handle.wait(300)
    assert handle.status == "stopped"
    for run in handle.runs:
        stored = connect().run(run.id).record
        assert stored["status"] == "stopped" and run.checkpoints[-1]["step"] == stored["step"] < 5000


def test_a_sweeps_trials_share_their_documents_and_say_a_data_warning_once(db, tiny_path):
    from llm_magics.core.errors import DataWarning

    db["d"].insert_many(qa_docs(10) + qa_docs(10))  # every document twice
    mapping = {**BODY, "model": tiny_path, "sweep": {"lora_r": [4, 8], "learning_rate": [1e-4, 2e-4]}}
    with pytest.warns(DataWarning) as warned:
        commands.finetune(db, "m", mapping, dry_run=True)
    said = [str(w.message) for w in warned if issubclass(w.category, DataWarning)]
    assert len(said) == 1 and said[0].startswith("data: 10 exact duplicate document(s)"), said
