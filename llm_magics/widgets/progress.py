"""The live training view: progress, metrics, status, the chart and its options, probe answers
and a Stop button.

It reads the run's live state only. Updates are throttled to ``update_interval`` and sent in one
batch (``hold_sync``), however fast the steps come; only widget traits are set, so a training
thread may trigger them. When the run ends, the output becomes a static HTML summary that a
saved notebook shows without a kernel; when the kernel goes first, a note takes the view's place
(``kernel_gone``). ``show_run`` is how a ``Run`` displays itself (the package registers it with
IPython).
"""

from __future__ import annotations

import dataclasses
import html
import threading
import time
from typing import TYPE_CHECKING, Any

from llm_magics.core.theme import MUTED, Hue, ink
from llm_magics.runs import logs
from llm_magics.runs.follow import follow
from llm_magics.runs.run import DETACHED, Run, RunState
from llm_magics.store.records import FINAL
from llm_magics.widgets.completions import completions_html
from llm_magics.widgets.curve import SMOOTHING, ChartOptions, run_chart_html, run_chart_svg
from llm_magics.widgets.display import NOTHING, clock, is_number, shown
from llm_magics.widgets.downloads import chart_links, downloads_html, file_stem
from llm_magics.widgets.kernel_gone import KernelGone
from llm_magics.widgets.probes import probe_grid_html
from llm_magics.widgets.run_context import config_html, log_tail_html

if TYPE_CHECKING:
    from IPython.core.interactiveshell import InteractiveShell

# why a control is off while the kernel trains, said beside it (a tooltip alone goes unread)
_STOP_BUSY = "the kernel is training this run: interrupt it (■ in the toolbar) to stop, keeping a checkpoint"
_STOP_ELSEWHERE = "this run trains in another kernel: stop it there"
_CHART_BUSY = "the kernel is training: smoothing and log scale switch in the summary when the run ends"
_STATUS_HUES: dict[str, Hue] = {"completed": "success", "failed": "error", "stopped": "warn", "interrupted": "warn"}


def _number(value: float | None, digits: int = 4) -> str:
    return shown(value, f".{digits}g")


def eta(state: RunState) -> float | None:
    """Seconds left, at the pace of the newest logged steps (a window, so it does not jump with
    one slow step, nor carry the first steps' warm-up); before there are two, since training began."""
    if not all(is_number(v) for v in (state.step, state.total_steps, state.first_step)) or state.status in FINAL:
        return None
    if not state.total_steps:
        return None
    left = state.total_steps - state.step
    (first, last) = (state.recent[0], state.recent[-1]) if len(state.recent) >= 2 else (None, None)
    if first is not None and last is not None and last[1] > first[1]:
        return (last[0] - first[0]) / (last[1] - first[1]) * left
    done = state.step - state.first_step
    if state.train_started is None or done <= 0:
        return None
    return (time.time() - state.train_started) / done * left


def tokens_rate(state: RunState) -> float | None:
    """Tokens trained per second over the newest logged steps (the same window live and in the
    summary); the last logged rate when the counts are missing."""
    counted = [(moment, tokens) for moment, _, tokens in state.recent if tokens is not None]
    if len(counted) >= 2 and counted[-1][0] > counted[0][0]:
        return (counted[-1][1] - counted[0][1]) / (counted[-1][0] - counted[0][0])
    return state.tokens_per_s


def _rate(value: float | None) -> str:
    """A rate as people read it: 12,345 or 84.6, never 1.234e+04."""
    return shown(value, ",.0f") if is_number(value) and value >= 100 else shown(value, ".3g")


def status_html(state: RunState) -> str:
    color = ink(_STATUS_HUES.get(str(state.status), "brand"))
    text = f'<b style="color:{color}" class="llm-status">{html.escape(shown(state.status))}</b>'
    if state.stalled_for is not None and state.status not in FINAL:
        stalled = f"stalled: no step for {clock(state.stalled_for)}"
        text += f' <b class="llm-stalled" style="color:{ink("warn")}">{stalled}</b>'
    if state.stopping and state.status not in FINAL:
        text += f' <b class="llm-stopping" style="color:{ink("warn")}">{html.escape(state.stopping)}</b>'
    if state.reason:
        text += f' <span class="llm-reason" style="color:{MUTED}">({html.escape(shown(state.reason))})</span>'
    if state.error:
        text += f' <span class="llm-error" style="color:{ink("error")}">{html.escape(shown(state.error))}</span>'
    return text


