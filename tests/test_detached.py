"""Detached runs (SPEC §9): training in a process of its own, followed, stopped and resumed from
any kernel through the store. Every run here is a real process on the embedded store."""

from __future__ import annotations

import os
import re
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import qa_docs, small_config

from llm_magics import LLM, connect
from llm_magics.core.errors import ConfigError, RunError
from llm_magics.store.records import FINAL

pytestmark = pytest.mark.slow


@pytest.fixture
def store():
    """The embedded store in the test's directory, with documents to train on."""
    db = connect()
    db["docs"].insert_many(qa_docs(40))
    return db


def until(condition, timeout: float = 120.0, every: float = 0.2):
    """Waits for ``condition()`` to be true; returns its value."""
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(every)
    return value


def detached(db, name: str, tiny_path: str, **config):
    return LLM(name, tiny_path).fit(select="docs", db=db, configuration=small_config(**config), detach=True)


def test_a_detached_run_trains_in_its_own_process_and_the_kernel_follows_it(store, tiny_path):
    run = detached(store, "m", tiny_path, max_steps=12, save_steps=4, eval_steps=4)
    record = run.record
    assert record["backend"] == "process" and record["owner"]["pid"] != os.getpid()
    assert record["heartbeat_every"] > 0
    # the job travels through the process's stdin: no URI on its command line or in its environment
    pid = record["owner"]["pid"]
    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    environ = Path(f"/proc/{pid}/environ").read_bytes()
    assert b"embedded://" not in cmdline + environ and str(Path.cwd()).encode() not in cmdline
    assert stat.S_IMODE(os.stat(record["log"]).st_mode) == 0o600
    assert run.wait(180).status == "completed", run.error
    assert [c["step"] for c in run.checkpoints] == [4, 8, 12]
    assert run.state.step == 12 and [row["step"] for row in run.state.history if "loss" in row] == list(range(1, 13))
    assert run.metrics["step"].tolist()[-1] == 12
    # its log reads like a training log (#32): a line per logged step, each checkpoint, the end
    log = Path(record["log"]).read_text()
    assert [int(n) for n in re.findall(r"^\S+ \S+ step (\d+)/12  epoch .* loss ", log, re.M)] == list(range(1, 13))
    assert len(re.findall(r"^\S+ \S+ step \d+/12 .* eval_loss ", log, re.M)) == 3
    assert re.findall(r"checkpoint (\d+) saved: ", log) == ["4", "8", "12"]
    assert re.search(rf" completed at step 12/12 after [\d.]+ s\nrun {run.id}: completed\n$", log)
    assert connect().load("model", "m").predict("what is 3?", max_new_tokens=3) is not None


def test_stopped_from_another_process_it_saves_a_checkpoint_where_it_was(store, tiny_path):
    run = detached(store, "stoppable", tiny_path, max_steps=5000, save_steps=1000, eval_strategy="no")
    until(lambda: run.state.status == "running" and run.state.step >= 3)
    script = f"from llm_magics import connect; connect().run({run.id!r}).stop()"
    subprocess.run([sys.executable, "-c", script], check=True, timeout=120)
    assert run.wait(180).status == "stopped"
    record = run.record
    assert 3 <= record["step"] < 5000
    (last,) = run.checkpoints
    assert last["step"] == record["step"]  # the final checkpoint is the step it reached
    with pytest.raises(RunError, match="is not training"):
        connect().run(run.id).stop()


