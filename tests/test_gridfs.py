"""Checkpoint files kept in the database (GridFS): another machine loads, verifies and predicts."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from helpers import qa_docs, small_config

from llm_magics import LLM, Database
from llm_magics.core.errors import ModelError
from llm_magics.store.uploads import BUCKET, gridfs_bucket

pytestmark = pytest.mark.slow
PROMPT = "### Human: what is 7? ### Assistant: "


def elsewhere(db: Database, directory: Path) -> Database:
    """The same database seen from another machine: its own disk, none of our checkpoint files."""
    return Database(db.mongo_db, db.uri, directory / "artifacts")


@pytest.fixture
def stored(db, tiny_path, tmp_path):
    db["docs"].insert_many(qa_docs(40))
    config = small_config(data="docs", max_steps=4, artifacts="db", output_dir=str(tmp_path / "machine-a"))
    LLM("shared", tiny_path).fit(configuration=config, db=db)
    answer = db.load("model", "shared").predict(PROMPT, max_new_tokens=8)
    return db, answer


def test_another_machine_loads_verifies_and_predicts(stored, tmp_path):
    db, answer = stored
    record = db.show("checkpoint", "shared")[-1]
    assert {"adapter_model.safetensors", "adapter_config.json"} <= set(record["gridfs"])
    assert "optimizer.pt" not in record["gridfs"]  # only what predict needs
    shutil.rmtree(tmp_path / "machine-a")
    other = elsewhere(db, tmp_path / "machine-b")
    assert other.load("model", "shared").predict(PROMPT, max_new_tokens=8) == answer
    cached = other.downloads / record["_id"]
    assert (cached / "adapter_model.safetensors").is_file()
    again = elsewhere(db, tmp_path / "machine-b")  # a new session reuses the verified cache
    assert again.load("model", "shared").predict(PROMPT, max_new_tokens=8) == answer


def test_a_corrupted_download_is_refused_and_not_cached(stored, tmp_path):
    db, _ = stored
    record = db.show("checkpoint", "shared")[-1]
    shutil.rmtree(tmp_path / "machine-a")
    chunks = db.mongo_db[f"{BUCKET}.chunks"]
    weights = record["gridfs"]["adapter_model.safetensors"]
    chunk = chunks.find_one({"files_id": weights, "n": 0})
    data = bytearray(chunk["data"])
    data[-1] ^= 0xFF
    chunks.update_one({"_id": chunk["_id"]}, {"$set": {"data": bytes(data)}})
    other = elsewhere(db, tmp_path / "machine-b")
    with pytest.raises(ModelError, match="changed since it was recorded"):
        other.load("model", "shared").predict(PROMPT, max_new_tokens=8)
    assert not (other.downloads / record["_id"]).exists()


def test_resuming_elsewhere_needs_the_optimizer_state(db, tiny_path, tmp_path):
    db["docs"].insert_many(qa_docs(40))
    config = small_config(data="docs", max_steps=2, artifacts="db", output_dir=str(tmp_path / "a"))
    LLM("light", tiny_path).fit(configuration=config, db=db)
    LLM("full", tiny_path).fit(configuration=config.replace(upload_optimizer_state=True), db=db)
    shutil.rmtree(tmp_path / "a")
    other = elsewhere(db, tmp_path / "b")
    longer = config.replace(max_steps=4, output_dir=str(tmp_path / "b-out"))
    with pytest.raises(ModelError, match="upload_optimizer_state"):
        LLM("light", tiny_path).fit(configuration=longer, db=other, resume_from_checkpoint=True)
    run = LLM("full", tiny_path).fit(configuration=longer, db=other, resume_from_checkpoint=True)
    assert run.status == "completed"
    assert [c["step"] for c in other.show("checkpoint", "full")] == [2, 4]


def test_deleting_a_checkpoint_removes_its_files_from_the_database(stored):
    db, _ = stored
    before = db.mongo_db[f"{BUCKET}.files"].count_documents({})
    record = db.show("checkpoint", "shared")[0]
    db.store.remove_checkpoint(record)
    assert db.mongo_db[f"{BUCKET}.files"].count_documents({}) == before - len(record["gridfs"])
    assert not list(gridfs_bucket(db.mongo_db).find({"metadata.checkpoint": record["_id"]}))


@pytest.mark.parametrize(
    ("checkpoint_id", "name"),
    [
        ("ck-1", "../../evil"),
        ("ck-1", "sub/../../../evil"),
        ("ck-1", "/ABSOLUTE/evil"),
        ("../../victim", "adapter_config.json"),
    ],
)
def test_a_hostile_record_cannot_write_outside_the_download_directory(db, tiny_path, tmp_path, checkpoint_id, name):
    import hashlib

    from llm_magics.store.records import now

    name = name.replace("/ABSOLUTE", str(tmp_path))
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep.txt").write_text("mine")
    payload = b"evil"
    file_id = gridfs_bucket(db.mongo_db).put(payload, filename="x")
    db.store.save_model("m", base_model=tiny_path, task="causal-lm")
    db.store.add_run({"_id": "r", "model": "m", "status": "completed", "started": now()})
    db.store.add_checkpoint(
        {
            "_id": checkpoint_id,
            "model": "m",
            "run": "r",
            "step": 2,
            "created": now(),
            "metrics": {},
            "path": str(tmp_path / "elsewhere" / "checkpoint-2"),
            "files": [{"name": name, "size": len(payload), "sha256": hashlib.sha256(payload).hexdigest()}],
            "gridfs": {name: file_id},
        }
    )
    other = elsewhere(db, tmp_path / "a" / "b" / "c")
    with pytest.raises(ModelError, match="leads outside the download directory") as raised:
        other.load("model", "m").predict("hi", max_new_tokens=2)
    assert len(str(raised.value)) < 250
    assert [p.name for p in tmp_path.rglob("evil")] == []
    assert (victim / "keep.txt").read_text() == "mine"
    assert not list(other.downloads.glob(".partial-*"))  # nothing half-written either


def test_the_artifacts_setting_applies_to_cells(shell, db):
    db["docs"].insert_many(qa_docs(20))
    shell.run('%config LLMMagics.artifacts = "db"')
    shell.run("%%llm_finetune cell-model\nmodel: '{{ base_path }}'\ndata: docs\nmax_steps: 2\n")
    assert db.show("checkpoint", "cell-model")[-1]["gridfs"]


def _recorded(db, name):
    """A checkpoint's record as stored (without the flags that listing adds)."""
    return db.store.checkpoints.find_one({"_id": db.show("checkpoint", name)[-1]["_id"]})


