"""Checkpoint files: their digests, checking them against a record, keeping them in the database
(GridFS) for other machines, and fetching them back into a local, verified cache. Directories are
written whole or not at all (a temporary sibling, renamed when complete)."""

from __future__ import annotations

import contextlib
import hashlib
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llm_magics.errors import ModelError

if TYPE_CHECKING:
    from llm_magics.store import Store

BUCKET = "_llm_magics.artifacts"
# what only resuming needs: uploaded to the database only when asked (upload_optimizer_state)
TRAINING_STATE = ("optimizer.pt", "scheduler.pt", "scaler.pt", "training_args.bin", "trainer_state.json")


def file_digests(directory: str | Path) -> list[dict[str, Any]]:
    """Name, size and sha256 of every file in a checkpoint directory."""
    files = []
    for path in sorted(Path(directory).rglob("*")):
        if path.is_file():
            files.append(
                {"name": str(path.relative_to(directory)), "size": path.stat().st_size, "sha256": _sha256(path)}
            )
    return files


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def is_training_state(name: str) -> bool:
    return name in TRAINING_STATE or name.startswith("rng_state")


def verify(record: dict[str, Any], directory: Path | None = None, names: set[str] | None = None) -> Path:
    """Checks that a checkpoint's files (or the ``names`` among them) are all in ``directory``
    (default: the recorded path), unchanged since they were recorded."""
    directory = Path(directory or record["path"])
    expected = [f for f in record["files"] if names is None or f["name"] in names]
    changed = [f["name"] for f in expected if not _matches(directory / f["name"], f["sha256"])]
    if changed:
        raise ModelError(
            f"checkpoint {record['_id']}: {len(changed)} file(s) missing or changed since "
            f"it was recorded ({', '.join(changed[:3])})"
        )
    return directory


def _matches(path: Path, sha256: str) -> bool:
    return path.is_file() and _sha256(path) == sha256


def is_adapter(directory: str | Path) -> bool:
    """Whether a directory holds a LoRA adapter (else, for a checkpoint, a whole model)."""
    return (Path(directory) / "adapter_config.json").is_file()


def check_adapter(path: str | Path) -> Path:
    """Checks that a directory holds a LoRA adapter in safetensors; returns it."""
    directory = Path(path)
    if not is_adapter(directory):
        raise ModelError(f"adapter '{path}': no adapter_config.json there, so it is not a LoRA adapter")
    if not (directory / "adapter_model.safetensors").is_file():
        raise ModelError(
            f"adapter '{path}' has no adapter_model.safetensors; pickle files (.bin) are not loaded "
            "because they can run code"
        )
    return directory


@contextlib.contextmanager
def written_whole(target: Path, *, replace: bool = True) -> Iterator[Path]:
    """Yields an empty temporary sibling of ``target`` to write into; when the block ends without
    an error it becomes ``target`` (replacing what was there when ``replace``, else only an empty
    directory), and otherwise it is removed. Readers never see a half-written directory."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=f".partial-{target.name}-", dir=target.parent))
    try:
        yield partial
        if replace:
            shutil.rmtree(target, ignore_errors=True)
        elif target.exists():
            target.rmdir()  # an empty directory: a non-empty one raises, and nothing is lost
        partial.rename(target)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise


def gridfs_bucket(mongo_db: Any) -> Any:
    """The GridFS bucket of checkpoint files in a pymongo-API database (mongomock too)."""
    import gridfs
    import mongomock

    if isinstance(mongo_db, mongomock.Database):
        from mongomock.gridfs import enable_gridfs_integration

        enable_gridfs_integration()  # lets gridfs accept mongomock's database (idempotent)
    return gridfs.GridFS(mongo_db, collection=BUCKET)


def upload(mongo_db: Any, record: dict[str, Any], with_training_state: bool) -> dict[str, Any]:
    """Stores a checkpoint's files in GridFS; returns {name: file id}. Re-uploading replaces."""
    bucket = gridfs_bucket(mongo_db)
    directory = Path(record["path"])
    stored = {}
    for entry in record["files"]:
        if is_training_state(entry["name"]) and not with_training_state:
            continue
        for old in bucket.find({"metadata.checkpoint": record["_id"], "metadata.name": entry["name"]}):
            bucket.delete(old._id)
        with (directory / entry["name"]).open("rb") as handle:
            stored[entry["name"]] = bucket.put(
                handle,
                filename=f"{record['_id']}/{entry['name']}",
                metadata={"checkpoint": record["_id"], "name": entry["name"], "sha256": entry["sha256"]},
            )
    return stored


def remove_uploads(mongo_db: Any, record: dict[str, Any]) -> None:
    if record.get("gridfs"):
        bucket = gridfs_bucket(mongo_db)
        for file_id in record["gridfs"].values():
            bucket.delete(file_id)


def local_copy(mongo_db: Any, cache: Path, record: dict[str, Any], *, for_resume: bool = False) -> Path:
    """A local directory holding the checkpoint's files, checked against their sha256: the
    recorded one if it is here and intact, else a download from GridFS into ``cache``. Only the
    files predict reads are checked unless ``for_resume``."""
    needed = None if for_resume else {f["name"] for f in record["files"] if not is_training_state(f["name"])}
    try:
        return verify(record, names=needed)
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
    bucket = gridfs_bucket(mongo_db)
    for name in record["gridfs"]:
        _inside(target, name, record)  # every name checked before anything is written
    with written_whole(target) as partial:
        for name, file_id in record["gridfs"].items():
            destination = partial / name
            destination.parent.mkdir(parents=True, exist_ok=True)
            destination.write_bytes(bucket.get(file_id).read())
        verify(record, partial, names)  # a corrupted download never becomes the cache
    return target


def _inside(directory: Path, name: Any, record: dict[str, Any]) -> Path:
    """``directory / name``, refused when a record's name would lead out of ``directory``
    ('../x', '/etc/x'): the records come from a database that others may write to."""
    path = directory / str(name)
    if not isinstance(name, str) or not path.resolve().is_relative_to(directory.resolve()) or path == directory:
        raise ModelError(
            f"checkpoint {str(record.get('_id'))[:80]!r}: the file name {str(name)[:80]!r} leads outside "
            "the download directory — the record was not written by llm_magics; nothing was downloaded"
        )
    return path


def delete(store: Store, record: dict[str, Any]) -> None:
    """Deletes a checkpoint: its record first, then its files, so no record outlives its files."""
    store.delete_checkpoint(record["_id"])
    remove_uploads(store.mongo_db, record)
    if re.fullmatch(r"checkpoint-\d+", Path(record["path"]).name):  # never a directory a record merely names
        shutil.rmtree(record["path"], ignore_errors=True)
