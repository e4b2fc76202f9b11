"""BENCHMARKS.md's section on getting data in and checking it, from ingest.py's results."""

from __future__ import annotations

from typing import Any

from formatting import ratio, table

INGEST_TITLE = "14. Data in: `db.ingest` of a JSONL file against `datasets` + `insert_many`; the data report"


def ingest_goals(result: dict[str, Any]) -> list[dict[str, Any]]:
    goals, sizes = result["goals"], result["sizes"]
    largest = sizes[max(sizes, key=int)]
    smallest = sizes[min(sizes, key=int)]
    reads = [sizes[k]["arms"]["read only"]["peak_mib"] for k in sorted(sizes, key=int)]
    flat = max(reads) / max(min(reads), 1.0)
    return [
        {
            "what": f"Ingest of {int(max(sizes, key=int)):,} JSONL rows into the embedded store: time, ours / datasets"
            " + insert_many",
            "goal": f"≤ x{goals['time']}",
            "measured": ratio(largest["time_ratio"], 2),
            "met": largest["time_ratio"] <= goals["time"],
            "why": "Every row is parsed twice (checked, then written) but never converted to Arrow; section 14.",
        },
        {
            "what": "The same: peak memory, ours / datasets + insert_many",
            "goal": f"≤ x{goals['memory']}",
            "measured": ratio(largest["memory_ratio"], 2),
            "met": largest["memory_ratio"] is not None and largest["memory_ratio"] <= goals["memory"],
            "why": "Both arms' peak is mostly the store's own in-memory copy of the collection (the embedded store"
            " keeps mongomock's documents in memory as a cache of SQLite); the reader alone stays flat (next row).",
        },
        {
            "what": f"The reader's peak memory, {int(min(sizes, key=int)):,} against {int(max(sizes, key=int)):,} rows",
            "goal": f"flat (≤ x{goals['flat']})",
            "measured": ratio(flat, 2),
            "met": flat <= goals["flat"],
            "why": "Rows are read a line and written a batch at a time"
            f" ({smallest['arms']['read only']['peak_mib']:.0f} MiB and {largest['arms']['read only']['peak_mib']:.0f}"
            " MiB).",
        },
    ]


def ingest_section(result: dict[str, Any]) -> list[str]:
    rows = []
    for size, entry in sorted(result["sizes"].items(), key=lambda item: int(item[0])):
        for name, a in entry["arms"].items():
            rows.append(
                [
                    f"{int(size):,} ({entry['file_mib']:.0f} MiB)",
                    name,
                    f"{a['seconds']:.1f} s",
                    f"+{a['peak_mib']:.0f} MiB",
                ]
            )
    report = result["report"]
    return [
        "A JSONL file of two-turn chats into the embedded store, each arm in a fresh process; peak: the growth of the"
        " process's peak resident memory (VmHWM) over the arm. ingest: every row checked, then written 2,000 at a time."
        " datasets + insert_many: `load_dataset(\"json\")`, then `insert_many` of 2,000 rows at a time. read only:"
        " our two passes over the file, nothing written.",
        "",
        *table(["rows", "arm", "time", "peak memory"], rows),
        *(f"{int(size):,} rows: time x{entry['time_ratio']:.2f}, memory x{entry['memory_ratio']:.2f} (ingest /"
          " datasets + insert_many)." for size, entry in sorted(result["sizes"].items(), key=lambda i: int(i[0]))),
        "",
        f"The data report on {report['docs']:,} chats with the tiny model's byte-level tokenizer (token lengths and"
        f" label masks through the chat template, every finding): {report['seconds']:.1f} s.",
        *(_cache(result["cache"]) if "cache" in result else []),
    ]  # fmt: skip


def _cache(cache: dict[str, Any]) -> list[str]:
    rows = [[name, f"{seconds:.2f} s"] for name, seconds in cache["seconds"].items()]
    first, second = list(cache["seconds"].values())[1:]
    return [
        "",
        f"A run's data preparation on {cache['docs']:,} question / answer documents (the tiny tokenizer, mongomock):"
        " tokenizing alone, then the first and the second run through the cache of tokenized data.",
        "",
        *table(["", "time"], rows),
        f"The second run prepares its data in {second / first:.0%} of the first's time.",
        *_reads(cache.get("read"), cache["docs"]),
    ]


def _reads(read: dict[str, float] | None, docs: int) -> list[str]:
    if not read:
        return []
    theirs, ours = read["mongomock's cursor"], read["ours"]
    return [
        "",
        f"Reading all {docs:,} documents of that collection (`find`), mongomock 4.3's cursor against ours"
        " (`store.linear_cursor`: mongomock copies the rest of the result list for every document it returns):",
        "",
        *table(["", "time"], [[name, f"{seconds:.2f} s"] for name, seconds in read.items()]),
        f"Ours reads in x{ours / theirs:.3f} the time (x{theirs / ours:.0f} faster); every run, report and"
        " evaluation on the in-memory and embedded stores reads this way.",
    ]
