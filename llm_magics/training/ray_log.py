"""Ray's own messages in the log of the run or sweep that drives Ray, never in a cell.

Ray's logger (``ray``, with Tune's and Train's under it) writes to the process's stderr, which
in a kernel is whichever cell is running: its start-up warnings (no SIGTERM handler in a thread,
token authentication, "Started a local Ray instance") would show as a red box under the view.
While a run or a sweep drives Ray from this process, that logger writes into its log instead
(into every such log, as Ray's messages are the process's), and so does what ``ray.init`` writes
to stderr from the thread that starts Ray. When the last of them ends, Ray's handlers come back.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from llm_magics.runs import logs


class _RayLogs(logging.Handler):
    """Ray's records into the logs of the runs that drive Ray here."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%Y-%m-%d %H:%M:%S"))
        self.paths: list[Path] = []
        # Ray's own handlers, on ``ray`` and on its loggers below that have their own (Tune's, Data's,
        # set up as they are first used), while this one stands in
        self.saved: dict[logging.Logger, list[logging.Handler]] = {}

    def emit(self, record: logging.LogRecord) -> None:
        self.write(self.format(record) + "\n")

    def write(self, text: str) -> None:
        for path in list(self.paths):
            with contextlib.suppress(OSError):  # a log that cannot be written loses Ray's message, never the run
                logs.append(path, text)


_ROUTE = _RayLogs()
_LOCK = threading.Lock()


@contextlib.contextmanager
def ray_logged(path: Path | None) -> Iterator[None]:
    """While it lasts, Ray's log goes into the log at ``path`` (None: where Ray writes it)."""
    if path is None:
        yield
        return
    import ray  # noqa: F401  (its logger's handler is set when it is imported: replaced after that)

    with _LOCK:
        _take_over()  # again at each run: Ray may have set its handlers anew since (ray.init's logging_config)
        _ROUTE.paths.append(path)
    try:
        yield
    finally:
        with _LOCK:
            _ROUTE.paths.remove(path)
            if not _ROUTE.paths:
                for logger, handlers in _ROUTE.saved.items():
                    logger.removeHandler(_ROUTE)
                    for handler in handlers:
                        logger.addHandler(handler)
                _ROUTE.saved = {}


def _take_over() -> None:
    """Ray's loggers write to the runs' logs: their handlers (those set since the last time too)
    are kept aside, and this one stands in where records end (``ray``, and any that keeps its own)."""
    for logger in _ray_loggers():
        kept = _ROUTE.saved.setdefault(logger, [])
        for handler in [handler for handler in logger.handlers if handler is not _ROUTE]:
            logger.removeHandler(handler)
            if handler not in kept:
                kept.append(handler)
        if (logger.name == "ray" or not logger.propagate) and _ROUTE not in logger.handlers:
            logger.addHandler(_ROUTE)  # the others pass their records up to ``ray``


def _ray_loggers() -> list[logging.Logger]:
    """``ray``, and the loggers under it that have handlers of their own or keep their records."""
    below = [
        logger
        for name, logger in list(logging.root.manager.loggerDict.items())
        if name.startswith("ray.") and isinstance(logger, logging.Logger) and (logger.handlers or not logger.propagate)
    ]
    return [logging.getLogger("ray"), *below]


@contextlib.contextmanager
def stderr_logged() -> Iterator[None]:
    """What this thread writes to stderr goes to the logs that take Ray's (``ray.init``'s own
    warnings and prints); other threads' writes go where they went."""
    stream = _ThreadStderr(sys.stderr, threading.get_ident())
    sys.stderr = stream
    try:
        yield
    finally:
        stream.active = False  # still in place if another replaced it meanwhile: then it passes all on
        if sys.stderr is stream:
            sys.stderr = stream.original


class _ThreadStderr:
    """A stderr that sends one thread's writes to the logs that take Ray's."""

    def __init__(self, original: Any, thread: int):
        self.original, self.thread, self.active = original, thread, True

    def write(self, text: str) -> int:
        if self.active and _ROUTE.paths and threading.get_ident() == self.thread:
            _ROUTE.write(text)
            return len(text)
        return self.original.write(text)

    def flush(self) -> None:
        self.original.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.original, name)
