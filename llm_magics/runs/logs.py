"""A run's log: a line per logged step, checkpoint, evaluation and warning, and for a detached
run the output of its training process, in a file beside its checkpoints.

Lines are appended, never through a link; the file is read here only, its end first, with secrets
masked, so that a log of any length shows its last lines at the same cost. Which file is a run's log is not
a record's to say: it is the log in the run's own directory (``store.run_dirs``), a regular file
of this user's, read without following a link or waiting on a FIFO, and at most 1 MiB of its end.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

from llm_magics.core.secrets import redact_text
from llm_magics.store.run_dirs import own_dir

LOG = "train.log"
_CHUNK = 64 * 1024
_MOST = 1 << 20  # bytes read from a log's end, whatever it holds


def create(directory: Path) -> Path:
    """An empty log in ``directory`` that only its owner can read (it may quote a setting)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / LOG
    os.close(os.open(path, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600))
    return path


def append(path: str | Path, text: str) -> None:
    """Adds ``text`` (whole lines) to the log at ``path``, made owner-only if it is not there yet;
    one write, so that lines of the process's own output and these never interleave mid-line.
    A link in the log's place is not followed."""
    descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        os.write(descriptor, text.encode(errors="replace"))
    finally:
        os.close(descriptor)


def of_run(run: dict[str, Any]) -> Path | None:
    """The run's log on this machine: ``train.log`` in its own directory, when the record names
    that file and it is there; else None. A sweep's record names its own log the same way."""
    directory = own_dir(run)
    if directory is None or not isinstance(run.get("log"), str):
        return None
    path = directory / LOG
    return path if Path(run["log"]).resolve() == path else None


def tail(path: str | Path | None, lines: int = 20) -> list[str]:
    """The last ``lines`` lines of the log (secrets masked); none when there is no log."""
    if not path or lines <= 0:
        return []
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return []
    with os.fdopen(descriptor, "rb") as file:
        if not stat.S_ISREG(os.fstat(file.fileno()).st_mode):
            return []  # a FIFO or a device would never end
        end = file.seek(0, os.SEEK_END)
        data, start = b"", end
        while start > max(0, end - _MOST) and data.count(b"\n") <= lines:
            start = max(0, end - _MOST, start - _CHUNK)
            file.seek(start)
            data = file.read(end - start)
    text = data.decode(errors="replace").replace("\r\n", "\n")
    # a progress bar rewrites its line with carriage returns: keep what the line says last
    shown = [line.rsplit("\r", 1)[-1] for line in text.rstrip("\n").split("\n")]
    return [redact_text(line) for line in shown[-lines:]] if text.strip() else []
