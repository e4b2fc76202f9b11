"""The file where a run keeps the records the database did not take (``unsaved-records.jsonl``).

It is written whole or not at all (a temporary sibling, then a rename), and read back as far as it
is intact: a damaged file never keeps anyone from opening the store.
"""

from __future__ import annotations

import datetime as dt
import os
import tempfile
from pathlib import Path
from typing import Any

UNSAVED = "unsaved-records.jsonl"


def keep(path: Path, writes: list[tuple[str, tuple, dict]]) -> None:
    """Saves store writes (method, args, kwargs) as JSON lines; BSON types in extended JSON."""
    from bson import json_util

    path.parent.mkdir(parents=True, exist_ok=True)
    handle, partial = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "w") as out:
            for method, args, kwargs in writes:
                out.write(json_util.dumps({"method": method, "args": args, "kwargs": kwargs}) + "\n")
            out.flush()
            os.fsync(out.fileno())
        os.replace(partial, path)
    except BaseException:
        Path(partial).unlink(missing_ok=True)
        raise


def read(path: Path) -> tuple[list[dict[str, Any]], str | None]:
    """The writes in the file, up to the first line that does not read; and what was wrong, if anything."""
    from bson import json_util

    writes: list[dict[str, Any]] = []
    lines = path.read_text(errors="replace").splitlines()
    for number, line in enumerate(lines, 1):
        try:
            write = json_util.loads(line)
            if not isinstance(write, dict) or not {"method", "args", "kwargs"} <= set(write):
                raise ValueError("not a recorded write")
        except ValueError:  # JSONDecodeError is one
            return writes, f"line {number} of {len(lines)} is damaged"
        writes.append(write)
    return writes, None


def set_aside(path: Path, why: str) -> Path:
    """Renames the file so that it is not read again; returns its new path."""
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S")
    target = path.with_name(f"{path.name}.{why}-{stamp}")
    path.rename(target)
    return target
