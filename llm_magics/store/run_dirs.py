"""A run's own directory on this machine: the one place a path from a record may lead.

Records come from a database that others may write to, so a path in one is a claim, not a fact.
When this user's process starts a run, it marks the run's output directory with a file that only
its owner can write, naming the run. A path from a record is followed only inside a directory
that carries the mark of that very run and belongs to this user, symlinks resolved: a planted
record cannot make a kernel read, upload, delete or open anything else. A directory the user
chose (``output_dir``) is marked like one under the store's artifacts.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

MARK = ".llm-magics-run"
_MARK_SIZE = 64  # a run id is 8 characters: a longer mark was not written here


def claim(directory: Path, run_id: str) -> Path:
    """Marks ``directory`` (made if needed) as run ``run_id``'s own; returns it."""
    directory.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(directory / MARK, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(descriptor, "w") as mark:
        mark.write(run_id)
    return directory


def own_dir(run: dict[str, Any] | None) -> Path | None:
    """The run's output directory, symlinks resolved, if this user's process made it for this
    run; else None (no such directory here, another user's, or a record that names another)."""
    if not run:
        return None
    raw, run_id = run.get("output_dir"), run.get("_id")
    if not isinstance(raw, str) or not isinstance(run_id, str) or not os.path.isabs(raw):
        return None
    try:
        directory = Path(raw).resolve(strict=True)
        if not _owned(directory.stat(), stat.S_ISDIR):
            return None
        mark = directory / MARK
        descriptor = os.open(mark, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except (OSError, RuntimeError, ValueError):
        return None
    with os.fdopen(descriptor, "rb") as file:
        if not _owned(os.fstat(file.fileno()), stat.S_ISREG):
            return None
        written = file.read(_MARK_SIZE + 1)
    return directory if written == run_id.encode() else None


def _owned(info: os.stat_result, kind: Any) -> bool:
    return bool(kind(info.st_mode)) and info.st_uid == os.getuid()


def inside(path: Any, directory: Path | None) -> Path | None:
    """``path`` with symlinks resolved, if it lies inside ``directory`` (and is not it); else None."""
    if directory is None or not isinstance(path, str) or not os.path.isabs(path):
        return None
    try:
        resolved = Path(path).resolve()
    except (OSError, RuntimeError, ValueError):
        return None
    return resolved if resolved != directory and resolved.is_relative_to(directory) else None


def member(directory: Path, name: Any) -> Path | None:
    """``directory / name`` (a file name from a record), symlinks resolved, if it stays inside
    ``directory`` ('../x' and '/etc/x' do not); else None."""
    if not isinstance(name, str):
        return None
    return inside(str(directory / name), directory.resolve())


def regular_file(path: Path) -> bool:
    """Whether ``path`` is a regular file of this user's, not a link, a FIFO or a device: a file
    that a read cannot hang on or reach past."""
    try:
        return _owned(os.lstat(path), stat.S_ISREG)
    except OSError:
        return False