def test_killed_it_is_interrupted_and_resume_continues_as_if_it_never_stopped(store, tiny_path):
    # a constant learning rate: the curve of any max_steps is the same, so the comparison is exact
    same = {"save_steps": 3, "eval_strategy": "no", "lr_scheduler_type": "constant", "learning_rate": 5e-3}
    run = detached(store, "killed", tiny_path, max_steps=5000, **same)
    until(lambda: run.state.checkpoints and run.state.step >= 4)
    os.kill(run.record["owner"]["pid"], signal.SIGKILL)
    other = connect()  # another kernel's view of it: the next look marks it
    assert until(lambda: other.run(run.id).status in FINAL, timeout=15) and other.run(run.id).status == "interrupted"
    assert run.wait(15).status == "interrupted"
    saved = run.checkpoints[-1]["step"]
    assert other.load("model", "killed").predict("what is 3?", max_new_tokens=2) is not None
    llm = LLM("killed", tiny_path)
    resumed = llm.fit(
        select="docs",
        db=other,
        configuration=small_config(max_steps=saved + 3, **same),
        resume_from_checkpoint=True,
        detach=True,
    )
    assert resumed.wait(180).status == "completed", resumed.error
    whole = llm.fit(select="docs", db=other, configuration=small_config(max_steps=saved + 3, **same))
    continued, reference = resumed.metrics.set_index("step"), whole.metrics.set_index("step")
    assert continued.index.tolist() == [saved + 1, saved + 2, saved + 3]
    assert continued["loss"].tolist() == pytest.approx(reference.loc[continued.index, "loss"].tolist(), rel=1e-5)


def test_two_detached_runs_and_one_in_the_kernel_at_once_keep_their_records_apart(store, tiny_path):
    first = detached(store, "first", tiny_path, max_steps=16, save_steps=4, eval_steps=4)
    second = detached(store, "second", tiny_path, max_steps=16, save_steps=4, eval_steps=4)
    here = LLM("here", tiny_path).fit(select="docs", db=store, configuration=small_config(max_steps=16, save_steps=4))
    for run in (first, second):
        assert run.wait(240).status == "completed", run.error
    reader = connect()
    for run in (first, second, here):
        assert reader.run(run.id).status == "completed"
        assert reader.store.run_metrics(run.id)[-1]["step"] == 16
        assert [row["step"] for row in reader.store.run_metrics(run.id) if "loss" in row] == list(range(1, 17))
        checkpoints = reader.show("checkpoint", run.model)
        assert [(c["run"], c["step"]) for c in checkpoints] == [(run.id, step) for step in (4, 8, 12, 16)]
    assert reader.show("model") == ["first", "here", "second"]


def test_a_failing_run_ends_failed_with_its_error_and_the_end_of_its_log(store, tiny_path):
    from llm_magics import commands
    from llm_magics.widgets.progress import summary_html

    run = detached(store, "failing", tiny_path, max_steps=20, save_steps=3, eval_strategy="no")
    Path(run.record["output_dir"], "checkpoint-3").write_text("in the way")  # saving at step 3 fails
    assert run.wait(180).status == "failed"
    assert "checkpoint-3" in run.error and run.record["step"] >= 2
    lines = commands.log_lines(store, run.id, 40)
    assert any("Traceback" in line for line in lines) and "failed" in lines[-1]
    summary = summary_html(connect().run(run.id).stored_state())
    assert 'class="llm-log"' in summary and "FileExistsError" in summary


def test_the_magics_start_attach_list_and_read_the_log(shell, tiny_path):
    from IPython.core.error import UsageError

    shell.run("%llm_db embedded://store")
    connect("embedded://store")["docs"].insert_many(qa_docs(30))
    body = "model: {{ base_path }}\ndata: docs\nlora_r: 4\nmax_steps: 8\nsave_steps: 4\nmax_length: 64\n"
    shell.run("%%llm_finetune m --detach -o run\n" + body)
    run = shell.ns["run"]
    assert run.record["backend"] == "process" and run.status in ("starting", "running")
    assert shell.run("%llm_attach m")[0] is run  # the run this kernel already follows
    assert run.wait(180).status == "completed"
    table, _ = shell.run("%llm_runs")
    assert run.id in table._repr_html_() and "process" in table._repr_html_()
    _, shown = shell.run(f"%llm_logs {run.id} --tail 1")
    assert shown.stdout == f"run {run.id}: completed\n"
    assert shell.run(f"%llm_attach {run.id}")[0].status == "completed"
    shell.run("%%llm_finetune k -o k\nlogging_steps: 3\n" + body)  # in the kernel: a log too
    _, shown = shell.run(f"%llm_logs {shell.ns['k'].id}")
    assert re.findall(r" step (\d+)/8  ", shown.stdout) == ["3", "6"]  # a line per logging step, no more
    assert shown.stdout.splitlines()[-1].split(" ", 2)[2].startswith("completed at step 8/8 after ")
    with pytest.raises(UsageError, match="--async and --detach: choose one"):
        shell.run("%%llm_finetune m --detach --async\n" + body)
    shell.run('%config LLMMagics.backend = "process"')
    shell.run("%%llm_finetune p -o p\n" + body)
    assert shell.ns["p"].record["backend"] == "process"
    assert shell.ns["p"].wait(180).status == "completed"


