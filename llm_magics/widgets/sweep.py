"""The sweep view: a table of trials, their curves overlaid, the best marked, and a Stop button.

It reads the trials' live states (the kernel's recorders, or the store for a sweep followed from
another kernel). Renders are throttled to ``update_interval`` however many trials report; when
every trial has ended, the output becomes a static HTML summary that a saved notebook keeps.
"""

from __future__ import annotations

import html
import threading
import time
from typing import TYPE_CHECKING, Any

from llm_magics.config.sweep import described
from llm_magics.core.theme import TEXT, tint
from llm_magics.runs.run import RunState
from llm_magics.store.records import FINAL
from llm_magics.widgets.curve import curves_svg
from llm_magics.widgets.display import NOTHING, clock, is_number, shown
from llm_magics.widgets.kernel_gone import KernelGone, sweep_note
from llm_magics.widgets.progress import status_html

if TYPE_CHECKING:
    from llm_magics.training.sweeps import SweepRun

_END_RECORDED = 10.0  # seconds the summary waits for the sweep's end to be recorded after its trials'


def best_value(state: RunState, metric: str, mode: str) -> float | None:
    """The trial's best value of the metric so far (from its logged evaluations)."""
    values = [row[metric] for row in state.history if is_number(row.get(metric))]
    if not values and metric == "eval_loss":
        return None
    if not values:
        current = getattr(state, metric, None)
        return current if is_number(current) else None
    return min(values) if mode == "min" else max(values)


def sweep_html(states: list[RunState], values: list[dict[str, Any]], metric: str, mode: str) -> str:
    """The table of trials and their overlaid curves, the best trial marked."""
    scores = [best_value(state, metric, mode) for state in states]
    sign = 1 if mode == "min" else -1
    ranked = sorted((sign * score, i) for i, score in enumerate(scores) if score is not None)
    best = ranked[0][1] if ranked else None
    keys = list(values[0]) if values else []
    head = "".join(f"<th>{html.escape(key)}</th>" for key in ["trial", *keys, "status", "step", metric, "time"])
    rows = []
    for i, (state, trial, score) in enumerate(zip(states, values, scores, strict=True)):
        mark = " ★" if i == best else ""
        cells = [f"#{i + 1}{mark}", *(html.escape(shown(trial[key], ".4g")) for key in keys)]
        cells += [
            status_html(state),
            html.escape(_steps(state)),
            html.escape(shown(score, ".4g")),
            NOTHING if state.status == "starting" else clock(state.elapsed),  # its own time, once it runs
        ]
        style = f' style="font-weight:bold;background:{tint("success")};color:{TEXT}"' if i == best else ""
        rows.append(f'<tr class="llm-trial"{style}>' + "".join(f"<td>{cell}</td>" for cell in cells) + "</tr>")
    series = {
        f"#{i + 1}{' ★' if i == best else ''} {described(trial)}": [
            (row["step"], row[metric]) for row in state.history if is_number(row.get(metric))
        ]
        for i, (state, trial) in enumerate(zip(states, values, strict=True))
    }
    return (
        f'<table class="llm-sweep"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'
        f"<div>{html.escape(metric)} of each trial</div>{curves_svg(series, width=560, height=200)}"
    )


def title_html(sweep: SweepRun, record: dict[str, Any], status: str) -> str:
    """The sweep's name, id, status, trials and scheduler: the heading of the view and the summary."""
    return (
        f"<b>{html.escape(str(record['model']))}</b> · sweep <code>{html.escape(sweep.id)}</code> · "
        f'<span class="llm-sweep-status">{html.escape(shown(status))}</span> · '
        f"{len(sweep.runs)} trials · {html.escape(str(record['scheduler']))}"
    )


def _steps(state: RunState) -> str:
    return shown(state.step) + (f"/{shown(state.total_steps)}" if state.total_steps else "")


