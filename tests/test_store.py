"""The package's records: derived flags, checkpoint references, runs whose process died."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys

import pytest

from llm_magics.core.errors import ModelError, RunError
from llm_magics.core.processes import process_owner
from llm_magics.store.records import PREFIX, Store, now


def checkpoint(run: str, step: int, eval_loss: float | None = None, minute: int = 0) -> dict:
    created = dt.datetime(2026, 1, 1, 12, minute)
    return {
        "_id": f"{run}-{step}",
        "model": "m",
        "run": run,
        "step": step,
        "created": created,
        "metrics": {} if eval_loss is None else {"eval_loss": eval_loss},
        "path": "/nowhere",
        "files": [],
    }


@pytest.fixture
def store(db):
    store = Store(db.mongo_db)
    store.save_model("m", base_model="base")
    for record in (checkpoint("r1", 2, 1.5, 1), checkpoint("r1", 4, 1.2, 2), checkpoint("r2", 2, 1.4, 3)):
        store.add_checkpoint(record)
    return store


def test_flags_are_derived_when_read(store):
    flags = {c["_id"]: (c["latest"], c["best"], c["selected"]) for c in store.list_checkpoints("m")}
    assert flags == {"r1-2": (False, False, False), "r1-4": (False, True, False), "r2-2": (True, False, False)}
    store.select_checkpoint("m", "r1-2")
    assert [c["_id"] for c in store.list_checkpoints("m") if c["selected"]] == ["r1-2"]


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        (None, "r2-2"),
        ("latest", "r2-2"),
        ("best", "r1-4"),
        (4, "r1-4"),
        (2, "r2-2"),
        ("r1:2", "r1-2"),
    ],
)
def test_checkpoint_references(store, ref, expected):
    assert store.checkpoint("m", ref)["_id"] == expected


def test_the_selected_checkpoint_is_the_default(store):
    store.select_checkpoint("m", "r1-2")
    assert store.checkpoint("m")["_id"] == "r1-2"


def test_a_model_trained_twice_is_listed_run_by_run_with_latest_of_the_latest_run(store):
    from llm_magics.widgets.checkpoints import checkpoint_row

    twice = Store(store.mongo_db)
    for run, hour in (("first", 10), ("second", 11)):
        twice.runs.insert_one(
            {"_id": run, "model": "t", "status": "completed", "started": dt.datetime(2026, 1, 1, hour)}
        )
    # the first run saves its last checkpoint after the second run's (both trained at once)
    saved = [("first", 100, 1.3, 5), ("first", 200, 1.1, 10), ("first", 300, 0.9, 80)]
    saved += [("second", 100, 1.2, 65), ("second", 200, 1.0, 70), ("second", 300, 1.0, 75)]
    for run, step, loss, minute in saved:
        created = dt.datetime(2026, 1, 1, 10) + dt.timedelta(minutes=minute)
        twice.add_checkpoint({**checkpoint(run, step, loss), "_id": f"{run}-{step}", "model": "t", "created": created})
    listed = twice.list_checkpoints("t")
    rows = [(c["run"], c["step"], c["run_number"], c["latest"], c["best"]) for c in listed]
    assert rows == [
        ("first", 100, 1, False, False),
        ("first", 200, 1, False, False),
        ("first", 300, 1, False, True),  # best over every run, in the first
        ("second", 100, 2, False, False),
        ("second", 200, 2, False, False),
        ("second", 300, 2, True, False),  # latest: the latest run's newest, not the newest written
    ]
    assert [checkpoint_row(c)[0] for c in listed] == ["1 · first"] * 3 + ["2 · second"] * 3
    assert [twice.checkpoint("t", ref)["_id"] for ref in (None, "latest", 300, "best", "first:300")] == [
        "second-300",
        "second-300",
        "second-300",
        "first-300",
        "first-300",
    ]


def test_unknown_references_list_what_exists(store):
    with pytest.raises(ModelError, match=r"no checkpoint '9'; it has steps 2, 4 \(or RUN:STEP, latest, best\)"):
        store.checkpoint("m", 9)
    with pytest.raises(ModelError, match="no model named 'mm' — did you mean 'm'"):
        store.model("mm")
    with pytest.raises(ModelError, match="no model named 'other'; models: m"):
        store.model("other")


def test_our_collections_are_prefixed(store):
    assert all(name.startswith(PREFIX) for name in store.mongo_db.list_collection_names())


def test_a_run_whose_process_is_gone_reads_as_interrupted(store):
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True
    )
    store.runs.insert_one(
        {
            "_id": "gone",
            "model": "m",
            "status": "running",
            "started": now(),
            "owner": {**process_owner(), "pid": int(dead.stdout), "start": "0"},
        }
    )
    store.add_run({"_id": "alive", "model": "m", "status": "running", "started": now()})
    statuses = {run["_id"]: run["status"] for run in store.list_runs("m")}
    assert statuses == {"gone": "interrupted", "alive": "running"}


def test_an_unknown_run_id_suggests_a_close_one(store):
    store.add_run({"_id": "abc12345", "model": "m", "status": "completed", "started": now()})
    with pytest.raises(RunError, match="no run with id 'abc12354' — did you mean 'abc12345'"):
        store.run("abc12354")