def log_html(state: RunState, lines: int = 15) -> str:
    """The end of a detached run's log, under a run that failed or was interrupted."""
    if state.status not in ("failed", "interrupted") or not state.log:
        return ""
    shown_lines = logs.tail(state.log, lines)
    if not shown_lines:
        return ""
    return (
        f"<div>the last lines of its log (<code>%llm_logs {html.escape(state.run_id)}</code>):</div>"
        f'<pre class="llm-log" style="max-height:16em;overflow:auto">{html.escape(chr(10).join(shown_lines))}</pre>'
    )


# a reward or preference method's newest signal, in the view's table
SIGNAL_ROWS = (("reward", "mean reward"), ("rewards/margins", "margin"), ("rewards/accuracies", "pairs right"))


def metrics_rows(state: RunState) -> list[tuple[str, str]]:
    """(name, value) of the run's latest metrics, as text; the accuracies, evaluation metrics,
    samples/s and GPU memory only when the run logs them."""
    latest = state.latest
    rows = [("train loss", _number(state.loss)), ("eval loss", _number(state.eval_loss))]
    if state.eval_accuracy is not None:
        rows.append(("eval accuracy", shown(state.eval_accuracy, ".1%")))
    if "mean_token_accuracy" in latest:
        rows.append(("token accuracy", shown(latest["mean_token_accuracy"], ".1%")))
    for name, label in SIGNAL_ROWS:
        if name in latest:
            rows.append((label, shown(latest[name], ".1%" if name.endswith("accuracies") else ".4g")))
    for name, value in sorted(latest.items()):
        if name.startswith("eval_") and name not in ("eval_loss", "eval_accuracy") and not name.endswith("num_tokens"):
            shown_as = ".1%" if name.endswith("accuracy") else ".4g"
            rows.append((name.replace("mean_token", "token").replace("_", " "), shown(value, shown_as)))
    rows += [("learning rate", _number(state.learning_rate, 3)), ("tokens/s", _rate(tokens_rate(state)))]
    if "samples_per_s" in latest:
        rows.append(("samples/s", _rate(latest["samples_per_s"])))
    memory = gpu_memory_text(latest)
    return [*rows, ("GPU memory", memory)] if memory else [*rows, *host_rows(latest)]


def gpu_memory_text(latest: dict[str, float]) -> str | None:
    """'1.2 / 1.5 GiB (peak 1.4 GiB)': allocated / reserved, and the peak allocated; None without
    a GPU."""
    allocated, reserved, peak = (latest.get(f"gpu_memory_{name}") for name in ("allocated", "reserved", "peak"))
    if allocated is None or reserved is None or peak is None:
        return None
    unit, size = ("GiB", 2**30) if max(allocated, reserved, peak) >= 2**30 else ("MiB", 2**20)
    return f"{allocated / size:.1f} / {reserved / size:.1f} {unit} (peak {peak / size:.1f} {unit})"


def host_rows(latest: dict[str, float]) -> list[tuple[str, str]]:
    """("CPU", "183%") and ("RAM", "1.25 GiB (peak 1.50)"): the training process's CPU (100% is one
    core) and resident memory, logged where there is no GPU; none when the run logs neither."""
    cpu, rss, peak = (latest.get(name) for name in ("cpu_percent", "ram_rss", "ram_peak"))
    rows = [("CPU", f"{cpu:.0f}%")] if is_number(cpu) else []
    if is_number(rss):
        rows.append(("RAM", f"{rss / 2**30:.2f} GiB" + (f" (peak {peak / 2**30:.2f})" if is_number(peak) else "")))
    return rows


def steps_text(state: RunState, between: str = "/") -> str:
    return shown(state.step) + (f"{between}{shown(state.total_steps)}" if state.total_steps else "")


