"""A shared database is untrusted input (#27): records planted by another process, as someone with
write access to the database would plant them, cannot make a kernel read, upload, delete, show or
hang on anything outside the store's own run directories (``store/run_dirs``).

Every place that takes a path from a record is listed in ``PLACES`` (found with grep, pinned by
the last test) and has a test here."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from helpers import qa_docs, small_config

from llm_magics import LLM, commands, connect
from llm_magics.core.errors import ModelError, RunError
from llm_magics.runs import logs
from llm_magics.store import unsaved
from llm_magics.store.records import PREFIX, now
from llm_magics.store.run_dirs import MARK, claim

PACKAGE = Path(__file__).parent.parent / "llm_magics"
# (module, the record key whose path or address it follows): each is contained, and tested here
PLACES = {
    ("store/records.py", "output_dir"): "test_a_planted_outbox_is_never_replayed",
    ("store/records.py", "path"): "test_an_upload_reads_only_the_runs_own_files",
    ("store/artifacts.py", "path"): "test_delete_and_pruning_remove_only_the_runs_own_checkpoints",
    ("store/uploads.py", "path"): "test_predict_reads_checkpoint_files_only_from_the_runs_own_directory",
    ("store/run_dirs.py", "output_dir"): "test_a_directory_is_a_runs_own_only_with_its_mark",
    ("runs/logs.py", "log"): "test_a_log_is_read_only_from_the_runs_own_directory",
    ("commands.py", "log"): "test_a_log_is_read_only_from_the_runs_own_directory",
    ("commands.py", "ray_job"): "test_a_ray_jobs_log_comes_from_the_cluster_this_machine_submitted_to",
}

# paths that do not come from a record
NOT_FROM_RECORDS = {
    ("training/recorder.py", "path"): "the trainer's own save event, in this process",
    ("training/ray.py", "path"): "the run's Ray workers' save event, over the run's own channel",
    ("training/launch.py", "path"): "the directory Store.local_checkpoint returned, checked there",
}


def plant(root: Path, collection: str, record: dict) -> None:
    """Writes ``record`` into the embedded store at ``root`` from another process."""
    script = (
        "import sys, json, datetime as dt\n"
        "from llm_magics import connect\n"
        "record = json.loads(sys.argv[2])\n"
        "for key in ('started', 'heartbeat', 'created'):\n"
        "    if key in record: record[key] = dt.datetime.fromisoformat(record[key])\n"
        "connect('embedded://' + sys.argv[1])[sys.argv[3]].insert_one(record)\n"
    )
    encoded = json.dumps(record, default=lambda value: value.isoformat())
    subprocess.run([sys.executable, "-c", script, str(root), encoded, PREFIX + collection], check=True, timeout=120)


@pytest.fixture
def secret(tmp_path: Path) -> Path:
    """A file of the user's that no record should make a kernel read, upload or delete."""
    directory = tmp_path / "project" / "checkpoint-1"
    directory.mkdir(parents=True)
    (directory / "id_rsa").write_text("PRIVATE KEY")
    return directory


@pytest.fixture
def store_root(workdir: Path) -> Path:
    return workdir / "store"


def planted_run(run_id: str, output_dir: Path, **fields) -> dict:
    return {
        "_id": run_id,
        "model": "victim",
        "status": "running",
        "backend": "process",
        "started": now(),
        "heartbeat": now(),
        "output_dir": str(output_dir),
        "owner": {"host": "elsewhere.invalid", "pid": 1},
        "heartbeat_every": 0.001,
        **fields,
    }


def outbox(directory: Path, run_id: str, path: Path) -> None:
    """An unsaved-records file asking to upload ``path``'s files as a checkpoint of ``run_id``."""
    record = {"_id": f"{run_id}-1", "model": "victim", "run": run_id, "step": 1, "path": str(path),
              "files": [{"name": "id_rsa", "size": 11, "sha256": "x"}]}  # fmt: skip
    unsaved.keep(directory / unsaved.UNSAVED, [("add_checkpoint", (record,), {"upload": "all"})])


