"""Tokenized data kept between runs (SPEC §13): a second run on the same documents, or a sweep's
trials, do not tokenize again.

The key is a hash of what decides the tokens: the documents as training reads them (their fields,
``_fold`` and ``_id``, hashed while they are read), the tokenizer (its class, name, length, chat
template and files), the ``DataKeys`` and ``max_length``. A changed collection hashes to another
key, so a stale entry is never used. An entry is written only when the run starts (a cell that
fails its checks, or a dry run, writes nothing), whole (a temporary sibling renamed), in the store's
own directory; the newest few are kept. A run given a Python ``transform`` is not cached:
its output is not known from the documents.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import json
import shutil
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llm_magics.data.training_set import Format, Selection, TrainingSet, build, check_collection, documents
from llm_magics.store.artifacts import written_whole

if TYPE_CHECKING:
    from llm_magics.config.data_keys import DataKeys

KEPT = 8  # entries kept; the least recently used go first
# sets built by this process and still held by a plan: the same key is the same tokens
_built: weakref.WeakValueDictionary[str, TrainingSet] = weakref.WeakValueDictionary()
_TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "tokenizer.model",
    "vocab.json",
)


def cached_build(
    mongo_db: Any,
    keys: DataKeys,
    tokenizer: Any,
    transform: Callable[[dict], Any] | None,
    directory: Path | None,
) -> tuple[TrainingSet, Callable[[], None] | None]:
    """``build``, or the tokenized sets of an earlier run on the same documents and settings; and,
    for sets just built, what keeps them for the next run (called when the run starts)."""
    if directory is None or transform is not None:
        return build(mongo_db, keys, tokenizer, transform), None
    key = cache_key(mongo_db, keys, tokenizer)
    entry = directory / key
    held = _built.get(key)
    if held is not None:  # built for another plan of this process (a sweep's first trial)
        return dataclasses.replace(held, counts={**held.counts, "from_cache": 1}), functools.partial(_keep, entry, held)
    found = _load(entry)
    if found is not None:
        with contextlib.suppress(OSError):
            entry.touch()  # recently used
        return found, None
    data = build(mongo_db, keys, tokenizer, transform)
    _built[key] = data  # a sweep's other trials, planned before any of them keeps it
    return data, functools.partial(_keep, entry, data)


def _keep(entry: Path, data: TrainingSet) -> None:
    if entry.is_dir():
        return  # a sweep's earlier trial kept the same sets
    _save(entry, data)
    _prune(entry.parent)


def cache_key(mongo_db: Any, keys: DataKeys, tokenizer: Any) -> str:
    digest = hashlib.blake2b(digest_size=16)
    digest.update(json.dumps(keys.to_dict(), sort_keys=True, default=str).encode())
    digest.update(_tokenizer_identity(tokenizer).encode())
    selection = Selection.of(keys)
    check_collection(mongo_db, selection)
    fmt = Format.of(keys, tokenizer)
    for batch in documents(mongo_db, selection, fmt, None):
        for doc in batch:
            digest.update(json.dumps(doc, sort_keys=True, default=str).encode())
    return digest.hexdigest()


def _tokenizer_identity(tokenizer: Any) -> str:
    parts = [type(tokenizer).__name__, str(tokenizer.name_or_path), str(len(tokenizer)), str(tokenizer.chat_template)]
    where = Path(str(tokenizer.name_or_path))
    if where.is_dir():
        for name in _TOKENIZER_FILES:
            if (where / name).is_file():
                parts.append(hashlib.blake2b((where / name).read_bytes(), digest_size=16).hexdigest())
    return "\n".join(parts)


def _save(entry: Path, data: TrainingSet) -> None:
    meta = {
        "format": data.format.to_dict(),
        "selection": data.selection.to_dict(),
        "counts": data.counts,
        "example": data.example,
        "labels": data.labels,
    }
    try:
        with written_whole(entry) as partial, quiet_datasets():
            data.train.save_to_disk(str(partial / "train"))
            if data.valid is not None:
                data.valid.save_to_disk(str(partial / "valid"))
            (partial / "meta.json").write_text(json.dumps(meta, default=str))
    except OSError:
        return  # a full disk or a read-only store: the run trains without a cache


def _load(entry: Path) -> TrainingSet | None:
    import datasets

    try:
        meta = json.loads((entry / "meta.json").read_text())
        with quiet_datasets():
            train = datasets.load_from_disk(str(entry / "train"))
            valid = datasets.load_from_disk(str(entry / "valid")) if (entry / "valid").is_dir() else None
    except (OSError, ValueError, KeyError):
        return None
    fmt = meta["format"]
    return TrainingSet(
        train,
        valid,
        Format(fmt["kind"], tuple(fmt["fields"]), fmt["prompt_template"], fmt["chat_template"]),
        Selection(**meta["selection"]),
        {**meta["counts"], "from_cache": 1},
        meta["example"],
        meta["labels"],
    )


@contextlib.contextmanager
def quiet_datasets() -> Iterator[None]:
    """No progress bars of the datasets library (it shows "Saving the dataset" and the like in a
    notebook, under the run's own view); as they were afterwards."""
    import datasets

    shown = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if shown:
            datasets.enable_progress_bars()


def _prune(directory: Path) -> None:
    entries = sorted((p for p in directory.iterdir() if p.is_dir() and not p.name.startswith(".")),
                     key=lambda p: p.stat().st_mtime)  # fmt: skip
    for old in entries[:-KEPT]:
        shutil.rmtree(old, ignore_errors=True)
