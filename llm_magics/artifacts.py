"""Checkpoint files on disk: their digests, and checking them against a record."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path
from typing import Any

from llm_magics.errors import ModelError


def file_digests(directory: str | Path) -> list[dict[str, Any]]:
    """Name, size and sha256 of every file in a checkpoint directory."""
    files = []
    for path in sorted(Path(directory).rglob("*")):
        if path.is_file():
            digest = hashlib.sha256()
            with path.open("rb") as handle:
                while chunk := handle.read(1 << 20):
                    digest.update(chunk)
            files.append(
                {"name": str(path.relative_to(directory)), "size": path.stat().st_size, "sha256": digest.hexdigest()}
            )
    return files


def verify(record: dict[str, Any]) -> Path:
    """Checks that a checkpoint's files are all there, unchanged since they were recorded."""
    directory = Path(record["path"])
    found = {f["name"]: f["sha256"] for f in file_digests(directory)} if directory.is_dir() else {}
    changed = [f["name"] for f in record["files"] if found.get(f["name"]) != f["sha256"]]
    if changed:
        raise ModelError(
            f"checkpoint {record['_id']}: {len(changed)} file(s) missing or changed since "
            f"it was recorded ({', '.join(changed[:3])})"
        )
    return directory


def is_adapter(directory: str | Path) -> bool:
    return (Path(directory) / "adapter_config.json").is_file()


def delete(store: Any, record: dict[str, Any]) -> None:
    """Deletes a checkpoint: its record first, then its files, so no record outlives its files."""
    store.delete_checkpoint(record["_id"])
    shutil.rmtree(record["path"], ignore_errors=True)