def test_recording_a_checkpoint_again_keeps_its_files_until_the_new_ones_are_in(stored, tmp_path):
    """A retried record (a lost acknowledgement, a replay) uploads anew; when that upload fails
    halfway, the record still points at complete files (before: the old ones were deleted first)."""
    db, answer = stored
    record = _recorded(db, "shared")
    without_uploads = {k: v for k, v in record.items() if k != "gridfs"}
    weights = Path(record["path"]) / "adapter_model.safetensors"
    weights.rename(tmp_path / "aside")
    with pytest.raises(FileNotFoundError):
        db.store.add_checkpoint(without_uploads, upload="weights")
    machine_b = elsewhere(db, tmp_path / "machine-b")
    files = Path(record["path"]).parent.parent
    files.rename(tmp_path / "hidden")  # another machine: only the database has the files
    assert machine_b.load("model", "shared").predict(PROMPT, max_new_tokens=8) == answer
    (tmp_path / "hidden").rename(files)
    (tmp_path / "aside").rename(weights)
    db.store.add_checkpoint(without_uploads, upload="weights")  # a retry that works
    again = _recorded(db, "shared")
    uploaded = list(gridfs_bucket(db.mongo_db).find({"metadata.checkpoint": record["_id"]}))
    assert sorted(f._id for f in uploaded) == sorted(again["gridfs"].values())  # the earlier uploads are gone
    shutil.rmtree(tmp_path / "machine-a")
    assert elsewhere(db, tmp_path / "machine-c").load("model", "shared").predict(PROMPT, max_new_tokens=8) == answer


def test_a_download_that_fails_leaves_no_partial_copy(stored, tmp_path):
    db, _ = stored
    record = _recorded(db, "shared")
    gridfs_bucket(db.mongo_db).delete(record["gridfs"]["adapter_model.safetensors"])
    shutil.rmtree(tmp_path / "machine-a")
    other = elsewhere(db, tmp_path / "machine-b")
    with pytest.raises(ModelError, match=r"its file 'adapter_model\.safetensors' is gone from the database"):
        other.load("model", "shared").predict(PROMPT, max_new_tokens=8)
    assert list(other.downloads.iterdir()) == []


def test_a_partial_download_another_process_installs_meanwhile_is_not_an_error(stored, tmp_path, monkeypatch):
    """Another process renames its finished partial download into place between this process's
    listing of leftovers and its look at their age (the four-process test met it in a suite run)."""
    db, answer = stored
    shutil.rmtree(tmp_path / "machine-a")
    other = elsewhere(db, tmp_path / "machine-b")
    theirs = other.downloads / ".partial-theirs"
    theirs.mkdir(parents=True)
    glob = Path.glob

    def listed_then_installed(directory, pattern):
        found = list(glob(directory, pattern))
        if theirs in found:
            theirs.rename(directory / "installed-by-them")
        return found

    monkeypatch.setattr(Path, "glob", listed_then_installed)
    assert other.load("model", "shared").predict(PROMPT, max_new_tokens=8) == answer
    assert (other.downloads / "installed-by-them").is_dir()  # theirs is left alone


