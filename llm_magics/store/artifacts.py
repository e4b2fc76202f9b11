"""Checkpoint files on this machine: their digests, checking them against a record, whether they
are an adapter, and directories written whole or not at all (a temporary sibling, renamed when
complete). ``uploads`` keeps them in the database for other machines."""

from __future__ import annotations

import contextlib
import hashlib
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from llm_magics.core.errors import ModelError
from llm_magics.store.run_dirs import inside, member, regular_file

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


def verify(record: dict[str, Any], directory: Path, names: set[str] | None = None) -> Path:
    """Checks that a checkpoint's files (or the ``names`` among them) are all in ``directory``,
    unchanged since they were recorded. A file name that leads out of ``directory`` is a change."""
    expected = [f for f in record["files"] if names is None or f["name"] in names]
    changed = [str(f["name"])[:80] for f in expected if not _matches(member(directory, f["name"]), f["sha256"])]
    if changed:
        raise ModelError(
            f"checkpoint {record['_id']}: {len(changed)} file(s) missing or changed since "
            f"it was recorded ({', '.join(changed[:3])})"
        )
    return directory


def _matches(path: Path | None, sha256: str) -> bool:
    return path is not None and regular_file(path) and _sha256(path) == sha256


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
def written_whole(
    target: Path, *, replace: bool = True, install: Callable[[Path], None] | None = None
) -> Iterator[Path]:
    """Yields an empty temporary sibling of ``target`` to write into; when the block ends without
    an error it becomes ``target`` (replacing what was there when ``replace``, else only an empty
    directory; or as ``install(partial)`` does it), and otherwise it is removed. Readers never see
    a half-written directory."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=f".partial-{target.name}-", dir=target.parent))
    try:
        yield partial
        if install is not None:
            install(partial)
            return
        if replace:
            shutil.rmtree(target, ignore_errors=True)
        elif target.exists():
            target.rmdir()  # an empty directory: a non-empty one raises, and nothing is lost
        partial.rename(target)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise


def remove_local(record: dict[str, Any], run_dir: Path | None) -> None:
    """Deletes a checkpoint's local directory: only one the trainer made (``checkpoint-STEP``)
    inside its run's own directory (``run_dirs.own_dir``), symlinks resolved; never a directory a
    record merely names."""
    path = inside(record.get("path"), run_dir)
    if path is not None and re.fullmatch(r"checkpoint-\d+", path.name) and path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
