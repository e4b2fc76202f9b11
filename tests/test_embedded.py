"""The default store: the pymongo API over SQLite, shared by threads, seen by other processes."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest

from llm_magics import connect


def reopen(path: Path):
    return connect(f"embedded://{path}")


def test_documents_survive_a_new_connection(tmp_path):
    db = connect()  # the default: .llm_magics/ in the working directory
    db["docs"].insert_many([{"i": i} for i in range(5)])
    assert (tmp_path / ".llm_magics" / "store.sqlite").is_file()
    assert reopen(tmp_path / ".llm_magics")["docs"].count_documents({}) == 5


def test_updates_in_place_are_written(tmp_path):
    db = reopen(tmp_path)
    db["d"].insert_many([{"i": i, "tags": []} for i in range(4)])
    db["d"].update_one({"i": 0}, {"$set": {"x": 1}})
    db["d"].update_many({"i": {"$gte": 2}}, {"$push": {"tags": "t"}})
    db["d"].find_one_and_update({"i": 1}, {"$inc": {"n": 2}})
    db["d"].replace_one({"i": 3}, {"i": 3, "replaced": True})
    db["d"].update_one({"i": 9}, {"$set": {"up": True}}, upsert=True)
    again = {doc["i"]: doc for doc in reopen(tmp_path)["d"].find({}, {"_id": 0})}
    assert again[0]["x"] == 1 and again[1]["n"] == 2 and again[2]["tags"] == ["t"]
    assert again[3] == {"i": 3, "replaced": True} and again[9]["up"] is True


def test_deletes_drops_and_unique_indexes_persist(tmp_path):
    db = reopen(tmp_path)
    db["a"].insert_many([{"k": i} for i in range(3)])
    db["a"].create_index("k", unique=True)
    db["a"].delete_one({"k": 0})
    db["b"].insert_one({"x": 1})
    db.drop_collection("b")
    again = reopen(tmp_path)
    assert sorted(again.list_collection_names()) == ["a"]
    assert again["a"].count_documents({}) == 2
    with pytest.raises(Exception, match=r"[Dd]uplicate"):
        again["a"].insert_one({"k": 1})


def test_threads_write_while_another_reads(tmp_path):
    db = reopen(tmp_path)
    errors = []

    def write(k):
        try:
            for i in range(100):
                db["t"].insert_one({"k": k, "i": i})
        except Exception as error:  # pragma: no cover - the assertion reports it
            errors.append(error)

    threads = [threading.Thread(target=write, args=(k,)) for k in range(3)]
    for thread in threads:
        thread.start()
    while any(thread.is_alive() for thread in threads):
        list(db["t"].find({"k": 1}))
    assert errors == []
    assert reopen(tmp_path)["t"].count_documents({}) == 300


def test_a_write_by_another_process_is_seen(tmp_path):
    db = reopen(tmp_path)
    db["shared"].insert_one({"who": "me"})
    code = (
        "import sys; from llm_magics import connect; "
        f"connect('embedded://{tmp_path}')['shared'].insert_one({{'who': 'other'}})"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
    assert sorted(doc["who"] for doc in db["shared"].find()) == ["me", "other"]


def test_values_bson_cannot_hold_are_refused_and_nothing_is_written(tmp_path):
    db = reopen(tmp_path)
    with pytest.raises(Exception, match="encode"):
        db["x"].insert_one({"value": object()})
    assert reopen(tmp_path)["x"].count_documents({}) == 0
