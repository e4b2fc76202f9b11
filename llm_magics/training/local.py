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
from llm_magics.runs.run import Control, Run, RunState
from llm_magics.training.recorder import Recorder
from llm_magics.training.train import TrainJob, train


def run_blocking(job: TrainJob, recorder: Recorder, run: Run) -> None:
    """Trains in the calling thread; an interrupt (Ctrl-C, the kernel's stop button) saves a
    checkpoint and stops the run. A failure is recorded, then raised."""
    with _interrupt_stops(*run.live()):
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


def execute(job: TrainJob, recorder: Recorder, run: Run, *, echo_warnings: bool = True) -> BaseException | None:
    """Trains the run to its end and records how it ended; returns the error that ended it, if
    one did. ``echo_warnings``: see ``train``."""
    try:
        summary = train(job, recorder, run.live()[1].stop, echo_warnings=echo_warnings)
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


STOPPING = "stopping after this step and saving a checkpoint (interrupt again to abort now)…"


@contextlib.contextmanager
def _interrupt_stops(state: RunState, control: Control) -> Iterator[None]:
    """Turns the first SIGINT into a graceful stop; a second one interrupts at once.

    Until the run has stopped, its views say so (``state.stopping``); each becomes the run's
    summary when it ends. Without a view, a line on stderr says so, and the run's end overwrites it
    (a carriage return, which a notebook honours): what stays in the output is how the run ended."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    told = False

    def on_interrupt(signum: int, frame: Any) -> None:
        nonlocal told
        if control.stop.is_set():
            raise KeyboardInterrupt
        control.stop.set()
        state.stopping = STOPPING
        if state.listeners:  # a view renders in a thread of its own: this one may hold the view's lock
            threading.Thread(target=state.changed, daemon=True, name="llm_magics-stopping").start()
        else:
            told = True
            print(STOPPING[0].upper() + STOPPING[1:], end="", file=sys.stderr, flush=True)

    previous = signal.signal(signal.SIGINT, on_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if told:
            ended = f"run {state.run_id}: {state.status} at step {state.step}" + (
                f" ({state.error})" if state.error else ""
            )
            print("\r" + ended.ljust(len(STOPPING)), file=sys.stderr, flush=True)