class SweepView:
    """The live view of a sweep; a static summary once every trial has ended."""

    def __init__(self, sweep: SweepRun, update_interval: float = 0.5):
        import ipywidgets as w

        record = sweep.record
        self.sweep, self.update_interval = sweep, update_interval
        self.values, self.metric, self.mode = record["values"], record["metric"], record["mode"]
        self.states = [run.live()[0] for run in sweep.runs]
        self._last, self._lock, self._handle = 0.0, threading.Lock(), None
        self._timer_set: threading.Timer | None = None
        self._summarized = False
        self.record = record
        self.body = w.HTML()
        self.stop_button = w.Button(description="Stop sweep", icon="stop", button_style="warning")
        self.stop_button.add_class("llm-stop")
        self.stop_button.tooltip = "Save a checkpoint in every trial and end the sweep"
        self.stop_button.on_click(self._stop)
        self.stop_button.disabled = sweep.control is None and not record.get("detached")
        goes_on = bool(record.get("detached")) or sweep.control is None  # its own process, or another kernel's
        self.gone = KernelGone(
            note=lambda: sweep_note(str(record["model"]), sweep.id, goes_on),
            ended=lambda: _Summary(self, self.sweep.status) if self.ended else None,
        )
        title = w.HTML(self.gone.style + title_html(sweep, record, record["status"]))
        self.widget = w.VBox([title, self.stop_button, self.body])
        self.widget.add_class("llm-sweep-view")
        self.widget.add_class(self.gone.view_class)
        self.render()
        for state in self.states:
            state.listeners.append(self.changed)

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        bundle = self.widget._repr_mimebundle_(**kwargs)
        bundle["text/plain"] = repr(self.sweep)
        return bundle

    def show(self) -> None:
        from IPython.display import display

        self._handle = display(self, display_id=True)
        self.gone.show(self._handle)  # the note that stays once the kernel is gone (``kernel_gone``)
        if self.ended:
            self.finish()

    @property
    def ended(self) -> bool:
        return all(state.status in FINAL for state in self.states)

    def changed(self, state: RunState) -> None:
        with self._lock:
            wait = self.update_interval - (time.monotonic() - self._last)
            if not self.ended and wait > 0:
                if self._timer_set is None:
                    self._timer_set = threading.Timer(wait, self._timed_render)
                    self._timer_set.daemon = True
                    self._timer_set.start()
                return
        self.render()
        if self.ended:
            self.finish()

    def _timed_render(self) -> None:
        with self._lock:
            self._timer_set = None
        self.render()

    def render(self) -> None:
        with self._lock:
            self._last = time.monotonic()
        self.body.value = sweep_html(self.states, self.values, self.metric, self.mode)
        if self.ended:
            self.stop_button.disabled = True

    def finish(self) -> None:
        """Replaces the view with the static summary once the sweep's end is recorded: just after
        its last trial's, by the thread that ran that trial, which must not wait for it."""
        with self._lock:
            if self._handle is None or self._summarized:
                return
            self._summarized = True
        shown = threading.Event()
        self.sweep.summaries.append(shown)  # the sweep's wait() returns once it is shown
        threading.Thread(target=self._summarize, args=(shown,), daemon=True, name="llm_magics-sweep-summary").start()

    def _summarize(self, shown: threading.Event) -> None:
        try:
            deadline = time.monotonic() + _END_RECORDED
            while (status := self.sweep.status) == "running" and time.monotonic() < deadline:
                time.sleep(0.05)
            assert self._handle is not None  # finish() starts this only for a shown view
            self.gone.finish(self._handle, _Summary(self, status))
        finally:
            shown.set()

    def _stop(self, _button: Any) -> None:
        self.stop_button.disabled = True
        self.stop_button.description = "Stopping…"
        self.sweep.stop()


class _Summary:
    def __init__(self, view: SweepView, status: str):
        self.view, self.status = view, status

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, str]:
        view = self.view
        title = title_html(view.sweep, view.record, self.status)
        body = sweep_html(view.states, view.values, view.metric, view.mode)
        return {
            "text/html": f'<div class="llm-summary llm-sweep-summary"><div>{title}</div>{body}</div>',
            "text/plain": repr(view.sweep) if view.sweep else NOTHING,
        }