def test_a_planted_outbox_is_never_replayed(store_root, secret, tmp_path):
    outbox(tmp_path / "attacker", "planted1", secret)
    plant(store_root, "runs", planted_run("planted1", tmp_path / "attacker"))
    db = connect(f"embedded://{store_root}")
    db.show("run")  # %llm_runs reaps and replays
    assert db["_llm_magics.artifacts.files"].count_documents({}) == 0
    assert db.store.checkpoints.count_documents({}) == 0
    assert (tmp_path / "attacker" / unsaved.UNSAVED).is_file()  # not read, so not even set aside


def test_an_own_outbox_replays_but_not_a_write_for_another_run_or_a_file_outside(store_root, secret, tmp_path):
    from llm_magics.core.processes import process_owner

    db = connect(f"embedded://{store_root}")
    own = claim(tmp_path / "runs" / "r2", "r2")
    outbox(own, "r2", secret)  # a file in the run's own directory, naming files outside it
    owner = {**process_owner(), "pid": 2**22 + 17}  # this host, a process that is gone
    db.store.runs.insert_one(planted_run("r2", own, owner=owner, heartbeat_every=60))
    with pytest.warns(RuntimeWarning, match="not run r2's own"):
        db.show("run")
    assert db["_llm_magics.artifacts.files"].count_documents({}) == 0
    assert db.store.run("r2")["status"] == "failed"


def test_an_upload_reads_only_the_runs_own_files(db, secret, tmp_path):
    own = claim(tmp_path / "runs" / "r3", "r3")
    db.store.runs.insert_one(planted_run("r3", own))
    record = {"_id": "r3-1", "model": "victim", "run": "r3", "step": 1, "path": str(secret),
              "files": [{"name": "id_rsa", "size": 11, "sha256": "x"}]}  # fmt: skip
    with pytest.raises(RunError, match="not in its run's own directory"):
        db.store.add_checkpoint(record, upload="all")
    inside = own / "checkpoint-1"
    inside.mkdir()
    escaping = {**record, "path": str(inside), "files": [{"name": "../../../project/checkpoint-1/id_rsa"}]}
    with pytest.raises(ModelError, match="leads outside"):
        db.store.add_checkpoint(escaping, upload="all")
    assert db["_llm_magics.artifacts.files"].count_documents({}) == 0


def test_delete_and_pruning_remove_only_the_runs_own_checkpoints(store_root, secret, tiny_path):
    db = connect(f"embedded://{store_root}")
    db["docs"].insert_many(qa_docs(20))
    planted_record = {"_id": "planted-0", "model": "victim", "step": 0, "path": str(secret), "files": [],
                      "created": now()}  # fmt: skip

    def plant_for_the_live_run(run):  # the attacker sees the run start, and plants for it
        plant(store_root, "checkpoints", {**planted_record, "run": run.id})

    config = small_config(max_steps=6, save_steps=2, eval_strategy="no", save_total_limit=1)
    run = LLM("victim", tiny_path).fit(select="docs", db=db, configuration=config, on_start=plant_for_the_live_run)
    assert run.status == "completed", run.error
    assert db.store.checkpoints.find_one({"_id": "planted-0"}) is None  # pruned: the record went
    assert (secret / "id_rsa").read_text() == "PRIVATE KEY"  # the directory it named did not
    (kept,) = run.checkpoints
    assert Path(kept["path"]).is_dir()  # its own, newest checkpoint stays
    # the browser's Delete of a record that points outside its run
    plant(store_root, "checkpoints", {**planted_record, "_id": "planted-1", "run": run.id})
    db.store.remove_checkpoint(db.store.checkpoints.find_one({"_id": "planted-1"}))
    assert (secret / "id_rsa").is_file()
    # and a symlink inside the run's directory that leads out of it
    link = Path(run.record["output_dir"]) / "checkpoint-9"
    link.symlink_to(secret)
    db.store.remove_checkpoint({**planted_record, "_id": "planted-2", "run": run.id, "path": str(link)})
    assert (secret / "id_rsa").is_file()
    own = db.store.checkpoints.find_one({"run": run.id, "step": 6})
    db.store.remove_checkpoint(own)
    assert not Path(own["path"]).exists()  # a run's own checkpoint is deleted as before


