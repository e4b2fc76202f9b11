"""The default store: the pymongo API over SQLite, shared by threads, seen by other processes."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from llm_magics import connect


def reopen(path: Path):
    return connect(f"embedded://{path}")


def in_another_process(path: Path, statement: str) -> None:
    """Runs ``statement`` with ``db``, the same store opened by another process."""
    code = f"from llm_magics import connect\ndb = connect('embedded://{path}')\n{statement}"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_documents_survive_a_new_connection(tmp_path):
    db = connect()  # the default: .llm_magics/ in the working directory
    db["docs"].insert_many([{"i": i} for i in range(5)])
    assert (tmp_path / ".llm_magics" / "store.sqlite").is_file()
    assert reopen(tmp_path / ".llm_magics")["docs"].count_documents({}) == 5


def test_documents_come_back_in_the_order_they_were_inserted_in_every_process(tmp_path):
    """As in MongoDB, a collection's natural order is the insertion order: the same collection
    trains the same run in any kernel (before, a new connection read them in hash order, and a
    run from a second notebook trained on other batches)."""
    db = reopen(tmp_path)
    db["d"].insert_many([{"i": i} for i in range(200)])
    db["d"].insert_one({"i": 200})
    db["d"].update_one({"i": 3}, {"$set": {"x": 1}})  # an update keeps the document's place
    expected = list(range(201))
    assert [doc["i"] for doc in reopen(tmp_path)["d"].find()] == expected
    code = f"from llm_magics import connect; print([d['i'] for d in connect('embedded://{tmp_path}')['d'].find()])"
    seen = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, timeout=60)
    assert seen.stdout.strip() == str(expected)


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


STRESS = r"""
import json, random, sys
from pymongo.errors import CollectionInvalid, DuplicateKeyError, WriteError
from llm_magics import connect

path, me, ops = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
shared = connect(f"embedded://{path}")["shared"]
rng = random.Random(me)
db = connect(f"embedded://{path}")
done = {"inc": {}, "set": {}, "mine": [], "deleted": [], "won": [], "lost": [], "created": []}
for i in range(ops):
    kind, doc = rng.choice(["inc", "set", "insert", "delete", "race", "failed", "create"]), rng.randrange(10)
    if kind == "inc":
        shared.update_one({"_id": doc}, {"$inc": {f"c{me}": 1}})
        done["inc"][doc] = done["inc"].get(doc, 0) + 1
    elif kind == "set":
        shared.update_one({"_id": doc}, {"$set": {f"s{me}": i}})
        done["set"][doc] = i
    elif kind == "insert":
        shared.insert_one({"_id": f"p{me}-{i}", "by": me})
        done["mine"].append(f"p{me}-{i}")
    elif kind == "delete" and done["mine"]:
        gone = done["mine"].pop(rng.randrange(len(done["mine"])))
        assert shared.delete_one({"_id": gone}).deleted_count == 1
        done["deleted"].append(gone)
    elif kind == "race":  # every process inserts the same ids: one wins each
        try:
            shared.insert_one({"_id": f"race-{i % 50}", "by": me})
            done["won"].append(f"race-{i % 50}")
        except DuplicateKeyError:
            done["lost"].append(f"race-{i % 50}")
    elif kind == "failed":  # MongoDB applies none of an update that fails: its $set neither
        try:
            shared.update_one({"_id": doc}, {"$set": {f"f{me}": i}, "$inc": {f"c{me}": "one"}})
            raise AssertionError("an $inc of a string was taken")
        except WriteError:
            pass
    elif kind == "create":  # every process creates the same collections: one succeeds each
        try:
            db.create_collection(f"made-{i % 20}")
            done["created"].append(f"made-{i % 20}")
        except CollectionInvalid:
            pass
