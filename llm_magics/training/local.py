"""Training in this process: blocking in the kernel, or in a background thread."""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Iterator
from typing import Any

from llm_magics.core.errors import LLMMagicsError, RunError
from llm_magics.core.secrets import redact_text
from llm_magics.runs.run import Run
from llm_magics.training.recorder import Recorder
from llm_magics.training.train import TrainJob, train


def run_blocking(job: TrainJob, recorder: Recorder, run: Run) -> None:
    """Trains in the calling thread; an interrupt (Ctrl-C, the kernel's stop button) saves a
    checkpoint and stops the run. A failure is recorded, then raised."""
    with _interrupt_stops(run.live()[1].stop):
        error = execute(job, recorder, run)
    if error is not None:
        raise _without_secrets(error)


def run_in_thread(job: TrainJob, recorder: Recorder, run: Run) -> threading.Thread:
    """Trains in a daemon thread; a failure is recorded and shown, not raised."""
    thread = threading.Thread(
        target=execute, args=(job, recorder, run), daemon=True, name=f"llm_magics-run-{job.run_id}"
    )
    thread.start()
    return thread


def execute(job: TrainJob, recorder: Recorder, run: Run) -> BaseException | None:
    try:
        summary = train(job, recorder, run.live()[1].stop)
        recorder.finish("stopped" if summary["stopped"] else "completed")
        return None
    except KeyboardInterrupt as error:
        recorder.finish("stopped", "interrupted twice: stopped without a final checkpoint")
        return error
    except BaseException as error:
        recorder.finish("failed", describe(error))
        return error
    finally:
        run.finished()


def describe(error: BaseException) -> str:
    """One line for the run record and the view: the error's type (unless ours) and message."""
    message = redact_text(str(error).strip() or type(error).__name__)
    return message if isinstance(error, LLMMagicsError) else f"{type(error).__name__}: {message}"


def _without_secrets(error: BaseException) -> BaseException:
    """The error as the cell shows it: a password in its message (a bucket's URI) hidden. Its
    type and traceback stay when its arguments can be rewritten, else it becomes a RunError."""
    message = str(error)
    if redact_text(message) == message:
        return error
    error.args = (redact_text(message),)
    if redact_text(str(error)) == str(error):
        error.__cause__, error.__suppress_context__ = None, True  # the chained errors may hold it too
        return error
    return RunError(redact_text(describe(error)))  # its own __str__ still shows the password


@contextlib.contextmanager
def _interrupt_stops(stop: threading.Event) -> Iterator[None]:
    """Turns the first SIGINT into a graceful stop; a second one interrupts at once."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_interrupt(signum: int, frame: Any) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        print("Stopping after this step and saving a checkpoint (interrupt again to abort now)…", file=sys.stderr)

    previous = signal.signal(signal.SIGINT, on_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