def text_summary(state: RunState) -> str:
    parts = [f"{state.model} · run {state.run_id} · {shown(state.status)} · step {steps_text(state)}"]
    parts += [f"{name} {value}" for name, value in metrics_rows(state)[:2] if value != NOTHING]
    if state.error:
        parts.append(f"error: {state.error}")
    return " · ".join(parts)


def summary_html(state: RunState, options: ChartOptions | None = None) -> str:
    """The static record of a finished run: status, metrics, the chart with its smoothing and
    log-scale switches (set as ``options`` say, those the live view had at the end; they work
    without a kernel), the grid of probe answers."""
    facts = [
        ("status", status_html(state)),
        ("steps", html.escape(steps_text(state, " / "))),
        ("epoch", html.escape(_number(state.epoch, 3))),
        ("duration", html.escape(clock(state.elapsed))),
        *[(name, html.escape(value)) for name, value in metrics_rows(state)],
        ("checkpoints", html.escape(", ".join(shown(c.get("step")) for c in state.checkpoints) or NOTHING)),
    ]
    rows = "".join(f"<tr><th style='text-align:left'>{name}</th><td>{value}</td></tr>" for name, value in facts)
    title = f"{html.escape(state.model)} · run {html.escape(state.run_id)} · {html.escape(state.backend)}"
    return (
        f'<div class="llm-summary"><div><b>{title}</b></div>'
        f'<div style="display:flex;flex-wrap:wrap;gap:16px;align-items:flex-start"><table>{rows}</table>'
        f'<div class="llm-downloadable">{run_chart_html(state.history, options, scores=state.scores)}'
        f"{downloads_html(state.history, file_stem(state.model, state.run_id))}</div></div>{config_html(state)}"
        f"{probe_grid_html(state.probes)}{completions_html(state.completions)}{log_html(state)}</div>"
    )