print(json.dumps(done))
"""


@pytest.mark.slow
def test_four_processes_interleaving_writes_lose_no_acknowledged_write(tmp_path):
    """4 processes x 1,000 interleaved $inc, $set, inserts, deletes and duplicate inserts on shared
    documents: every acknowledged write is there at the end, and nothing else."""
    import json

    reopen(tmp_path)["shared"].insert_many([{"_id": doc} for doc in range(10)])
    workers = [
        subprocess.Popen([sys.executable, "-c", STRESS, str(tmp_path), str(me), "1000"], stdout=subprocess.PIPE)
        for me in range(4)
    ]
    outputs = [worker.communicate(timeout=600)[0] for worker in workers]
    assert all(worker.returncode == 0 for worker in workers)
    done = [json.loads(out) for out in outputs]
    final = {doc["_id"]: doc for doc in reopen(tmp_path)["shared"].find()}
    for me, mine in enumerate(done):
        for doc, count in mine["inc"].items():
            assert final[int(doc)].get(f"c{me}") == count, (me, doc)  # no increment lost
        for doc, value in mine["set"].items():
            assert final[int(doc)].get(f"s{me}") == value, (me, doc)  # no $set undone by another's
        assert all(final[kept]["by"] == me for kept in mine["mine"])
        assert not any(gone in final for gone in mine["deleted"])
        assert all(final[won]["by"] == me for won in mine["won"])
    raced = {race for mine in done for race in mine["won"] + mine["lost"]}
    winners = [won for mine in done for won in mine["won"]]
    assert sorted(winners) == sorted(set(winners)) == sorted(raced)  # exactly one insert of each id won
    expected = {*range(10), *raced, *(kept for mine in done for kept in mine["mine"])}
    assert set(final) == expected  # and nothing else
    assert not [key for doc in final.values() for key in doc if key.startswith("f")]  # no failed update's $set
    created = [name for mine in done for name in mine["created"]]
    assert sorted(created) == sorted(set(created))  # each collection created once, by one process
    assert set(created) == {n for n in reopen(tmp_path).list_collection_names() if n.startswith("made-")}


def test_an_insert_of_an_existing_id_fails_in_every_process(tmp_path):
    from pymongo.errors import DuplicateKeyError

    db = reopen(tmp_path)
    db["d"].insert_one({"_id": "x", "v": 1})
    db["u"].create_index("email", unique=True)
    db["u"].insert_one({"email": "a@example.com"})
    code = textwrap.dedent(f"""
        from pymongo.errors import DuplicateKeyError
        from llm_magics import connect
        db = connect("embedded://{tmp_path}")
        for collection, doc in (("d", {{"_id": "x", "v": 2}}), ("u", {{"email": "a@example.com"}})):
            try:
                db[collection].insert_one(doc)
                print("inserted")
            except DuplicateKeyError:
                print("duplicate")
    """)
    seen = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert seen.stdout.split() == ["duplicate", "duplicate"]
    assert db["d"].find_one({"_id": "x"})["v"] == 1
    with pytest.raises(DuplicateKeyError):
        db["d"].insert_one({"_id": "x"})  # this process, already holding x in memory


def test_updates_from_two_processes_to_one_document_both_stay(tmp_path):
    db = reopen(tmp_path)
    db["runs"].insert_one({"_id": "r", "a": 0, "b": 0})
    db["runs"].find_one({"_id": "r"})  # this process holds the document in memory
    in_another_process(tmp_path, "db['runs'].update_one({'_id': 'r'}, {'$set': {'b': 2}})")
    db["runs"].update_one({"_id": "r"}, {"$set": {"a": 1}})  # applied to the committed document
    assert reopen(tmp_path)["runs"].find_one({"_id": "r"}) == {"_id": "r", "a": 1, "b": 2}


def test_a_delete_after_another_process_deleted_the_same_document_does_not_raise(tmp_path):
    db = reopen(tmp_path)
    db["c"].insert_many([{"_id": i} for i in range(3)])
    assert db["c"].count_documents({}) == 3
    in_another_process(tmp_path, "db['c'].delete_one({'_id': 1})")
    assert db["c"].delete_one({"_id": 1}).deleted_count == 0  # gone already: nothing to do, no KeyError
    assert db["c"].delete_one({"_id": 2}).deleted_count == 1
    assert sorted(doc["_id"] for doc in reopen(tmp_path)["c"].find()) == [0]


def test_collections_load_when_used_and_catch_up_on_what_changed(tmp_path):
    """Opening the store reads no collection; after another process changes one document of 5,000,
    the next read takes that document, not the 5,000."""
    from llm_magics.store.embedded_file import StoreFile

    seed = reopen(tmp_path)
    seed["big"].insert_many([{"i": i} for i in range(5000)])
    seed["small"].insert_one({"x": 1})
    db = reopen(tmp_path)
    server = db.client.server
    assert db["small"].count_documents({}) == 1
    assert not server["default"]["big"]._loaded  # only what was used is in memory
    assert db["big"].count_documents({}) == 5000
    in_another_process(tmp_path, "db['big'].update_one({'i': 7}, {'$set': {'seen': True}})")
    read = {"whole": 0, "changed": []}
    documents, changes = StoreFile.documents, StoreFile.changes

    def whole(self, *args):
        read["whole"] += 1
        return documents(self, *args)

    def changed(self, *args):
        written, deleted = changes(self, *args)
        read["changed"].append(len(written) + len(deleted))
        return written, deleted

    StoreFile.documents, StoreFile.changes = whole, changed
    try:
        assert db["big"].find_one({"i": 7})["seen"] is True
    finally:
        StoreFile.documents, StoreFile.changes = documents, changes
    assert read == {"whole": 0, "changed": [1]}


def test_a_store_written_by_the_previous_version_opens_and_keeps_working(tmp_path):
    """The file of the version before per-document versions: no version column, no tombstones."""
    import sqlite3

    import bson

    with sqlite3.connect(tmp_path / "store.sqlite") as old:
        old.executescript(
            "CREATE TABLE collections (db TEXT NOT NULL, name TEXT NOT NULL, version INTEGER NOT NULL DEFAULT 0,"
            " indexes BLOB, PRIMARY KEY (db, name));"
            "CREATE TABLE documents (db TEXT NOT NULL, name TEXT NOT NULL, key BLOB NOT NULL, doc BLOB NOT NULL,"
            " PRIMARY KEY (db, name, key));"
        )
        old.execute("INSERT INTO collections VALUES ('default', 'docs', 3, NULL)")
        for i in range(3):
            old.execute(
                "INSERT INTO documents VALUES ('default', 'docs', ?, ?)",
                (bson.encode({"_id": i}), bson.encode({"_id": i, "text": f"t{i}"})),
            )
    db = reopen(tmp_path)
    assert sorted(doc["text"] for doc in db["docs"].find()) == ["t0", "t1", "t2"]
    db["docs"].delete_one({"_id": 0})
    db["docs"].update_one({"_id": 1}, {"$set": {"text": "changed"}})
    assert sorted(doc["text"] for doc in reopen(tmp_path)["docs"].find()) == ["changed", "t2"]


def test_a_failed_update_applies_nothing_and_raises_mongodbs_error(tmp_path):
    from pymongo.errors import WriteError

    db = reopen(tmp_path)
    db["c"].insert_one({"_id": 1, "n": 1})
    with pytest.raises(WriteError, match="update_one"):
        db["c"].update_one({"_id": 1}, {"$set": {"a": 1}, "$inc": {"n": "str"}})
    assert db["c"].find_one({"_id": 1}) == {"_id": 1, "n": 1}  # not in this process's memory either
    db["c"].update_one({"_id": 1}, {"$inc": {"n": 1}})  # the next write of the same document
    assert reopen(tmp_path)["c"].find_one({"_id": 1}) == {"_id": 1, "n": 2}


def test_three_processes_creating_one_collection_one_succeeds(tmp_path):
    reopen(tmp_path)  # the file exists before the race
    code = textwrap.dedent(
        f"""
        import sys, time
        from pymongo.errors import CollectionInvalid
        from llm_magics import connect
        db = connect('embedded://{tmp_path}')
        time.sleep(max(0.0, float(sys.argv[1]) - time.time()))  # all three at once
        try:
            db.create_collection('once')
            print('created')
        except CollectionInvalid:
            print('exists')
        """
    )
    import time

    for _ in range(3):  # rounds: the race is a race
        start = f"{time.time() + 3:.3f}"
        workers = [subprocess.Popen([sys.executable, "-c", code, start], stdout=subprocess.PIPE) for _ in range(3)]
        answers = sorted(worker.communicate(timeout=120)[0].decode().strip() for worker in workers)
        assert answers == ["created", "exists", "exists"]
        reopen(tmp_path).drop_collection("once")


def test_a_writer_stopped_holding_its_turn_makes_others_fail_not_hang(tmp_path):
    import os
    import signal
    import sqlite3
    import time

    from llm_magics.store.embedded import EmbeddedClient
    from llm_magics.store.records import Store
    from llm_magics.training.recorder import Outbox

    reopen(tmp_path)["c"].insert_one({"_id": 1})
    lock = tmp_path / "store.sqlite.lock"
    assert oct(lock.stat().st_mode & 0o777) == "0o600"  # no one else can take the writers' turn
    client = EmbeddedClient(tmp_path / "store.sqlite", timeout=1.0)
    holder = subprocess.Popen(
        [sys.executable, "-c", f"from llm_magics import connect\nimport os, signal\n"
         f"db = connect('embedded://{tmp_path}')\ndb.client.server.file.begin()\nprint('holding', flush=True)\n"
         "os.kill(os.getpid(), signal.SIGSTOP)"],
        stdout=subprocess.PIPE,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == b"holding"
        started = time.monotonic()
        with pytest.raises(sqlite3.OperationalError, match="database is locked"):
            client["default"]["c"].insert_one({"_id": 2})
        assert time.monotonic() - started < 10
        # a run's recorder keeps the write for later, as when the database is away
        assert Outbox(Store(client["default"])).write("update_run", "r1", status="running") is False
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
    assert reopen(tmp_path)["c"].count_documents({}) == 1
