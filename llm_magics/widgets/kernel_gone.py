"""What a live view leaves for when its kernel is gone: a static note, instead of a view that
still says "running" under broken-link icons.

JupyterLab 4 keeps a widget on screen after its kernel has gone, and how depends on how it went
(measured with JupyterLab 4.6 and jupyterlab_widgets 3; ``tests/test_browser_kernel_gone.py``):

- restarted, or crashed and restarted by the server: JupyterLab marks every view of the old
  kernel ``jupyter-widgets-disconnected`` (the broken-link icons) and drops its comms before the
  kernel hears of the restart: nothing the kernel sends on its way out arrives;
- shut down (the Kernel menu, the running-kernels panel, a notebook closed with its kernel): the
  views are not marked, and what the kernel sends at exit (``atexit``) arrives;
- a saved notebook opened again: "Error displaying widget: model not found" where the view was;
  the view's text/html and text/plain forms are not shown instead.

So the note is a sibling output of the view, static HTML that needs no kernel, and the view
carries a ``<style>`` that hides the note while the view is connected and hides the view once it
is not: a restart or a crash turns the view into the note with nothing sent from the kernel. On
a shutdown, the kernel's exit clears the view's output (one message), and the note stays, alone,
in the page and in the saved notebook.

A run that trains in another process (a detached run, or one followed from another kernel) goes
on: the note names ``%llm_attach RUN``. A run that trains in this kernel stops with it: the note
says so, and how to resume it from its last checkpoint.
"""

from __future__ import annotations

import atexit
import html
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from llm_magics.core.theme import MUTED, hue, tint

if TYPE_CHECKING:
    from llm_magics.runs.run import Run, RunState


@dataclass(frozen=True)
class Note:
    """What a view says once the kernel that showed it is gone: the run, what became of it, the
    command to run next (set as code) and what that does."""

    run: str
    says: str
    command: str = ""
    does: str = ""

    @property
    def text(self) -> str:
        return " ".join(part for part in (f"{self.run}:", self.says, self.command, self.does) if part)

    def html(self, css_class: str) -> str:
        style = f"border-left:3px solid {hue('warn')};background:{tint('warn', 12)};padding:4px 8px;margin:2px 0"
        command = f"<code>{html.escape(self.command)}</code>" if self.command else ""
        run = f'<span style="color:{MUTED}">{html.escape(self.run)}:</span>'
        words = " ".join(part for part in (run, html.escape(self.says), command, html.escape(self.does)) if part)
        return f'<div class="llm-kernel-gone {css_class}" style="{style}">{words}</div>'


def note_of(state: RunState, followed: bool) -> Note:
    """The note of a view of a run: ``followed``, it trains in another process (detached, or in
    another kernel) and goes on; else it trained in this kernel and stopped with it."""
    run = f"{state.model} · run {state.run_id}"
    if followed:
        return Note(run, "this kernel stopped following it; the run goes on —", f"%llm_attach {state.run_id}")
    steps = [c["step"] for c in state.checkpoints if isinstance(c.get("step"), int)]
    if not steps:
        return Note(
            run, "the run stopped with this kernel, before its first checkpoint: run the cell again to start over"
        )
    resume = f"%%llm_finetune {state.model} --resume {state.run_id}:{max(steps)}"
    return Note(
        run, "the run stopped with this kernel;", resume, f"(in the same cell) continues it from step {max(steps)}"
    )


def sweep_note(model: str, sweep_id: str, goes_on: bool) -> Note:
    """The note of a sweep's view: ``goes_on``, it runs in a process of its own (``--detach``) or
    in another kernel; else this kernel drove its trials on Ray Tune, and they stopped with it."""
    sweep = f"{model} · sweep {sweep_id}"
    if goes_on:
        return Note(sweep, "this kernel stopped following it; the sweep goes on —", f"%llm_attach {sweep_id}")
    return Note(sweep, "the sweep stopped with this kernel; its trials' checkpoints are kept —", f"%llm_runs {model}")


class KernelGone:
    """The note of one view: shown beside it, kept current, and left alone when the kernel exits.

    ``view_class`` goes on the view's outermost widget and ``style`` into one of its HTML widgets.
    ``note`` says what the note says now (default: the run's, ``note_of``).
    """

    def __init__(
        self, run: Run | None = None, note: Callable[[], Note] | None = None, ended: Callable[[], Any] | None = None
    ):
        if note is None:
            if run is None:
                raise TypeError("KernelGone needs a run or a note")
            note = lambda: note_of(run.live()[0], run.followed)  # noqa: E731
        self._note = note
        # what takes the view's place once what it shows has ended (None while it goes on): a kernel
        # that exits just after the end leaves that, not the note
        self._ended = ended or (lambda: None)
        self._done = False  # the view has been replaced by its summary
        token = uuid.uuid4().hex[:12]  # this view's own: two views of one run are two notes
        self.view_class, self._note_class = f"llm-view-{token}", f"llm-gone-{token}"
        self._lock = threading.Lock()
        self._view: Any = None  # the view's display handle
        self._handle: Any = None  # the note's
        self._said: Note | None = None

    @property
    def style(self) -> str:
        """The rules that swap the view for its note once the front end marks it disconnected."""
        view, note = f".{self.view_class}", f".{self._note_class}"
        return (
            f"<style>:root:has({view}:not(.jupyter-widgets-disconnected)) {note} {{display: none}}"
            f"{view}.jupyter-widgets-disconnected {{display: none}}</style>"
        )

    def show(self, view: Any) -> None:
        """Shows the note after the view (``view``: its display handle), hidden while it is live."""
        from IPython.display import display

        with self._lock:
            self._view, self._said = view, self._note()
            self._handle = display(self._bundle(self._said), raw=True, display_id=True)
        atexit.register(self.exit)

    def refresh(self) -> None:
        """Shows the note again where what it says changed (a run of this kernel saved a checkpoint)."""
        with self._lock:
            if self._handle is None or (said := self._note()) == self._said:
                return
            self._said = said
            self._handle.update(self._bundle(said), raw=True)

    def finish(self, view: Any, summary: Any) -> None:
        """What the view showed ended while the kernel lived: ``summary`` takes the view's place
        (``view``: its display handle) and the note goes, together (a kernel exiting meanwhile
        waits, then leaves them so)."""
        with self._lock:
            self._done = True
            view.update(summary)
        self.remove()

    def remove(self) -> None:
        """No note: the view is no more (its summary replaced it), or it never was shown."""
        atexit.unregister(self.exit)
        with self._lock:
            if self._handle is not None:
                self._handle.update({}, raw=True)
                self._handle = None

    def exit(self) -> None:
        """The kernel exits (shut down): the view's output goes, its note stays; or, where what it
        showed has just ended, its summary takes the view's place and the note goes."""
        with self._lock:
            if self._done or self._view is None:
                return
            summary = self._ended()
            if summary is not None:
                self._done = True
                self._view.update(summary)
        if summary is not None:
            self.remove()
            return
        self.refresh()
        self._view.update({}, raw=True)

    def _bundle(self, note: Note) -> dict[str, str]:
        return {"text/html": note.html(self._note_class), "text/plain": note.text}
