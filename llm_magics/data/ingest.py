"""Documents into the store (SPEC §13): files, a folder of text, a saved dataset, a DataFrame.

``ingest`` streams a source into a collection in batches: memory stays flat in the file's size.
Files are read twice: first every row is checked, so that a malformed one (named by file and line)
stops the ingest before anything is written; then they are written. ``skip_bad`` writes the good
rows and counts the bad. ``dedupe`` keeps a content hash on each document (``_hash``) and skips a
row whose hash the collection has, so an ingest run again adds nothing twice.
"""

from __future__ import annotations

import csv
import glob
import hashlib
import json
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llm_magics.core.errors import DataError

BATCH = 2000
HASH = "_hash"
_TEXT = (".txt", ".md", ".markdown")
_TABLES = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".csv": "csv", ".tsv": "tsv", ".parquet": "parquet"}
Progress = Callable[[int, int, float], None]  # (rows written, bytes read, seconds)
Row = tuple[str, Any]  # (where: 'file:line', a document, or an error message)


class BadRow(str):
    """Why a row is not a document (the reader names its file and line beside it)."""

    __slots__ = ()


@dataclass
class Ingested:
    """What an ingest did."""

    collection: str
    written: int = 0
    duplicates: int = 0
    bad: int = 0
    bad_examples: list[str] = field(default_factory=list)
    bytes: int = 0
    seconds: float = 0.0

    def __repr__(self) -> str:
        rate = self.bytes / 1e6 / self.seconds if self.seconds else 0.0
        parts = [f"{self.written:,} documents into '{self.collection}' in {self.seconds:.1f} s ({rate:.1f} MB/s)"]
        if self.duplicates:
            parts.append(f"{self.duplicates:,} duplicates skipped")
        if self.bad:
            parts.append(f"{self.bad:,} bad rows skipped, e.g. {'; '.join(self.bad_examples)}")
        return "; ".join(parts)


def ingest(
    mongo_db: Any,
    source: Any,
    collection: str,
    *,
    replace: bool = False,
    dedupe: bool = False,
    skip_bad: bool = False,
    batch_size: int = BATCH,
    progress: Progress | None = None,
) -> Ingested:
    """Writes ``source`` (a path, a glob, a folder, a saved dataset, a DataFrame or a list of
    dicts) into ``collection``; raises ``DataError`` naming the first bad row, having written
    nothing, unless ``skip_bad``."""
    reader = _reader(source)
    result = Ingested(collection)
    if not skip_bad:
        for where, row in reader(None):  # nothing is written until every row is known to be good
            if isinstance(row, BadRow):
                raise DataError(f"{where}: {row} — fix it, or pass --skip-bad (skip_bad=True) to leave such rows out")
    target = mongo_db[collection]
    if replace:
        target.delete_many({})
    if dedupe:
        target.create_index(HASH)
    started, batch = time.perf_counter(), list[dict[str, Any]]()

    def flush() -> None:
        result.written += _write(target, batch, dedupe, result)
        batch.clear()
        result.seconds = time.perf_counter() - started
        if progress is not None:
            progress(result.written, result.bytes, result.seconds)

    for where, row in reader(result):
        if isinstance(row, BadRow):
            result.bad += 1
            if len(result.bad_examples) < 5:
                result.bad_examples.append(f"{where}: {row}")
            continue
        batch.append(row)
        if len(batch) >= batch_size:
            flush()
    flush()
    return result


def _write(target: Any, batch: list[dict[str, Any]], dedupe: bool, result: Ingested) -> int:
    if not batch:
        return 0
    if dedupe:
        fresh: dict[str, dict[str, Any]] = {}
        for doc in batch:
            doc[HASH] = content_hash(doc)
            fresh.setdefault(doc[HASH], doc)
        known = {d[HASH] for d in target.find({HASH: {"$in": list(fresh)}}, {HASH: 1})}
        kept = [doc for key, doc in fresh.items() if key not in known]
        result.duplicates += len(batch) - len(kept)
        batch = kept
    if batch:
        target.insert_many(batch, ordered=True)
    return len(batch)


def content_hash(doc: dict[str, Any]) -> str:
    """A document's content (its fields but ``_id`` and ``_hash``), hashed: equal content, equal hash."""
    content = {k: v for k, v in doc.items() if k not in ("_id", HASH)}
    text = json.dumps(content, sort_keys=True, default=str, ensure_ascii=False)
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


# --- sources: each is a function of the Ingested (for the bytes read, or None) to (where, row) ---

Reader = Callable[[Ingested | None], Iterator[Row]]


def _reader(source: Any) -> Reader:
    if isinstance(source, list | tuple):
        return lambda result: _records(source)
    if hasattr(source, "to_dict") and hasattr(source, "columns"):  # a pandas DataFrame
        return lambda result: _frame(source)
    if not isinstance(source, str | Path):
        raise DataError(
            f"ingest: a file, a glob, a folder, a saved dataset, a DataFrame or a list of dicts, not "
            f"{type(source).__name__}"
        )
    path = Path(source).expanduser()
    if path.is_dir():
        if (path / "dataset_info.json").is_file() or (path / "dataset_dict.json").is_file():
            return lambda result: _saved_dataset(path)
        return lambda result: _text_folder(path, result)
    files = sorted(Path(p) for p in glob.glob(str(path))) if any(c in str(source) for c in "*?[") else [path]
    missing = [f for f in files if not f.is_file()]
    if not files or missing:
        raise DataError(f"ingest: no file {str(missing[0] if missing else source)!r}")
    unknown = [f for f in files if f.suffix.lower() not in _TABLES]
    if unknown:
        raise DataError(
            f"ingest: {unknown[0].name}: a .jsonl, .json, .csv, .tsv or .parquet file, or a folder of .txt / .md"
        )
    return lambda result: (row for f in files for row in _file(f, result))