def test_a_detached_run_needs_a_store_another_process_can_open(db, tiny_path, workdir):
    db["docs"].insert_many(qa_docs(20))
    with pytest.raises(ConfigError, match=r"lives in this kernel's memory.*use the embedded store"):
        detached(db, "m", tiny_path)
    assert db.show("run") == [] and not (workdir / ".llm_magics" / "artifacts" / "m").exists()


def test_a_bad_configuration_starts_no_process_and_writes_nothing(shell, tiny_path, workdir):
    from IPython.core.error import UsageError

    shell.run("%llm_db embedded://store")
    connect("embedded://store")["docs"].insert_many(qa_docs(30))
    before = {p.pid for p in _children()}
    for flags, body, error in [
        ("", "model: {{ base_path }}\ndata: nothing_here\n", "nothing_here"),
        ("", "model: {{ base_path }}\ndata: docs\nlearning_rate: -1\n", "learning_rate"),
        ("--ray-address http://127.0.0.1:9", "model: {{ base_path }}\ndata: docs\n", "no Ray cluster to submit"),
    ]:
        with pytest.raises(UsageError, match=error):
            shell.run(f"%%llm_finetune m --detach {flags}\n" + body)
    # no process started (a process of an earlier test may have ended meanwhile)
    assert connect("embedded://store").show("run") == [] and not {p.pid for p in _children()} - before
    assert not (workdir / "store" / "artifacts" / "m").exists()


def _children():
    import psutil

    return psutil.Process().children(recursive=True)


def test_a_run_started_in_a_kernel_that_shut_down_is_attached_from_a_new_one(workdir):
    """Kernel A starts a detached run and is shut down; kernel B lists it training, attaches its
    live view, waits, finds it completed with every checkpoint, and predicts with it."""
    from test_notebook_kernel import executed  # a real kernel, shut down when its cells have run

    started = executed(
        [
            "%load_ext llm_magics",
            "from llm_magics import tiny_model\nbase_path = str(tiny_model('tiny'))\ndb = %llm_db\n"
            "db['docs'].insert_many([{'text': f'### Human: {i} ### Assistant: {i}'} for i in range(24)]);",
            "%%llm_finetune m --detach -o run\nmodel: {{ base_path }}\ndata: docs\nlora_r: 4\nmax_steps: 300\n"
            "save_steps: 100\neval_steps: 100\nmax_length: 64",
            "print(run.id, run.record['owner']['pid'])",
        ],
        workdir,
    )
    run_id, pid = started[3][0]["text"].split()
    os.kill(int(pid), 0)  # the training process outlived its kernel
    assert connect().run(run_id).status in ("starting", "running")
    attached = executed(
        [
            "%load_ext llm_magics",
            "%llm_runs",
            f"%llm_attach {run_id}",
            f"db = %llm_db\nrun = db.run('{run_id}').wait(300)\n"
            "print(run.status, [c['step'] for c in run.checkpoints])",
            'answer = %llm_predict m "### Human: 1 ### Assistant:" --max-new-tokens 4\nprint(type(answer).__name__)',
        ],
        workdir,
    )
    runs = attached[1][0]["data"]["text/plain"]
    assert run_id in runs and ("running" in runs or "starting" in runs) and "process" in runs
    # the live view, replaced by the summary when the run ended; its note for a kernel gone, left empty
    (view,) = [o for o in attached[2] if o.output_type == "display_data" and o["data"]]
    assert "llm-summary" in view["data"]["text/html"] and "completed" in view["data"]["text/plain"]
    assert attached[3][0]["text"] == "completed [100, 200, 300]\n"
    assert attached[4][0]["text"] == "str\n"