class TrainingView:
    """The widget tree of one run, updated from its live state at most every ``update_interval`` s.

    A render sets three widgets only (the bar, one HTML body, the Stop button), so that it is at
    most three messages to the browser whatever changed. The chart's controls (smoothing, log
    scale) change its options, and render at once.
    """

    def __init__(self, run: Run, update_interval: float = 0.5, stoppable: bool = True):
        import ipywidgets as w

        self.run, self.state, self.update_interval = run, run.live()[0], update_interval
        self.renders = 0  # renders so far; each sends at most one message per widget
        self._last = 0.0
        self._timer: threading.Timer | None = None
        self._lock = threading.Lock()
        self._handle: Any = None
        self.progress = w.IntProgress(min=0, max=1, value=0, bar_style="info", layout=w.Layout(width="320px"))
        self.progress.add_class("llm-progress")
        self.body = w.HTML()
        # a Stop that cannot stop looks it: no colour, and why beside it
        self.stop_button = w.Button(description="Stop", icon="stop", button_style="warning" if stoppable else "")
        self.stop_button.add_class("llm-stop")
        why = "" if stoppable else _STOP_ELSEWHERE if run.followed else _STOP_BUSY
        self.stop_button.tooltip = why or "Save a checkpoint and end the run"
        self.stop_button.disabled = not stoppable
        self.stop_button.on_click(self._stop)
        self.stop_why = _note(why, "llm-stop-why")
        self.options = ChartOptions()  # smoothing: the default for the run's length, until it is moved
        self.smoothing = w.FloatSlider(
            value=SMOOTHING, min=0, max=0.99, step=0.01, description="smoothing", continuous_update=False
        )
        self.log_scale = w.Checkbox(value=False, description="log scale", indent=False)
        self.x_axis = w.Dropdown(
            options=["step", "time"], value="step", description="x", layout=w.Layout(width="130px")
        )
        self.x_axis.style.description_width = "16px"
        # a step range to zoom to; its whole span is no zoom (its end grows with a run's total)
        self.zoom = w.IntRangeSlider(value=(0, 1), min=0, max=1, description="steps", continuous_update=False)
        self.zoom.add_class("llm-zoom")
        self._spanning = False
        self._zoom_span()
        # a run training in this kernel keeps it busy: it would read the controls' changes after the run
        busy = self.state.backend == "kernel" and not run.followed
        for control in (self.smoothing, self.log_scale, self.x_axis, self.zoom):
            control.observe(self._chart_changed, "value")
            control.disabled = busy
            control.tooltip = _CHART_BUSY if busy else None
        self.chart_why = _note(_CHART_BUSY if busy else "", "llm-chart-why")
        # sent once: at a click, its script finds the chart as it is then
        links = w.HTML(chart_links(file_stem(self.state.model, self.state.run_id)))
        links.add_class("llm-chart-links")
        controls = w.HBox([self.smoothing, self.log_scale, self.x_axis, self.zoom, self.chart_why, links])
        controls.layout.flex_flow = "row wrap"
        controls.add_class("llm-chart-controls")
        # the note it leaves for when the kernel is gone (or its summary, when the run has just ended)
        self.gone = KernelGone(run, ended=lambda: self._summary() if self.state.status in FINAL else None)
        title = w.HTML(
            f"{self.gone.style}<b>{html.escape(self.state.model)}</b> · run <code>{self.state.run_id}</code> · "
            f"{self.state.backend}"
        )
        self.config = w.HTML(config_html(self.state))  # set once: it keeps its unfolded state
        parts = [title, w.HBox([self.progress, self.stop_button, self.stop_why]), self.body, controls, self.config]
        self.widget = w.VBox(parts)
        self.widget.add_class("llm-training-view")
        self.widget.add_class(self.gone.view_class)
        self.render()
        self.state.listeners.append(self.changed)

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        bundle = self.widget._repr_mimebundle_(**kwargs)
        bundle["text/plain"] = text_summary(self.state)
        return bundle

    def show(self) -> None:
        """Displays the view, and the note that stays once the kernel is gone (``kernel_gone``);
        when the run ends, the view is replaced by the static summary and the note goes."""
        from IPython.display import display

        self._handle = display(self, display_id=True)
        self.gone.show(self._handle)
        if self.state.status in FINAL:
            self.finish()

    def changed(self, state: RunState) -> None:
        """The run's state changed: render now, or once the interval has passed."""
        final = state.status in FINAL
        with self._lock:
            wait = self.update_interval - (time.monotonic() - self._last)
            if not final and wait > 0:
                if self._timer is None:  # one render is already due; it will show this change
                    self._timer = threading.Timer(wait, self._timed_render)
                    self._timer.daemon = True
                    self._timer.start()
                return
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
        self.render()
        if final:
            self.finish()

    def _timed_render(self) -> None:
        with self._lock:
            self._timer = None
        self.render()

    def render(self) -> None:
        state = self.state
        with self._lock:
            self._last = time.monotonic()
            self.renders += 1
        with self.progress.hold_sync():
            self.progress.max = max(1, state.total_steps if is_number(state.total_steps) else 1)
            self.progress.value = min(state.step if is_number(state.step) else 0, self.progress.max)
            self.progress.bar_style = {"completed": "success", "failed": "danger"}.get(state.status, "info")
        self._zoom_span()
        self.body.value = body_html(state, self.options)
        self.gone.refresh()
        if state.status in FINAL:
            with self.stop_button.hold_sync():  # one message
                self.stop_button.disabled, self.stop_button.button_style = True, ""

    def finish(self) -> None:
        """Leaves the static summary in the output (a saved notebook shows it without a kernel)."""
        if self._handle is not None:
            self.gone.finish(self._handle, self._summary())

    def _summary(self) -> _Summary:
        return _Summary(self.state, self.options)

    def _zoom_span(self) -> None:
        """The range slider spans the run's steps (its total once known); a slider at its whole span
        follows the run's growth."""
        state = self.state
        total = state.total_steps if is_number(state.total_steps) else state.step if is_number(state.step) else 0
        span = max(1, int(total))
        if span != self.zoom.max:
            whole = self.zoom.value == (self.zoom.min, self.zoom.max)
            self._spanning = True  # not a user's zoom: no redraw of its own
            try:
                with self.zoom.hold_sync():
                    self.zoom.max = span
                    if whole:
                        self.zoom.value = (0, span)
            finally:
                self._spanning = False

    def _chart_changed(self, change: dict[str, Any]) -> None:
        if self._spanning:
            return
        smoothing = self.smoothing.value if change["owner"] is self.smoothing else self.options.smoothing
        first, last = self.zoom.value
        zoom = None if (first, last) == (self.zoom.min, self.zoom.max) else (float(first), float(last))
        self.options = dataclasses.replace(
            self.options, smoothing=smoothing, log_scale=self.log_scale.value, x_axis=self.x_axis.value, zoom=zoom
        )
        self.render()

    def _stop(self, _button: Any) -> None:
        self.stop_button.disabled, self.stop_button.button_style = True, ""
        self.stop_button.description = "Stopping…"
        self.run.stop()


