"""Data in and data checked: ``db.ingest`` of a JSONL file against reading it with ``datasets`` and
inserting in batches; the data report on a collection.

ingest: a JSONL file of chats (``N`` rows) into the embedded store, each arm in a fresh process
(time and peak RSS, VmHWM): ours (``ingest``: every row checked first, then written in batches of
2,000), the baseline a user writes (``datasets.load_dataset("json")``, then ``insert_many`` of 2,000
rows at a time), and ours reading only (the rows checked and iterated, nothing written: what the
reader itself holds).

report: ``data_report`` on a collection of ``--report-docs`` chats, with the tiny model's tokenizer.

    python benchmarks/ingest.py [--rows 100000 1000000] [--report-docs 100000] [--json]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from workload import common_options, emit, peak_rss, quiet, reset_peak_rss, tiny, workdir

GOALS = {"time": 1.2, "memory": 0.5, "flat": 1.10}


def write_file(path: Path, rows: int) -> None:
    with path.open("w") as out:
        for i in range(rows):
            chat = [
                {"role": "user", "content": f"question {i} about the store"},
                {"role": "assistant", "content": f"it is {i}"},
            ]
            out.write(json.dumps({"messages": chat, "id": i}) + "\n")


def arm(name: str, path: str, store: str) -> dict[str, Any]:
    """One arm in this (fresh) process: seconds and peak RSS in MiB."""
    quiet()
    from llm_magics import connect

    db = connect(f"embedded://{store}") if name != "read only" else None
    before = reset_peak_rss()
    started = time.perf_counter()
    if name == "ingest":
        from llm_magics.data.ingest import ingest

        ingest(db.mongo_db, path, "chats")
    elif name == "read only":
        from llm_magics.data.ingest import _reader

        reader = _reader(path)
        count = sum(1 for _ in reader(None)) + sum(1 for _ in reader(None))  # the check pass and the write pass
        assert count
    else:
        import datasets

        datasets.disable_progress_bars()
        loaded = datasets.load_dataset("json", data_files=path, split="train")
        collection = db.mongo_db["chats"]
        for batch in loaded.iter(batch_size=2000):
            names = list(batch)
            collection.insert_many(
                [dict(zip(names, values, strict=True)) for values in zip(*batch.values(), strict=True)]
            )
    seconds = time.perf_counter() - started
    written = db.mongo_db["chats"].count_documents({}) if db is not None else None
    return {"seconds": seconds, "peak_mib": peak_rss() - before, "written": written}


def in_process(name: str, path: Path, root: Path) -> dict[str, Any]:
    store = root / f"store-{name.replace(' ', '-')}-{time.time_ns()}"
    done = subprocess.run(
        [sys.executable, __file__, "--arm", name, "--file", str(path), "--store", str(store)],
        capture_output=True,
        text=True,
        check=True,
        cwd=root,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def report_time(root: Path, docs: int) -> dict[str, Any]:
    from llm_magics import connect
    from llm_magics.data.report import data_report
    from llm_magics.models.loader import load_tokenizer

    db = connect("mongomock://bench-report")

    def chat(i: int) -> list[dict[str, str]]:
        return [{"role": "user", "content": f"q {i} " * (1 + i % 7)}, {"role": "assistant", "content": f"a {i}"}]

    db["chats"].insert_many([{"messages": chat(i)} for i in range(docs)])
    tokenizer = load_tokenizer(tiny(root))
    started = time.perf_counter()
    report = data_report(db.mongo_db, "chats", tokenizer=tokenizer, max_length=64)
    return {"docs": docs, "seconds": time.perf_counter() - started, "findings": report.warnings()}


def cache_times(root: Path, docs: int) -> dict[str, Any]:
    """The data preparation of a run on ``docs`` question / answer documents: tokenizing (no cache),
    the first run with the cache (hashing, tokenizing, saving) and the second (hashing, loading)."""
    from llm_magics import connect
    from llm_magics.config.data_keys import DataKeys
    from llm_magics.data.cache import cached_build
    from llm_magics.data.training_set import build
    from llm_magics.models.loader import load_tokenizer

    db = connect("mongomock://bench-cache")
    db["qa"].insert_many([{"q": f"what is {i} plus {i % 7}?", "a": f"it is {i + i % 7}"} for i in range(docs)])
    keys = DataKeys(collection="qa", prompt="q", response="a", max_length=64)
    tokenizer = load_tokenizer(tiny(root))

    def with_cache():
        data, keep = cached_build(db.mongo_db, keys, tokenizer, None, root / "cache")
        if keep is not None:
            keep()  # as a run does when it starts
        return data

    times = {}
    for name, prepare in (
        ("tokenize (no cache)", lambda: build(db.mongo_db, keys, tokenizer)),
        ("first run (hash, tokenize, save)", with_cache),
        ("second run (hash, load)", with_cache),
    ):
        data = None  # the second run finds the first's sets on disk, not held in this process
        started = time.perf_counter()
        data = prepare()
        times[name] = time.perf_counter() - started
    assert data.counts.get("from_cache") == 1
    return {"docs": docs, "seconds": times, "read": read_times(db["qa"])}


def read_times(collection: Any) -> dict[str, float]:
    """Reading every document of ``collection`` through mongomock's own cursor and through ours
    (``store.linear_cursor``), side by side."""
    from mongomock.collection import Cursor

    from llm_magics.store import linear_cursor

    times = {}
    for name, step in (("mongomock's cursor", linear_cursor.original), ("ours", Cursor.__next__)):
        replaced = Cursor.__next__
        Cursor.__next__ = step
        try:
            started = time.perf_counter()
            count = sum(1 for _ in collection.find({}, {"q": 1, "a": 1}))
            times[name] = time.perf_counter() - started
        finally:
            Cursor.__next__ = replaced
        assert count == collection.count_documents({})
    return times


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--report-docs", type=int, default=100_000)
    parser.add_argument("--arm", help=argparse.SUPPRESS)
    parser.add_argument("--file", help=argparse.SUPPRESS)
    parser.add_argument("--store", help=argparse.SUPPRESS)
    common_options(parser)
    options = parser.parse_args(argv)
    if options.arm:
        print(json.dumps(arm(options.arm, options.file, options.store)))
        return {}
    quiet()
    root = workdir("ingest")
    result: dict[str, Any] = {"goals": GOALS, "sizes": {}}
    for rows in options.rows:
        path = root / f"chats-{rows}.jsonl"
        write_file(path, rows)
        arms = {name: in_process(name, path, root) for name in ("ingest", "datasets + insert_many", "read only")}
        base = arms["datasets + insert_many"]
        result["sizes"][str(rows)] = {
            "file_mib": path.stat().st_size / 2**20,
            "arms": arms,
            "time_ratio": arms["ingest"]["seconds"] / base["seconds"],
            "memory_ratio": arms["ingest"]["peak_mib"] / base["peak_mib"] if base["peak_mib"] else None,
        }
    result["report"] = report_time(root, options.report_docs)
    result["cache"] = cache_times(root, options.report_docs)
    return emit(result, options.json, show)


def show(result: dict[str, Any]) -> None:
    for rows, entry in result["sizes"].items():
        print(f"{int(rows):,} rows ({entry['file_mib']:.0f} MiB)")
        for name, a in entry["arms"].items():
            print(f"  {name}: {a['seconds']:.1f} s, peak +{a['peak_mib']:.0f} MiB, written {a['written']}")
        print(f"  time x{entry['time_ratio']:.2f}, memory x{entry['memory_ratio']:.2f}")
    r = result["report"]
    print(f"report on {r['docs']:,} documents: {r['seconds']:.1f} s")
    for name, seconds in {**result["cache"]["seconds"], **result["cache"]["read"]}.items():
        print(f"{name}: {seconds:.2f} s")


if __name__ == "__main__":
    main()
