"""Alive is alive (#27): a run judged dead from another host only by its silence runs again when
it writes again, can still be stopped, and its views follow it again; a final status is never
replaced by another one."""

from __future__ import annotations

import datetime as dt
import time

import pytest

from llm_magics.core.errors import RunError
from llm_magics.core.processes import process_owner, same_host
from llm_magics.runs.follow import follow
from llm_magics.store.records import now


def silent_run(db, run_id: str, **fields) -> None:
    """A detached run on another host whose heartbeats stopped a moment ago (every 0.01 s)."""
    db.store.runs.insert_one(
        {"_id": run_id, "model": "m", "status": "running", "backend": "process", "started": now(),
         "heartbeat": now() - dt.timedelta(seconds=1), "heartbeat_every": 0.01,
         "owner": {"host": "elsewhere.invalid", "machine": "x", "pid": 1}, **fields}
    )  # fmt: skip


def test_a_silent_run_is_interrupted_yet_stops_and_runs_again_when_it_writes(db):
    silent_run(db, "s1")
    assert db.run("s1").status == "interrupted"  # a look reaps it
    assert db.store.runs.find_one({"_id": "s1"})["reaped"] == "silent"
    db.run("s1").stop()  # not refused: it may be alive
    assert db.store.runs.find_one({"_id": "s1"})["stop_requested"]
    db.store.update_run("s1", step=7)  # its process, back after a pause (SIGSTOP, a suspended laptop)
    record = db.store.runs.find_one({"_id": "s1"})
    assert record["status"] == "running" and "reaped" not in record and "error" not in record
    db.store.update_run("s1", status="stopped")
    assert db.run("s1").status == "stopped"


def test_a_final_status_is_never_replaced_by_another(db):
    silent_run(db, "s2", heartbeat=now(), heartbeat_every=60)
    db.store.update_run("s2", status="stopped")
    db.store.update_run("s2", status="completed")  # a late write of the same process
    assert db.run("s2").status == "stopped"
    with pytest.raises(RunError, match="is not training"):
        db.run("s2").stop()


def test_a_run_gone_from_this_host_is_not_uncertain(db):
    owner = {**process_owner(), "pid": 2**22 + 11}
    assert same_host(owner)
    silent_run(db, "s3", owner=owner, heartbeat=now())
    assert db.run("s3").status == "interrupted"
    assert db.store.runs.find_one({"_id": "s3"})["reaped"] == "gone"
    with pytest.raises(RunError, match="is not training"):
        db.run("s3").stop()


def test_a_view_follows_a_silent_run_again_when_it_writes(db):
    silent_run(db, "s4")
    run = follow(db.run("s4"), interval=0.05)
    run.wait(30)
    assert run.state.status == "interrupted"  # wait() ends: it looks dead
    db.store.update_run("s4", step=3, total_steps=10, heartbeat_every=60)  # (beats as a real one: every few s)
    deadline = time.monotonic() + 30
    while run.state.status != "running":
        assert time.monotonic() < deadline, run.state.status
        time.sleep(0.05)
    assert run.state.step == 3
    db.store.update_run("s4", status="completed")
    assert run.wait(30).state.status == "completed"


def test_without_proc_the_host_name_tells_which_runs_are_here(monkeypatch):
    from llm_magics.core import processes

    monkeypatch.setattr(processes, "machine", lambda: "unknown")  # macOS: no boot id, no pid namespace
    assert same_host(processes.process_owner())  # a run of this host is judged by its pid, not silence
    assert not same_host({**processes.process_owner(), "host": "elsewhere.invalid"})


def test_a_silent_run_stops_by_its_models_name_too(db):
    from llm_magics import commands

    silent_run(db, "s5")
    said = []
    assert commands.stop(db, "m", say=said.append).id == "s5"  # interrupted, yet it may be alive
    assert said == ["m: run s5"] and db.store.runs.find_one({"_id": "s5"})["stop_requested"]