def test_chunks_of_an_upload_cut_short_are_swept(stored):
    import datetime as dt

    from bson import ObjectId

    db, _ = stored
    chunks = db.mongo_db[f"{BUCKET}.chunks"]
    # a process killed while uploading, over an hour ago, leaves chunks and no file
    cut_short = ObjectId.from_datetime(dt.datetime.now(dt.UTC) - dt.timedelta(hours=2))
    chunks.insert_many([{"files_id": cut_short, "n": n, "data": b"x" * 10} for n in range(3)])
    record = _recorded(db, "shared")
    db.store.add_checkpoint({k: v for k, v in record.items() if k != "gridfs"}, upload="weights")
    assert chunks.count_documents({"files_id": cut_short}) == 0
    files = {f["_id"] for f in db.mongo_db[f"{BUCKET}.files"].find({}, {"_id": 1})}
    assert set(chunks.distinct("files_id")) == files


def test_a_download_streams_instead_of_reading_whole_files(db, tmp_path):
    import tracemalloc

    from llm_magics.store.artifacts import file_digests
    from llm_magics.store.uploads import local_copy, upload

    source = tmp_path / "big" / "checkpoint-1"
    source.mkdir(parents=True)
    (source / "adapter_model.safetensors").write_bytes(bytes(range(256)) * (96 * 1024))  # 24 MiB
    record = {"_id": "big-1", "path": str(source), "files": file_digests(source)}
    record["gridfs"] = upload(db.mongo_db, record, source, with_training_state=False)
    shutil.rmtree(source)
    tracemalloc.start()
    try:
        copy = local_copy(db.mongo_db, tmp_path / "cache", record, run_dir=None)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert (copy / "adapter_model.safetensors").stat().st_size == 24 * 1024**2
    assert peak < 8 * 1024**2, f"{peak / 1024**2:.1f} MiB held at once"


CONCURRENT = """
import sys, time
from pathlib import Path
from llm_magics import connect
db = connect(sys.argv[1])
record = db.store.checkpoints.find_one({"model": "shared"})
while not Path(sys.argv[3]).exists():
    time.sleep(0.01)
print(db.store.local_checkpoint(record, Path(sys.argv[2])))
"""


def test_several_processes_downloading_one_checkpoint_all_succeed(tiny_path, tmp_path):
    import subprocess
    import sys

    from llm_magics import connect

    uri = f"embedded://{tmp_path / 'store'}"
    db = connect(uri)
    db["docs"].insert_many(qa_docs(20))
    config = small_config(data="docs", max_steps=2, artifacts="db", output_dir=str(tmp_path / "machine-a"))
    LLM("shared", tiny_path).fit(configuration=config, db=db)
    shutil.rmtree(tmp_path / "machine-a")
    for round_ in range(3):
        cache, go = tmp_path / f"cache-{round_}", tmp_path / f"go-{round_}"
        workers = [
            subprocess.Popen([sys.executable, "-c", CONCURRENT, uri, str(cache), str(go)], stdout=subprocess.PIPE)
            for _ in range(4)
        ]
        go.touch()  # all at once, on a cold cache
        results = [worker.communicate(timeout=120) for worker in workers]
        assert all(worker.returncode == 0 for worker in workers), results
        assert len({out.strip() for out, _ in results}) == 1
        assert [p.name for p in cache.iterdir()] == [db.store.checkpoints.find_one({"model": "shared"})["_id"]]


def test_a_sweep_leaves_the_chunks_of_an_upload_in_progress(db):
    """GridFS writes a file's chunks before its files document: chunks without one are orphans only
    when their file id is old (an upload of another process, or thread, may be writing them)."""
    import datetime as dt

    from bson import Binary, ObjectId

    from llm_magics.store.uploads import BUCKET, sweep

    chunks = db.mongo_db[f"{BUCKET}.chunks"]
    uploading = ObjectId()  # another process's file, its chunks written, its document not yet
    dead = ObjectId.from_datetime(dt.datetime.now(dt.UTC) - dt.timedelta(hours=2))  # a crash's leftover
    chunks.insert_many([{"files_id": file_id, "n": 0, "data": Binary(b"x")} for file_id in (uploading, dead)])
    sweep(db.mongo_db, "some-checkpoint", keep=set())
    assert chunks.distinct("files_id") == [uploading]
