"""Checkpoint files kept in the database (GridFS): another machine loads, verifies and predicts."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from helpers import qa_docs, small_config

from llm_magics import LLM, Database
from llm_magics.artifacts import BUCKET, gridfs_bucket
from llm_magics.errors import ModelError

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
    from llm_magics.artifacts import delete

    db, _ = stored
    before = db.mongo_db[f"{BUCKET}.files"].count_documents({})
    record = db.show("checkpoint", "shared")[0]
    delete(db.store, record)
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

    from llm_magics.store import now

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
