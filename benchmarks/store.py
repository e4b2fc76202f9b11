"""The embedded store against mongomock in memory and plain sqlite3, side by side in one run.

- ``insert_many`` of small documents, and ``find`` with a filter over them, at each size: the
  embedded store (mongomock's engine over SQLite, one transaction per operation), mongomock alone
  (no disk), and plain ``sqlite3`` inserting the same BSON in one transaction (the floor for a
  store that writes to SQLite). Each case runs in a fresh process.
- Opening: connecting to a store that holds the documents, and the first read of them.
- One run-record write (``update_one`` on the runs collection, as the recorder writes a run's
  progress) while another process keeps inserting metric rows into a collection of M documents:
  its cost must not grow with M (a write reads only what changed).

    python benchmarks/store.py                  # 100k and 1M documents
    python benchmarks/store.py --sizes 10000    # a quick run
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from workload import common_options, emit, ratio, workdir

CASES = ("mongomock", "embedded", "sqlite3")


def small_documents(count: int) -> list[dict[str, Any]]:
    return [{"i": i, "text": f"document {i}", "fold": "valid" if i % 10 == 0 else "train"} for i in range(count)]


def measure_case(case: str, count: int, root: Path) -> dict[str, Any]:
    """One store, in this process: insert_many, then a filtered find (and reopening, for ours)."""
    documents = small_documents(count)
    wanted = {"i": {"$gte": count - 100}}
    if case == "sqlite3":
        return {"insert_many_s": _sqlite_insert(documents, root / "plain.sqlite")}
    if case == "mongomock":
        import mongomock

        collection = mongomock.MongoClient()["bench"]["docs"]
    else:
        from llm_magics import connect

        collection = connect(f"embedded://{root / 'store'}")["docs"]
    started = time.perf_counter()
    collection.insert_many(documents)
    inserted = time.perf_counter() - started
    started = time.perf_counter()
    found = len(list(collection.find(wanted)))
    result = {"insert_many_s": inserted, "find_s": time.perf_counter() - started, "found": found}
    if case == "embedded":
        result.update(_reopened(root / "store", wanted))
    return result


def _sqlite_insert(documents: list[dict[str, Any]], path: Path) -> float:
    import sqlite3

    import bson
    from bson import ObjectId

    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=NORMAL")
    connection.execute("CREATE TABLE documents (key BLOB PRIMARY KEY, doc BLOB NOT NULL)")
    started = time.perf_counter()
    rows = []
    for document in documents:
        document["_id"] = ObjectId()
        rows.append((bson.encode({"_id": document["_id"]}), bson.encode(document)))
    connection.execute("BEGIN IMMEDIATE")
    connection.executemany("INSERT INTO documents VALUES (?, ?)", rows)
    connection.execute("COMMIT")
    return time.perf_counter() - started


def _reopened(path: Path, wanted: dict[str, Any]) -> dict[str, Any]:
    from llm_magics import connect

    started = time.perf_counter()
    collection = connect(f"embedded://{path}")["docs"]
    opened = time.perf_counter() - started
    started = time.perf_counter()
    len(list(collection.find(wanted)))
    return {"open_s": opened, "first_find_s": time.perf_counter() - started}


def measure_run_writes(neighbours: int, root: Path, writes: int = 200) -> dict[str, Any]:
    """Run-record writes in this process while another process inserts into a collection of
    ``neighbours`` documents; and the same writes with nobody else writing."""
    from llm_magics import connect

    uri = f"embedded://{root / f'runs-{neighbours}'}"
    db = connect(uri)
    db["metrics"].insert_many(small_documents(neighbours))
    db["runs"].insert_one({"_id": "r", "step": 0})
    alone = _timed_writes(db, writes)
    other = subprocess.Popen([sys.executable, __file__, "--insert-forever", uri])
    try:
        time.sleep(1.0)  # it is importing, then inserting
        busy = _timed_writes(db, writes)
    finally:
        other.kill()
        other.wait()
    return {"neighbours": neighbours, "alone_ms": alone, "while_another_inserts_ms": busy}


def _timed_writes(db: Any, writes: int) -> dict[str, float]:
    times = []
    for step in range(writes):
        started = time.perf_counter()
        db["runs"].update_one({"_id": "r"}, {"$set": {"step": step}})
        db["runs"].find_one({"_id": "r"})  # what the view reads after it
        times.append((time.perf_counter() - started) * 1000)
        time.sleep(0.005)  # the other process gets to write in between
    times.sort()
    return {"median": statistics.median(times), "p95": times[int(len(times) * 0.95) - 1]}


def insert_forever(uri: str) -> None:
    from llm_magics import connect

    metrics = connect(uri)["metrics"]
    step = 0
    while True:
        metrics.insert_many([{"run": "r", "step": step + k, "loss": 1.0} for k in range(10)])
        step += 10


def run(sizes: list[int], neighbours: list[int]) -> dict[str, Any]:
    root = workdir("store")
    results: dict[str, Any] = {"sizes": {}, "run_writes": []}
    for count in sizes:
        arms = {}
        for case in CASES:
            place = str(root / f"{case}-{count}")
            command = [sys.executable, __file__, "--case", case, "--count", str(count), "--root", place]
            done = subprocess.run(command, capture_output=True, text=True, check=True)
            arms[case] = json.loads(done.stdout.strip().splitlines()[-1])
        inserts = {case: arm["insert_many_s"] for case, arm in arms.items()}
        results["sizes"][str(count)] = {
            "arms": arms,
            "insert_many embedded / mongomock": ratio(inserts["embedded"], inserts["mongomock"]),
            "insert_many embedded / sqlite3": ratio(inserts["embedded"], inserts["sqlite3"]),
            "find embedded / mongomock": ratio(arms["embedded"]["find_s"], arms["mongomock"]["find_s"]),
        }
    results["run_writes"] = [measure_run_writes(count, root) for count in neighbours]
    return results


def show(result: dict[str, Any]) -> None:
    for count, size in result["sizes"].items():
        print(f"{int(count):,} documents")
        for case, arm in size["arms"].items():
            print(f"  {case:<10} " + "  ".join(f"{k} {v:.3f}" for k, v in arm.items() if k.endswith("_s")))
        for name in ("insert_many embedded / mongomock", "insert_many embedded / sqlite3", "find embedded / mongomock"):
            print(f"  {name}: x{size[name]:.2f}")
    for writes in result["run_writes"]:
        alone, busy = writes["alone_ms"], writes["while_another_inserts_ms"]
        print(
            f"run-record write next to {writes['neighbours']:,} documents: alone {alone['median']:.2f} ms,"
            f" while another process inserts {busy['median']:.2f} ms (p95 {busy['p95']:.2f})"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--neighbours", type=int, nargs="+", default=[5_000, 100_000])
    parser.add_argument("--case", choices=CASES, help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--root", help=argparse.SUPPRESS)
    parser.add_argument("--insert-forever", metavar="URI", help=argparse.SUPPRESS)
    common_options(parser)
    args = parser.parse_args()
    if args.insert_forever:
        insert_forever(args.insert_forever)
    elif args.case:
        Path(args.root).mkdir(parents=True, exist_ok=True)
        print(json.dumps(measure_case(args.case, args.count, Path(args.root))))
    else:
        emit(run(args.sizes, args.neighbours), args.json, show)


if __name__ == "__main__":
    main()
