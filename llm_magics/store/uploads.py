"""Checkpoint files kept in the database (GridFS) for other machines, and fetched back into a
local, verified cache.

A record always points at complete files: new files are uploaded first, then the record switches
to them, then the old ones go. A download lands in a temporary sibling and becomes the cache only
when every file checks; a failure of any kind leaves no partial copy; two processes downloading
one checkpoint both succeed. Files stream in chunks, never whole into memory.
"""

from __future__ import annotations

import shutil
import time
import uuid
from pathlib import Path
from typing import Any

from llm_magics.core.errors import ModelError
from llm_magics.store.artifacts import is_training_state, verify, written_whole
from llm_magics.store.run_dirs import inside, member

BUCKET = "_llm_magics.artifacts"
_CHUNK = 1 << 20  # bytes copied at a time
_STALE = 3600  # seconds after which a partial download is a dead process's leftover


def gridfs_bucket(mongo_db: Any) -> Any:
    """The GridFS bucket of checkpoint files in a pymongo-API database (mongomock too)."""
    import gridfs
    import mongomock

    if isinstance(mongo_db, mongomock.Database):
        from mongomock.gridfs import enable_gridfs_integration

        enable_gridfs_integration()  # lets gridfs accept mongomock's database (idempotent)
    return gridfs.GridFS(mongo_db, collection=BUCKET)


def upload(mongo_db: Any, record: dict[str, Any], directory: Path, with_training_state: bool) -> dict[str, Any]:
    """Stores a checkpoint's files, read from ``directory``, in GridFS, streamed; returns {name:
    file id}. Files uploaded before stay until ``sweep`` removes them, once the record points at
    the new ones. A file name that leads out of ``directory`` is refused before anything is read."""
    bucket = gridfs_bucket(mongo_db)
    entries = [e for e in record["files"] if with_training_state or not is_training_state(e["name"])]
    paths = [_inside(directory, entry["name"], record, "the checkpoint's directory") for entry in entries]
    stored = {}
    for entry, path in zip(entries, paths, strict=True):
        with path.open("rb") as handle:
            stored[entry["name"]] = bucket.put(
                handle,
                filename=f"{record['_id']}/{entry['name']}",
                metadata={"checkpoint": record["_id"], "name": entry["name"], "sha256": entry["sha256"]},
            )
    return stored


def sweep(mongo_db: Any, checkpoint_id: str, keep: set[Any]) -> None:
    """Removes the checkpoint's uploaded files that its record does not point at (an earlier
    upload, an upload cut short before its record), and chunks whose file was never completed.

    GridFS writes a file's chunks before its files document, so chunks without one may be an
    upload in progress (another process's, or another thread's): only those whose file id was
    made over an hour ago are orphans (an ObjectId carries its time)."""
    from bson import ObjectId

    bucket = gridfs_bucket(mongo_db)
    for stale in bucket.find({"metadata.checkpoint": checkpoint_id}):
        if stale._id not in keep:
            bucket.delete(stale._id)
    files, chunks = mongo_db[f"{BUCKET}.files"], mongo_db[f"{BUCKET}.chunks"]
    cutoff = time.time() - _STALE
    orphans = [
        file_id
        for file_id in set(chunks.distinct("files_id")) - set(files.distinct("_id"))
        if isinstance(file_id, ObjectId) and file_id.generation_time.timestamp() < cutoff
    ]
    if orphans:
        chunks.delete_many({"files_id": {"$in": orphans}})


def local_copy(
    mongo_db: Any, cache: Path, record: dict[str, Any], run_dir: Path | None, *, for_resume: bool = False
) -> Path:
    """A local directory holding the checkpoint's files, checked against their sha256: the
    recorded one if it is inside its run's own directory here (``run_dir``) and intact, else a
    download from GridFS into ``cache``. Only the files predict reads are checked unless
    ``for_resume``."""
    needed = None if for_resume else {f["name"] for f in record["files"] if not is_training_state(f["name"])}
    here = inside(record.get("path"), run_dir)
    try:
        if here is None:
            raise ModelError(
                f"checkpoint {str(record.get('_id'))[:80]!r}: its files are not in a run directory of this "
                "user's on this machine (another machine's or user's run, or a record not written by "
                "llm_magics) — train with artifacts: db to load it anywhere"
            )
        return verify(record, here, names=needed)
    except ModelError:
        if not record.get("gridfs"):
            raise
    names = set(record["gridfs"])
    if for_resume and not any(is_training_state(name) for name in names):
        raise ModelError(
            f"checkpoint {record['_id']} was stored without its optimizer state, so it cannot be "
            "resumed on this machine — train with upload_optimizer_state: true to allow that"
        )
    target = _inside(cache, record["_id"], record)
    try:
        return verify(record, target, names)
    except ModelError:
        pass
    return _download(mongo_db, record, target, names)


def _download(mongo_db: Any, record: dict[str, Any], target: Path, names: set[str]) -> Path:
    from gridfs.errors import NoFile

    bucket = gridfs_bucket(mongo_db)
    for name in record["gridfs"]:
        _inside(target, name, record)  # every name checked before anything is written
    _remove_leftovers(target.parent)
    with written_whole(target, install=lambda partial: _install(partial, target, record, names)) as partial:
        for name, file_id in record["gridfs"].items():
            destination = partial / name
            destination.parent.mkdir(parents=True, exist_ok=True)
            try:
                source = bucket.get(file_id)
            except NoFile:
                raise ModelError(
                    f"checkpoint {record['_id']}: its file {name!r} is gone from the database, so it cannot be "
                    "loaded on this machine"
                ) from None
            with source, destination.open("wb") as out:
                shutil.copyfileobj(source, out, _CHUNK)
        verify(record, partial, names)  # a corrupted download never becomes the cache
    return target


def _install(partial: Path, target: Path, record: dict[str, Any], names: set[str]) -> None:
    """Makes a checked download the cache. If another process installed one meanwhile, theirs is
    kept when it is complete (it may be in use), else ours takes its place."""
    try:
        partial.rename(target)
        return
    except OSError:
        pass
    try:
        verify(record, target, names)
        shutil.rmtree(partial, ignore_errors=True)
        return
    except ModelError:
        stale = target.with_name(f".stale-{target.name}-{uuid.uuid4().hex[:8]}")
        target.rename(stale)
        partial.rename(target)
        shutil.rmtree(stale, ignore_errors=True)


def _remove_leftovers(cache: Path) -> None:
    """Partial downloads of processes that died mid-way (a kill leaves them; nothing else does)."""
    if not cache.is_dir():
        return
    for leftover in [*cache.glob(".partial-*"), *cache.glob(".stale-*")]:
        try:
            age = time.time() - leftover.stat().st_mtime
        except FileNotFoundError:
            continue  # another process installed or removed it since the listing
        if age > _STALE:
            shutil.rmtree(leftover, ignore_errors=True)


def _inside(directory: Path, name: Any, record: dict[str, Any], what: str = "the download directory") -> Path:
    """``directory / name``, refused when a record's name would lead out of ``directory``
    ('../x', '/etc/x'): the records come from a database that others may write to."""
    path = member(directory, name)
    if path is None:
        raise ModelError(
            f"checkpoint {str(record.get('_id'))[:80]!r}: the file name {str(name)[:80]!r} leads outside "
            f"{what} — the record was not written by llm_magics; nothing was read or written"
        )
    return path