def _records(rows: Any) -> Iterator[Row]:
    for i, row in enumerate(rows):
        yield f"row {i}", dict(row) if isinstance(row, dict) else BadRow(f"not a mapping but {type(row).__name__}")


def _frame(frame: Any) -> Iterator[Row]:
    columns = [str(c) for c in frame.columns]
    for i, values in enumerate(frame.itertuples(index=False, name=None)):
        yield f"row {i}", {c: _plain(v) for c, v in zip(columns, values, strict=True)}


def _plain(value: Any) -> Any:
    """A DataFrame's or Arrow's value as the database keeps it: numpy scalars as Python, NaN as None."""
    if hasattr(value, "item") and not isinstance(value, list | dict | str | bytes):
        try:
            value = value.item()
        except (ValueError, AttributeError):
            value = value.tolist() if hasattr(value, "tolist") else value
    elif hasattr(value, "tolist"):
        value = value.tolist()
    return None if isinstance(value, float) and math.isnan(value) else value


def _saved_dataset(path: Path) -> Iterator[Row]:
    import datasets

    loaded = datasets.load_from_disk(str(path))
    splits = loaded.items() if isinstance(loaded, datasets.DatasetDict) else [(None, loaded)]
    for split, dataset in splits:
        index = 0
        for batch in dataset.iter(batch_size=BATCH):
            names = list(batch)
            for values in zip(*(batch[n] for n in names), strict=True):
                row = {n: _plain(v) for n, v in zip(names, values, strict=True)}
                if split is not None:
                    row.setdefault("_fold", "valid" if split in ("validation", "valid", "test") else "train")
                yield f"{path.name}[{split or ''}{index}]", row
                index += 1


def _text_folder(path: Path, result: Ingested | None) -> Iterator[Row]:
    for file in sorted(p for p in path.rglob("*") if p.suffix.lower() in _TEXT and p.is_file()):
        data = file.read_bytes()
        if result is not None:
            result.bytes += len(data)
        try:
            yield str(file.relative_to(path)), {"text": data.decode("utf-8"), "path": str(file.relative_to(path))}
        except UnicodeDecodeError as error:
            yield str(file.relative_to(path)), BadRow(f"not UTF-8 text ({error.reason} at byte {error.start})")


def _file(file: Path, result: Ingested | None) -> Iterator[Row]:
    kind = _TABLES[file.suffix.lower()]
    if kind == "jsonl":
        yield from _jsonl(file, result)
    elif kind == "json":
        yield from _json(file, result)
    elif kind == "parquet":
        yield from _parquet(file, result)
    else:
        yield from _csv(file, result, "\t" if kind == "tsv" else ",")


def _jsonl(file: Path, result: Ingested | None) -> Iterator[Row]:
    with file.open("rb") as stream:
        for number, line in enumerate(stream, 1):
            if result is not None:
                result.bytes += len(line)
            if not line.strip():
                continue
            where = f"{file.name}:{number}"
            try:
                row = json.loads(line)
            except (json.JSONDecodeError, UnicodeDecodeError) as error:
                yield where, BadRow(f"not JSON ({getattr(error, 'msg', error)})")
                continue
            yield where, row if isinstance(row, dict) else BadRow(f"a JSON {type(row).__name__}, not an object")


def _json(file: Path, result: Ingested | None) -> Iterator[Row]:
    """A JSON array of objects (read whole: a JSON array has no lines to stream; use JSONL for big data)."""
    data = file.read_bytes()
    if result is not None:
        result.bytes += len(data)
    try:
        rows = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        line = getattr(error, "lineno", "?")
        yield f"{file.name}:{line}", BadRow(f"not JSON ({getattr(error, 'msg', error)})")
        return
    if not isinstance(rows, list):
        yield file.name, BadRow("a JSON file holds an array of objects (or use .jsonl, one object a line)")
        return
    for i, row in enumerate(rows):
        yield f"{file.name}[{i}]", row if isinstance(row, dict) else BadRow(f"a JSON {type(row).__name__}")


def _csv(file: Path, result: Ingested | None, delimiter: str) -> Iterator[Row]:
    with file.open(newline="", encoding="utf-8-sig") as stream:  # utf-8-sig: a spreadsheet's BOM is not a name
        reader = csv.reader(stream, delimiter=delimiter)
        header = next(reader, None)
        if header is None:
            return
        for row in reader:
            where = f"{file.name}:{reader.line_num}"
            if result is not None:
                result.bytes += sum(len(cell) for cell in row) + len(row)
            if not row:
                continue
            if len(row) != len(header):
                yield where, BadRow(f"{len(row)} fields, the header has {len(header)}")
                continue
            yield where, dict(zip(header, row, strict=True))


def _parquet(file: Path, result: Ingested | None) -> Iterator[Row]:
    import pyarrow.parquet as pq

    index = 0
    parquet = pq.ParquetFile(file)
    for batch in parquet.iter_batches(batch_size=BATCH):
        if result is not None:
            result.bytes += batch.nbytes
        for row in batch.to_pylist():
            yield f"{file.name}[{index}]", row
            index += 1
