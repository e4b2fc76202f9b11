"""Data path: documents in the store -> the tokenized training set, against plain ``datasets``.

- llm_magics: ``llm_magics.data.training_set.build(db, config.data_keys(), tokenizer)`` (streams the cursor in batches,
  keeps token arrays only);
- plain: ``datasets.Dataset.from_list(list(collection.find({}, {"_id": 0})))`` then
  ``.map(tokenizer, batched=True)`` (``_id`` is projected out: an ObjectId is not an Arrow type).

For ``mongomock://`` (documents in memory) and the embedded default ``embedded://DIR`` (SQLite on
disk). Each case runs in a fresh process: documents per second, and the peak resident memory
the build added (Linux VmHWM, reset just before the build, minus the resident memory then).
The documents are seed-style question/answer texts of about 180 bytes; the tokenizer is the tiny
model's (ByT5, bytes), max_length 512, so nothing is cut.

    python benchmarks/data_path.py [--docs 100000] [--rounds 1] [--json]
"""

from __future__ import annotations

import argparse
import gc
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from workload import documents, emit, median, peak_rss, quiet, ratio, reset_peak_rss, tiny, workdir

ARMS = ("llm_magics", "plain datasets")
STORES = ("mongomock", "embedded")
MAX_LENGTH = 512


def ours(db: Any, tokenizer: Any, collection: str = "docs") -> Any:
    from llm_magics import LLMTrainingConfiguration
    from llm_magics.data.training_set import build

    return build(db, LLMTrainingConfiguration(data=collection, max_length=MAX_LENGTH).data_keys(), tokenizer).train


def plain(db: Any, tokenizer: Any, collection: str = "docs") -> Any:
    import datasets

    dataset = datasets.Dataset.from_list(list(db[collection].find({}, {"_id": 0})))
    return dataset.map(
        lambda batch: tokenizer(batch["text"], truncation=True, max_length=MAX_LENGTH),
        batched=True,
        remove_columns=dataset.column_names,
    )


def child(arm: str, store: str, root: Path, count: int) -> dict[str, Any]:
    """One case, in this (fresh) process."""
    import pyarrow.compute as pc

    from llm_magics import connect
    from llm_magics.models.loader import load_tokenizer

    quiet()
    tokenizer = load_tokenizer(str(root / "tiny"))
    if store == "mongomock":
        db = connect("mongomock://bench")
        db["docs"].insert_many(documents(count))
        db["warm-up"].insert_many(documents(10))
    else:
        db = connect(f"embedded://{root / 'store'}")
    build = ours if arm == "llm_magics" else plain
    build(db, tokenizer, "warm-up")  # what is imported on first use is not part of the measure
    gc.collect()
    baseline = reset_peak_rss()
    started = time.perf_counter()
    dataset = build(db, tokenizer)
    elapsed = time.perf_counter() - started
    result = {"s": elapsed, "docs_per_s": count / elapsed, "peak_mib": peak_rss() - baseline}
    lengths = pc.list_value_length(dataset.data.column("input_ids"))
    result.update(rows=dataset.num_rows, tokens=pc.sum(lengths).as_py())
    if arm == "llm_magics":
        result["dataset_wrap_peak_mib"] = dataset_wrap(dataset.data.table)
    return result


def dataset_wrap(table: Any) -> dict[str, float]:
    """The peak memory of wrapping the token table in a ``datasets.Dataset`` as ``build`` does
    (``datasets.Dataset(table)``, which fingerprints it by hashing the whole table), and with a
    fingerprint given."""
    import datasets

    peaks = {"table_mib": table.nbytes / 2**20}
    for case, kwargs in (("Dataset(table)", {}), ("Dataset(table, fingerprint=...)", {"fingerprint": "given"})):
        gc.collect()
        baseline = reset_peak_rss()
        datasets.Dataset(table, **kwargs)
        peaks[case] = peak_rss() - baseline
    return peaks


def run_case(arm: str, store: str, root: Path, count: int) -> dict[str, Any]:
    command = [sys.executable, __file__, "--child", f"{arm}:{store}", "--root", str(root), "--docs", str(count)]
    done = subprocess.run(command, capture_output=True, text=True, cwd=root)
    if done.returncode:
        raise RuntimeError(f"{arm} on {store} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=1, help="runs of each case (medians reported)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--root", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        arm, store = args.child.split(":")
        print(json.dumps(child(arm, store, Path(args.root), args.docs)))
        return {}

    root = workdir("data")
    quiet()
    tiny(root)
    from llm_magics import connect

    filled = time.perf_counter()
    embedded = connect(f"embedded://{root / 'store'}")
    embedded["docs"].insert_many(documents(args.docs))
    embedded["warm-up"].insert_many(documents(10))
    result: dict[str, Any] = {"docs": args.docs, "rounds": args.rounds, "fill_embedded_s": time.perf_counter() - filled}
    for store in STORES:
        cases = {arm: [] for arm in ARMS}
        for round_ in range(args.rounds):
            for arm in ARMS if round_ % 2 == 0 else ARMS[::-1]:
                cases[arm].append(run_case(arm, store, root, args.docs))
        result[store] = summarize(cases)
    return emit(result, args.json, show)


def summarize(cases: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    arms = {
        arm: {
            "s": median(r["s"] for r in runs),
            "docs_per_s": median(r["docs_per_s"] for r in runs),
            "peak_mib": median(r["peak_mib"] for r in runs),
            "rows": runs[0]["rows"],
            "tokens": runs[0]["tokens"],
            **(
                {"dataset_wrap_peak_mib": runs[0]["dataset_wrap_peak_mib"]}
                if "dataset_wrap_peak_mib" in runs[0]
                else {}
            ),
        }
        for arm, runs in cases.items()
    }
    ours_, plain_ = arms["llm_magics"], arms["plain datasets"]
    return {
        "arms": arms,
        "speed llm_magics / plain": ratio(ours_["docs_per_s"], plain_["docs_per_s"]),
        "peak memory llm_magics / plain": ratio(ours_["peak_mib"], plain_["peak_mib"]),
        "same rows and tokens": (ours_["rows"], ours_["tokens"]) == (plain_["rows"], plain_["tokens"]),
    }


def show(result: dict[str, Any]) -> None:
    print(f"{result['docs']} documents")
    for store in STORES:
        summary = result[store]
        for arm, values in summary["arms"].items():
            print(
                f"{store:<10} {arm:<15} {values['docs_per_s']:10.0f} docs/s  {values['s']:7.2f} s  "
                f"peak +{values['peak_mib']:7.1f} MiB  ({values['rows']} rows, {values['tokens']} tokens)"
            )
        print(
            f"{store:<10} speed x{summary['speed llm_magics / plain']:.2f}, "
            f"peak memory x{summary['peak memory llm_magics / plain']:.2f}, "
            f"same rows and tokens: {summary['same rows and tokens']}"
        )
        wrap = summary["arms"]["llm_magics"]["dataset_wrap_peak_mib"]
        print(
            f"{store:<10} peak of wrapping the token table ({wrap['table_mib']:.0f} MiB) in a Dataset: "
            + ", ".join(f"{case} +{value:.0f} MiB" for case, value in wrap.items() if case != "table_mib")
        )


if __name__ == "__main__":
    main()