def _note(text: str, css_class: str) -> Any:
    """A line of muted text beside a control that says why it is off (hidden when there is none)."""
    import ipywidgets as w

    style = f"color:{MUTED};display:inline-block;line-height:1.4;vertical-align:middle"  # not a widget's 28px lines
    note = w.HTML(f'<span style="{style}">{html.escape(text)}</span>' if text else "")
    note.add_class(css_class)
    note.layout.display = None if text else "none"
    return note


def body_html(state: RunState, options: ChartOptions | None = None) -> str:
    """Everything of the live view but the bar, the button and the chart's controls, as one HTML value."""
    line = (
        f'<span class="llm-steps">step {html.escape(steps_text(state))}</span> · '
        f"epoch {html.escape(shown(state.epoch, '.2f'))} · "
        f"{clock(state.elapsed)} elapsed · ETA {clock(eta(state))} · {status_html(state)}"
    )
    steps = [shown(c.get("step")) for c in state.checkpoints]
    latest = ", ".join(steps[-5:])  # the newest few: a long run saves hundreds
    saved = ("checkpoints", f"{len(steps)}: …, {latest}" if len(steps) > 5 else latest or NOTHING)
    metrics = "".join(
        f"<tr><th style='text-align:left;padding-right:8px'>{n}</th><td>{html.escape(v)}</td></tr>"
        for n, v in [*metrics_rows(state), saved]
    )
    return (
        f"<div>{line}</div><div style='display:flex;flex-wrap:wrap;gap:16px;align-items:flex-start'>"
        f"<table>{metrics}</table>{run_chart_svg(state.history, options, scores=state.scores)}</div>"
        f"{log_tail_html(state)}{probe_grid_html(state.probes)}{completions_html(state.completions)}{log_html(state)}"
    )


def summary_bundle(state: RunState, options: ChartOptions | None = None) -> dict[str, str]:
    return {"text/html": summary_html(state, options), "text/plain": text_summary(state)}


def run_bundle(run: Run) -> dict[str, str]:
    """A finished run's static summary; a live run's one line."""
    state = run.state or run.stored_state()
    return summary_bundle(state) if state.status in FINAL else {"text/plain": repr(run)}


def show_run(run: Run, shell: InteractiveShell | None = None) -> None:
    """``run`` or ``display(run)``: a live run's view, which becomes the static summary when the
    run ends (the output is replaced through its display id); a finished run's summary."""
    from IPython import get_ipython
    from IPython.display import display

    shell = shell or get_ipython()
    if shell is not None and run.shown_in == shell.execution_count:
        display({"text/plain": repr(run)}, raw=True)  # the magic already shows the view in this cell
        return
    if run.state is None and run.status not in FINAL:
        follow(run)  # trained elsewhere (a detached process): the view follows it through the store
    if run.state is None or run.state.status in FINAL:
        display(run_bundle(run), raw=True)
    else:
        magics = shell.magics_manager.registry.get("LLMMagics") if shell is not None else None
        interval = {"update_interval": magics.update_interval} if magics is not None else {}
        TrainingView(run, stoppable=stoppable(run), **interval).show()


def stoppable(run: Run) -> bool:
    """Whether the view's Stop button can stop the run: not a blocking run (the kernel is busy; its
    interrupt stops it), and not a run followed from another kernel unless it is detached."""
    backend = run.state.backend if run.state else ""
    return backend in DETACHED or (backend != "kernel" and not run.followed)


class _Summary:
    def __init__(self, state: RunState, options: ChartOptions):
        self.state, self.options = state, options

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, str]:
        return summary_bundle(self.state, self.options)
