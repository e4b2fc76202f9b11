"""Whatever goes wrong while a run is recorded, the run ends and says so: no run claims to train
while nothing records it, and what it kept on disk never keeps anyone from the store."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import Outage, Shell, qa_docs, small_config

from llm_magics import LLM, Database
from llm_magics.store.records import FINAL, PREFIX

pytestmark = pytest.mark.slow
CHECKPOINTS, RUNS = PREFIX + "checkpoints", PREFIX + "runs"


def faulty(db, refuse=None):
    outage = Outage(db.mongo_db, refuse)
    handle = Database(outage, db.uri, db.artifacts)
    handle.retry_seconds = 0.5
    return handle, outage


def test_a_record_the_database_refuses_ends_the_run_failed_with_the_reason(db, tiny_path):
    """A server over its quota refuses the checkpoint record: the run stops, and its record says
    failed and why (before, the error escaped the recorder and the record said running for good)."""
    handle, _ = faulty(db, refuse=lambda collection, method, _: (collection, method) == (CHECKPOINTS, "replace_one"))
    handle["d"].insert_many(qa_docs(20))
    run = LLM("refused", tiny_path).fit(
        select="d", db=handle, configuration=small_config(max_steps=50, eval_strategy="no"), backend="thread"
    )
    run.wait(120)
    assert run.status == "failed"
    assert run.error.startswith("recording the run failed, so it was stopped: a checkpoint's record was refused")
    assert "over your space quota" in run.error
    record = db.store.run(run.id)
    assert record["status"] == "failed" and record["error"] == run.error and record["step"] < 50
    assert db.show("checkpoint", "refused") == []


def test_a_refused_end_of_run_is_kept_and_written_when_the_database_takes_it(db, tiny_path):
    refusing = {"on": True}

    def the_end(collection, method, args):
        ended = method == "update_one" and args[1].get("$set", {}).get("status") in FINAL
        return refusing["on"] and collection == RUNS and ended

    handle, _ = faulty(db, refuse=the_end)
    handle["d"].insert_many(qa_docs(20))
    run = LLM("late", tiny_path).fit(select="d", db=handle, configuration=small_config(eval_strategy="no"))
    assert run.status == "completed"
    assert "the run's record was refused" in run.error and "kept in" in run.error
    refusing["on"] = False  # space freed: the next look at the runs writes the kept end
    assert db.store.run(run.id)["status"] == "completed"


def test_a_full_disk_when_keeping_the_unsaved_records_still_ends_the_run(db, tiny_path, workdir):
    handle, outage = faulty(db)
    handle["d"].insert_many(qa_docs(20))
    output = workdir / "out"

    def away_at_step_3(run):
        (output / run.id / "unsaved-records.jsonl").mkdir(parents=True)  # no file can be written there
        run.state.listeners.append(lambda state: setattr(outage, "down", outage.down or state.step >= 3))

    run = LLM("no-room", tiny_path).fit(
        select="d",
        db=handle,
        configuration=small_config(eval_strategy="no", output_dir=str(output)),
        backend="thread",
        on_start=away_at_step_3,
    )
    run.wait(120)
    assert run.control.done.is_set() and run.status == "completed"
    assert "could not be kept in" in run.error and "Is a directory" in run.error


def test_a_damaged_unsaved_records_file_never_keeps_anyone_from_the_store(db, tiny_path):
    handle, outage = faulty(db)
    handle["d"].insert_many(qa_docs(20))
    run = LLM("torn", tiny_path).fit(
        select="d",
        db=handle,
        configuration=small_config(eval_strategy="no"),
        on_start=lambda r: r.state.listeners.append(lambda s: setattr(outage, "down", outage.down or s.step >= 3)),
    )
    kept = Path(run.error.rsplit("kept in ", 1)[1].split(";")[0])
    lines = kept.read_bytes().splitlines(keepends=True)
    kept.write_bytes(b"".join(lines[:2]) + lines[2][: len(lines[2]) // 2])  # a kill in the middle of a line
    outage.down = False
    shell = Shell({"database": db.uri})
    with pytest.warns(RuntimeWarning, match=r"line 3 of 3 is damaged.*unsaved-records\.jsonl\.damaged-"):
        table, _ = shell.run("%llm_runs")
    (row,) = [row for row in table.rows if row[1] == run.id]
    assert row[2] == "failed"  # it ended, but how is lost with the damaged line
    assert "damaged" in db.store.run(run.id)["error"]
    assert not kept.exists() and list(kept.parent.glob("unsaved-records.jsonl.damaged-*"))
    assert db.show("run", "torn")  # and the store opens as ever


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to look as another user")
def test_a_run_of_another_users_live_process_is_not_taken_for_dead(db):
    """``os.kill(pid, 0)`` answers PermissionError for another user's live process (a shared store
    on a JupyterHub host): that run is alive, not interrupted. The look is taken by a fork of this
    process that became user 'nobody' (no interpreter to start: /root is closed to other users)."""
    from llm_magics.core.processes import process_owner, process_start
    from llm_magics.store.records import now

    owner = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        mine = {**process_owner(), "pid": owner.pid, "start": process_start(owner.pid)}
        db.store.runs.insert_one(
            {"_id": "theirs", "model": "m", "status": "running", "started": now(), "heartbeat": now(), "owner": mine}
        )
        child = os.fork()
        if child == 0:  # pragma: no cover - runs in the child
            try:
                os.setgid(65534)
                os.setuid(65534)
                os._exit(0 if db.store.run("theirs")["status"] == "running" else 3)
            except BaseException:
                os._exit(4)
        deadline = time.monotonic() + 60
        while (done := os.waitpid(child, os.WNOHANG))[0] == 0:
            assert time.monotonic() < deadline, "the look as another user did not end"
            time.sleep(0.05)
        assert os.waitstatus_to_exitcode(done[1]) == 0, "another user's live run was taken for dead"
    finally:
        owner.kill()
        owner.wait()


def test_an_interrupted_run_keeps_the_duration_of_its_last_sign_of_life(db):
    import datetime as dt

    from llm_magics.runs.run import Run
    from llm_magics.widgets.progress import run_bundle

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    started = dt.datetime(2026, 1, 1, 12, 0, 0)
    db.store.runs.insert_one(
        {
            "_id": "gone",
            "model": "m",
            "status": "running",
            "started": started,
            "heartbeat": started + dt.timedelta(seconds=75),
            "owner": {"host": os.uname().nodename, "pid": int(dead.stdout), "start": "0"},
        }
    )
    record = db.store.run("gone")
    assert record["status"] == "interrupted" and record["duration"] == 75
    assert "duration</th><td>01:15" in run_bundle(Run(db, "gone"))["text/html"]
    assert json.dumps(record, default=str)  # plain data