def test_a_stuck_process_shows_as_stalled_and_the_views_stop_button_stops_it(store, tiny_path, monkeypatch):
    from llm_magics import commands
    from llm_magics.runs import follow
    from llm_magics.widgets.progress import TrainingView, body_html

    monkeypatch.setattr(follow, "STALL_AFTER", 1.0)
    run = detached(store, "stuck", tiny_path, max_steps=5000, save_steps=1000, eval_strategy="no")
    until(lambda: run.state.status == "running" and run.state.step >= 2)
    pid = run.record["owner"]["pid"]
    os.kill(pid, signal.SIGSTOP)  # alive, and no step comes
    try:
        until(lambda: run.state.stalled_for is not None, timeout=30)
        assert "stalled: no step for" in body_html(run.state)
        assert "stalled (" in commands.runs_table(store)._repr_html_()
        assert run.status == "running"  # stalled is not dead
    finally:
        os.kill(pid, signal.SIGCONT)
    until(lambda: run.state.stalled_for is None, timeout=30)
    view = TrainingView(run)
    assert not view.stop_button.disabled  # a detached run stops from any kernel
    view.stop_button.click()
    assert run.wait(120).status == "stopped" and run.record["stop_requested"] is not None
    assert run.checkpoints[-1]["step"] == run.record["step"]


def test_a_run_on_another_host_is_alive_while_it_beats_and_interrupted_after_a_few_missed_beats(store):
    import datetime as dt

    from llm_magics.store.records import now

    beat = now()
    record = {
        "model": "remote",
        "status": "running",
        "backend": "process",
        "started": beat - dt.timedelta(minutes=5),
        "heartbeat_every": 5.0,
        "output_dir": None,
    }
    elsewhere = {"host": "another-host.invalid", "pid": 1, "start": "1"}
    store.store.runs.insert_many(
        [
            {**record, "_id": "beating", "owner": elsewhere, "heartbeat": beat - dt.timedelta(seconds=10)},
            {**record, "_id": "silent", "owner": elsewhere, "heartbeat": beat - dt.timedelta(seconds=40)},
        ]
    )
    assert store.run("beating").status == "running"
    assert store.run("silent").status == "interrupted"


def test_the_log_shows_its_last_lines_with_secrets_masked(tmp_path):
    from llm_magics.runs import logs

    log = logs.create(tmp_path)
    lines = [f"step {i}" for i in range(20_000)] + [
        "progress 10%\rprogress 100%",
        "mongodb://alice:hunter2@db.invalid/x",
    ]
    log.write_text("\n".join(lines) + "\n")
    assert logs.tail(log, 3) == ["step 19999", "progress 100%", "mongodb://alice:***@db.invalid/x"]
    assert logs.tail(tmp_path / "missing.log") == [] and logs.tail(None) == []


def test_a_detached_run_keeps_its_checkpoints_in_the_database_with_artifacts_db(store, tiny_path):
    import shutil

    run = detached(store, "gridfs", tiny_path, max_steps=4, save_steps=2, eval_steps=2, artifacts="db")
    assert run.wait(180).status == "completed", run.error
    for checkpoint in run.checkpoints:
        assert checkpoint["gridfs"]
    shutil.rmtree(run.record["output_dir"])  # only the database has them now
    assert connect().load("model", "gridfs").predict("what is 3?", max_new_tokens=2) is not None