def test_predict_reads_checkpoint_files_only_from_the_runs_own_directory(db, secret, tiny_path):
    db["docs"].insert_many(qa_docs(20))
    run = LLM("m", tiny_path).fit(select="docs", db=db, configuration=small_config(max_steps=2, save_steps=2))
    record = db.store.checkpoints.find_one({"run": run.id})
    db.store.checkpoints.update_one({"_id": record["_id"]}, {"$set": {"path": str(secret)}})
    with pytest.raises(ModelError, match="not in a run directory of this user's"):
        connect(db.uri).load("model", "m").predict("what is 1?", max_new_tokens=2)


def test_a_directory_is_a_runs_own_only_with_its_mark(tmp_path):
    from llm_magics.store.run_dirs import own_dir

    directory = claim(tmp_path / "r", "abc12345")
    assert own_dir({"_id": "abc12345", "output_dir": str(directory)}) == directory.resolve()
    assert own_dir({"_id": "other123", "output_dir": str(directory)}) is None  # another run's
    assert own_dir({"_id": "abc12345", "output_dir": str(tmp_path)}) is None  # no mark
    assert own_dir({"_id": "abc12345", "output_dir": "r"}) is None  # relative: to what?
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / MARK).symlink_to(directory / MARK)
    assert own_dir({"_id": "abc12345", "output_dir": str(tmp_path / "s")}) is None  # a linked mark
    if os.getuid() == 0:  # another local user's directory, marked by them
        other = claim(tmp_path / "o", "abc12345")
        os.chown(other / MARK, 65534, 65534)
        assert own_dir({"_id": "abc12345", "output_dir": str(other)}) is None


def test_a_log_is_read_only_from_the_runs_own_directory(db, tmp_path, secret):
    own = claim(tmp_path / "runs" / "r5", "r5")
    (own / logs.LOG).write_text("step 1\n")
    db.store.runs.insert_one(planted_run("r5", own, status="failed", log=str(secret / "id_rsa")))
    with pytest.raises(RunError, match="its log is not in a run directory of this user's"):
        commands.log_lines(db, "r5")
    db.store.runs.update_one({"_id": "r5"}, {"$set": {"log": str(own / logs.LOG)}})
    assert commands.log_lines(db, "r5") == ["step 1"]
    assert db.run("r5").stored_state().log == own / logs.LOG


def test_a_fifo_for_a_log_never_hangs_a_view(db, tmp_path):
    from llm_magics.widgets.progress import summary_html

    own = claim(tmp_path / "runs" / "r6", "r6")
    os.mkfifo(own / logs.LOG)
    db.store.runs.insert_one(planted_run("r6", own, status="failed", error="boom", log=str(own / logs.LOG)))
    done = []
    worker = threading.Thread(target=lambda: done.append(summary_html(db.run("r6").stored_state())), daemon=True)
    worker.start()
    worker.join(20)
    assert done, "reading a FIFO for a log hung"
    assert logs.tail(own / logs.LOG) == []


def test_a_ray_jobs_log_comes_from_the_cluster_this_machine_submitted_to(db, tmp_path):
    own = claim(tmp_path / "runs" / "r7", "r7")
    planted = planted_run("r7", own, status="failed", ray_job={"address": "http://127.0.0.1:9", "submission_id": "x"})
    db.store.runs.insert_one(planted)
    with pytest.raises(RunError, match="submitted to its Ray cluster from another machine"):
        commands.log_lines(db, "r7")


def test_every_place_that_follows_a_path_from_a_record_is_walked_here():
    keys = "|".join(sorted({key for _, key in PLACES}))
    found = set()
    for path in PACKAGE.rglob("*.py"):
        for key in re.findall(rf"""(?:\["|get\("|\.get\(')({keys})["']""", path.read_text()):
            found.add((str(path.relative_to(PACKAGE)), key))
    tested = {name for name in dir(sys.modules[__name__]) if name.startswith("test_")}
    unknown = found - set(PLACES) - set(NOT_FROM_RECORDS)
    assert not unknown, f"a new place follows a record's path: walk it here: {unknown}"
    assert set(PLACES.values()) <= tested
