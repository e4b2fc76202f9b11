"""A detached run's log: the output of its training process, in a file beside its checkpoints.

The file is the process's own; it is read here only, its end first, with secrets masked, so
that a log of any length shows its last lines at the same cost.
"""

from __future__ import annotations

import os
from pathlib import Path

from llm_magics.core.secrets import redact_text

LOG = "train.log"
_CHUNK = 64 * 1024


def create(directory: Path) -> Path:
    """An empty log in ``directory`` that only its owner can read (it may quote a setting)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / LOG
    os.close(os.open(path, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600))
    return path


def tail(path: str | Path | None, lines: int = 20) -> list[str]:
    """The last ``lines`` lines of the log (secrets masked); none when there is no log."""
    if not path or lines <= 0:
        return []
    try:
        with open(path, "rb") as file:
            end = file.seek(0, os.SEEK_END)
            data, start = b"", end
            while start > 0 and data.count(b"\n") <= lines:
                start = max(0, start - _CHUNK)
                file.seek(start)
                data = file.read(end - start)
    except OSError:
        return []
    text = data.decode(errors="replace").replace("\r\n", "\n")
    # a progress bar rewrites its line with carriage returns: keep what the line says last
    shown = [line.rsplit("\r", 1)[-1] for line in text.rstrip("\n").split("\n")]
    return [redact_text(line) for line in shown[-lines:]] if text.strip() else []
