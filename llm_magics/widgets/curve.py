"""Training charts as inline SVG: loss, learning rate and accuracy against the step or the time,
live and in the static summary, and the overlaid curves of runs and trials.

The SVG is built in Python as one string. It renders from the training thread as one throttled
HTML value, a saved notebook shows it without a kernel or JavaScript, and importing it costs
nothing. Hover values need no script either: each point carries a label that a CSS rule shows on
hover, and a ``<title>`` (the browser's own tooltip, which survives an HTML sanitizer).

Colours are the theme's (``core/theme``), through CSS: a chart follows a switch between the light
and the dark theme as it is.

``run_chart_html`` adds the smoothing and log-scale switches for HTML that runs no script (the
summary a saved notebook keeps): two checkboxes whose state CSS reads (``:has``) over a chart
drawn both ways (the loss on both axes, a smoothed series' line smoothed and raw); a hover point
carries its offsets to the other ways (``--r`` raw, ``--l`` log, ``--rl`` both) in its style.

The x axis is the step or the time since the run's first point (``chart_axes``): the live view
draws the one ``ChartOptions.x_axis`` names, over the steps ``ChartOptions.zoom`` names (redrawn,
with ticks inside them). The summary draws the lines against both axes, the "x: time" switch shows
one (a hover point's offset to the time axis is ``--t``), and its range menu zooms to the last
half or quarter of the steps: each range has its own ticks, and CSS maps the lines and the points,
drawn once, onto it (the map's scale and shift are variables of the ``svg`` for x and of each
panel's ``.llm-panel`` for y; a point carries its pixel, ``--x`` and ``--y``, and the narrowest
range it is in, ``data-range``). A run that logged no times has no time switch, a short one no
range menu. The ranges cost a sixth of a long run's summary where a chart drawn per range would
cost twice it; the live view zooms to any range by redrawing (``ChartOptions.zoom``).

Classes for tests and styling: ``svg.llm-curve``; ``.llm-series`` (one line per series, its name
in ``data-series``; a smoothed series' raw line is ``.llm-raw``); ``.llm-tick`` (tick labels);
``.llm-grid`` (gridlines); ``.llm-pt`` and its ``.llm-tip`` (a point's hover label); ``.llm-dot``
(an evaluation's marker); ``.llm-x-title`` (the x axis' name: "step", or the time's "m:ss",
"h:mm", "h:mm:ss", "time (s)"); with the switches, ``.llm-scale-linear`` / ``.llm-scale-log`` (a
panel's y axis and lines on each axis), ``.llm-smoothed`` (a smoothed line), ``.llm-x-step`` /
``.llm-x-time`` (the x ticks, gridlines and lines on each x axis), ``.llm-switch-time`` (the x
axis' checkbox), ``select.llm-range`` with ``option.llm-switch-all`` / ``-half`` / ``-quarter``
(the range menu), ``.llm-range-all`` / ``-half`` / ``-quarter`` (each range's ticks and
gridlines) and ``.llm-zoomed`` (lines that a range's map moves).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from llm_magics.core.theme import BORDER, FRAME, MUTED, PAGE, STRONG, TEXT, ink
from llm_magics.widgets.chart_axes import RANGES, STEP, TIME, X_AXES, elapsed, frame, x_ticks
from llm_magics.widgets.chart_panel import LEFT, SERIES_COLORS, Panel, Point, panel_svg
from llm_magics.widgets.scales import finite, step_text

_COLORS = {
    "loss": ink("brand"),
    "eval_loss": ink("warn"),
    "learning_rate": ink("success"),
    "mean_token_accuracy": ink("purple"),
    "eval_mean_token_accuracy": ink("error"),
    "eval_accuracy": ink("olive"),
}
# the hover labels: hidden until their point is hovered; drawn with a halo of the page's colour
# (as the legend), so that they stay clear over the lines in either theme
_STYLE = (
    "<style>.llm-pt .llm-tip{visibility:hidden}.llm-pt:hover .llm-tip{visibility:visible}"
    f".llm-curve text{{fill:{MUTED}}}.llm-curve .llm-axis-title{{fill:{TEXT}}}"
    f".llm-curve .llm-grid{{stroke:{BORDER}}}.llm-curve .llm-frame{{stroke:{FRAME}}}"
    f".llm-tip,.llm-legend{{paint-order:stroke;stroke:{PAGE};stroke-width:3px;stroke-linejoin:round}}"
    f".llm-curve .llm-tip{{font-weight:bold;fill:{STRONG}}}</style>"
)
# what the switches of ``run_chart_html`` change: which axes, lines and ticks show, where hover points sit
_OFF, _ON = ":has(.llm-switch-{}:not(:checked))", ":has(.llm-switch-{}:checked)"
_HIDDEN = [
    (_OFF, "log", ".llm-scale-log"),
    (_ON, "log", ".llm-scale-linear"),
    (_OFF, "log", ".llm-note-log"),
    (_OFF, "smooth", ".llm-smoothed"),
    (_OFF, "smooth", ".llm-note-smooth"),
    (_OFF, "time", ".llm-x-time"),
    (_ON, "time", ".llm-x-step"),
    (_ON, "all", ":is(.llm-range-half,.llm-range-quarter)"),
    (_ON, "half", ":is(.llm-range-all,.llm-range-quarter)"),
    (_ON, "half", ":is(.llm-pt,.llm-dot):not([data-range])"),  # a point outside the range
    (_ON, "quarter", ":is(.llm-range-all,.llm-range-half)"),
    (_ON, "quarter", ":is(.llm-pt,.llm-dot):not([data-range=quarter])"),
]
# a point's (or a marker's) move: to where the switches draw its line (--ox, --oy), through the
# range's map (scale --s, shift --b) of its pixel (--x, --y); none where nothing is switched
_MOVED = "calc(var(--s{0},1)*(var(--{0},0px) + var(--o{0},0px)) + var(--b{0},0px) - var(--{0},0px))"
_SWITCHES = (
    "<style>"
    + ",".join(f".llm-chart{state.format(switch)} {hidden}" for state, switch, hidden in _HIDDEN)
    + "{display:none}"
    f".llm-chart{_OFF.format('smooth')} .llm-raw{{stroke-opacity:1;stroke-width:1.5px}}"
    f".llm-chart :is(.llm-pt,.llm-dot){{transform:translate({_MOVED.format('x')},{_MOVED.format('y')})}}"
    f".llm-chart{_OFF.format('smooth')} .llm-pt{{--oy:var(--r,0px)}}"
    f".llm-chart{_ON.format('log')} .llm-pt{{--oy:var(--l,0px)}}"
    f".llm-chart{_ON.format('log')}{_OFF.format('smooth')} .llm-pt{{--oy:var(--rl,0px)}}"
    f".llm-chart{_ON.format('time')} :is(.llm-pt,.llm-dot){{--ox:var(--t,0px)}}"
    ".llm-chart .llm-zoomed{transform:translate(var(--bx,0px),var(--by,0px)) scale(var(--sx,1),var(--sy,1))}"
    + "".join(  # a zoom range's maps: of the x pixels on the axis shown, of the y pixels on the scale shown
        f".llm-chart{_ON.format(name)} .llm-curve{{--sx:var(--sx-step-{name});--bx:var(--bx-step-{name})}}"
        f".llm-chart{_ON.format(name)}{_ON.format('time')} .llm-curve"
        f"{{--sx:var(--sx-time-{name});--bx:var(--bx-time-{name})}}"
        f".llm-chart{_ON.format(name)} .llm-panel{{--sy:var(--sy-linear-{name});--by:var(--by-linear-{name})}}"
        f".llm-chart{_ON.format(name)}{_ON.format('log')} .llm-panel"
        f"{{--sy:var(--sy-log-{name},var(--sy-linear-{name}));--by:var(--by-log-{name},var(--by-linear-{name}))}}"
        for name, _ in RANGES
    )
    + ".llm-chart-switches{display:flex;gap:12px;font-size:12px}</style>"
)
_RANGE_NAMES = (("all", "all steps"), ("half", "last half"), ("quarter", "last quarter"))  # the range menu
_RIGHT, _TITLE, _GAP, _BOTTOM = 14, 16, 8, 18  # margins, in pixels (the left one: chart_panel.LEFT)
SMOOTHING = 0.6  # the default smoothing of a run with more than SMOOTH_AFTER train points
SMOOTH_AFTER = 20


@dataclass(frozen=True)
class ChartOptions:
    """How a run's chart is drawn; the live view's controls change them.

    Attributes:
        smoothing: the weight of the moving average over the train curves (0: none); None:
            ``SMOOTHING`` once a run has more than ``SMOOTH_AFTER`` train points, else none.
        log_scale: the loss on a log axis (when every loss is above zero).
        x_axis: "step", or "time": the time since the run's first logged point (m:ss, h:mm); a
            run that logged no times is drawn against the step (``has_times`` tells).
        zoom: the (first, last) steps ``run_chart_svg`` draws, over the whole width with ticks
            inside them and each y axis over the values in them; None: every step. A live view's
            range slider sets it and redraws. The summary (``run_chart_html``) always begins with
            every step: its range menu zooms.
    """

    smoothing: float | None = None
    log_scale: bool = False
    x_axis: Literal["step", "time"] = "step"
    zoom: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        if self.x_axis not in X_AXES:
            raise ValueError(f"x_axis is one of {', '.join(X_AXES)}, not {self.x_axis!r}")


def run_chart_svg(
    history: Sequence[dict[str, Any]],
    options: ChartOptions | None = None,
    width: int = 480,
    scores: Sequence[str] = (),
) -> str:
    """A run's chart: train and eval loss; under it, sharing the x axis (the step or the time, as
    ``options`` say, over their zoom), the learning rate, the accuracies, a method's signals and
    the generation metrics (``scores``) when they were logged."""
    options = options or ChartOptions()
    panels = _run_panels(history, options, scores, switches=False)[1]
    return chart_svg(panels, width, x_axes=(options.x_axis,), zoom=options.zoom)


def run_chart_html(
    history: Sequence[dict[str, Any]], options: ChartOptions | None = None, scores: Sequence[str] = ()
) -> str:
    """A run's chart with its smoothing, log-scale and x-axis switches, set as ``options`` say, and
    a long run's range menu (every step, the last half, the last quarter); they work without a
    kernel or a script (the summary's chart). It shows every step whatever ``options.zoom``."""
    options = options or ChartOptions()
    loss, panels = _run_panels(history, options, scores, switches=True)
    smoothing = _switch("smooth", f"smoothing {loss.smoothing:g}", _smoothed(options, loss), not loss.switched)
    why = "" if loss.both_scales else "log needs values above 0"
    log = _switch("log", "log scale", options.log_scale and loss.both_scales, not loss.both_scales, why)
    timed = any(panel.times for panel in panels)  # an older record's rows have no time: nothing to switch
    time = _switch("time", "x: time", options.x_axis == TIME, False) if timed else ""
    long = len(loss.series["loss"]) > SMOOTH_AFTER
    menu = "".join(f'<option class="llm-switch-{name}">{text}</option>' for name, text in _RANGE_NAMES)
    ranges = f'<label>zoom <select class="llm-range">{menu}</select></label>' if long else ""
    return (
        f'<div class="llm-chart">{_SWITCHES}<div class="llm-chart-switches">{smoothing}{log}{time}{ranges}</div>'
        f"{chart_svg(panels, x_axes=X_AXES, ranges=long)}</div>"
    )


def has_times(history: Sequence[dict[str, Any]]) -> bool:
    """Whether a run logged the times its chart's time axis needs (at least two)."""
    return elapsed(history) is not None


def _switch(name: str, label: str, on: bool, disabled: bool, why: str = "") -> str:
    state = (" checked" if on else "") + (" disabled" if disabled else "")
    title = f' title="{why}"' if why else ""
    note = f" ({why})" if why else ""
    return f'<label{title}><input type="checkbox" class="llm-switch-{name}"{state}> {label}{note}</label>'


def _smoothed(options: ChartOptions, loss: Panel) -> bool:
    """Whether the train curves show smoothed: as the options say, else once they are long."""
    if options.smoothing is not None:
        return options.smoothing > 0
    return len(loss.series["loss"]) > SMOOTH_AFTER


def _run_panels(
    history: Sequence[dict[str, Any]], options: ChartOptions, scores: Sequence[str], switches: bool
) -> tuple[Panel, list[Panel]]:
    """The loss panel and every panel of a run's chart; ``switches``: the loss drawn on both axes
    where it can be, and the train curves both smoothed (at the options' weight, else the default)
    and raw."""
    logged: dict[str, list[Point]] = {}  # every series, in one pass over the history
    times: dict[str, list[float]] = {}  # its points' seconds since the run began, where the run logged times
    clock = elapsed(history)
    for row in history:
        step = row.get("step")
        if finite(step):
            for name, value in row.items():
                if name not in ("step", "time") and finite(value):
                    logged.setdefault(name, []).append((step, value))
                    if clock:
                        times.setdefault(name, []).append(clock(row))
    loss = Panel("loss", {name: logged.get(name, []) for name in ("loss", "eval_loss")}, 150)
    train_points = len(loss.series["loss"])
    on = _smoothed(options, loss)
    weight = (options.smoothing if options.smoothing else SMOOTHING) if switches or on else 0.0
    loss.smoothing = max(0.0, min(0.99, weight))
    loss.switched = switches and train_points > 1
    positive = all(y > 0 for values in loss.series.values() for _, y in values)
    if switches:
        loss.both_scales, loss.log = positive, False
        loss.notes.append(("log scale", "log"))
    elif options.log_scale:
        loss.log = positive
        loss.notes.append(("log scale" if loss.log else "linear: log needs values above 0", ""))
    if loss.smoothing and train_points > 1:
        loss.notes.append((f"smoothed {loss.smoothing:g}", "smooth" if switches else ""))
    panels = [
        loss,
        Panel("learning rate", {"learning_rate": logged.get("learning_rate", [])}, 56),
        Panel("accuracy", {k: v for k, v in logged.items() if _accuracy(k)}, 56, **_smoothed_as(loss)),
        Panel("rewards", {k: v for k, v in logged.items() if _reward(k)}, 110, **_smoothed_as(loss)),
        Panel("completion length", {k: v for k, v in logged.items() if k.endswith("completions/mean_length")}, 56),
        Panel("KL · entropy", {k: v for k, v in logged.items() if _policy(k, logged)}, 56),
        *_score_panels({f"eval_{name}": logged.get(f"eval_{name}", []) for name in scores}),
    ]
    for panel in panels:
        panel.times = {name: times[name] for name in panel.series if name in times}
    return loss, [panel for panel in panels if any(panel.series.values())] or [loss]


def _smoothed_as(loss: Panel) -> dict[str, Any]:
    """The smoothing of the train curves, for another panel of them."""
    return {"smoothing": loss.smoothing, "switched": loss.switched}


def _score_panels(series: dict[str, list[Point]]) -> list[Panel]:
    """The generation metrics per checkpoint: those between 0 and 1 share a panel; one on another
    scale (BLEU, chrF: 0 to 100; a length) gets its own."""
    unit = {name: values for name, values in series.items() if all(0 <= y <= 1 for _, y in values)}
    other = [
        Panel(f"held-out {name.removeprefix('eval_')}", {name: values}, 56)
        for name, values in series.items()
        if name not in unit
    ]
    return [Panel("held-out answers", unit, 80), *other]


def curves_svg(
    series: dict[str, list[tuple[Any, Any]]],
    colors: dict[str, str] | None = None,
    width: int = 440,
    height: int = 170,
    title: str = "",
) -> str:
    """Several named (step, value) series on one pair of axes, with a legend (runs compared, a
    sweep's trials); ``colors`` maps names to colors. Points that are not two finite numbers (a
    damaged or hostile record) are left out."""
    clean = {name: [(x, y) for x, y in values if finite(x) and finite(y)] for name, values in series.items()}
    palette = {name: (colors or {}).get(name, SERIES_COLORS[i % len(SERIES_COLORS)]) for i, name in enumerate(clean)}
    panel = Panel(title, clean, max(40, height - _TITLE - _GAP - _BOTTOM))
    return chart_svg([panel], width, palette)


def _policy(name: str, logged: dict[str, Any]) -> bool:
    """A reward method's KL and entropy (SFT logs an entropy too, which is not charted)."""
    return name.removeprefix("eval_") in ("kl", "entropy") and ("reward" in logged or "eval_reward" in logged)


def _accuracy(name: str) -> bool:
    """Token and label accuracies, and a preference method's share of pairs ranked right."""
    return name.endswith(("accuracy", "rewards/accuracies"))


def _reward(name: str) -> bool:
    """A preference method's implicit rewards and margin, a reward method's total and per function."""
    name = name.removeprefix("eval_")
    return name == "reward" or (name.startswith("rewards/") and not name.endswith(("/std", "accuracies")))


def chart_svg(
    panels: list[Panel],
    width: int = 480,
    colors: dict[str, str] | None = None,
    *,
    x_axes: Sequence[str] = (STEP,),
    zoom: tuple[float, float] | None = None,
    ranges: bool = False,
) -> str:
    """Panels stacked on one x axis, each with ticks, gridlines, a title, a legend and hover
    labels; the x axis' ticks under the last. ``x_axes``: the step or the time (where every point
    has one), the first shown, the others behind the "x: time" switch; ``zoom``: the (first, last)
    steps drawn; ``ranges``: the range menu's zoom ranges too."""
    for panel in panels:
        panel.series = {name: values for name, values in panel.series.items() if values}
    window = (min(zoom), max(zoom)) if zoom else None
    shown = [panel for panel in panels if _points(panel, window)]
    points = [point for panel in shown for point in _points(panel, window)]
    if not points:
        height = sum(_TITLE + panel.height + _GAP for panel in panels) + _BOTTOM
        empty = "the chart appears with the first logged step"
        if window and any(panel.series for panel in panels):
            empty = f"nothing was logged from step {step_text(window[0])} to {step_text(window[1])}"
        return (
            f'<svg class="llm-curve" width="{width}" height="{height}" role="img" aria-label="training chart" '
            f'font-family="sans-serif" font-size="10">{_STYLE}<text x="{width / 2}" y="{height / 2}" '
            f'text-anchor="middle" font-size="12">{empty}</text></svg>'
        )
    view = frame(points, x_axes, LEFT, width - _RIGHT, window, ranges)
    maps = ";".join(  # each zoom range's map of the x pixels, for the switches' CSS
        f"--sx-{axis.kind}-{zoom.name}:{scale:.4f};--bx-{axis.kind}-{zoom.name}:{shift:.1f}px"
        for zoom in view.zooms
        for axis, (scale, shift) in zip(view.axes, zoom.maps, strict=True)
    )
    height = sum(_TITLE + panel.height + _GAP for panel in shown) + _BOTTOM
    parts = [
        f'<svg class="llm-curve" width="{width}" height="{height}" role="img" aria-label="training chart" '
        f'font-family="sans-serif" font-size="10"{_style(maps)}>',
        _STYLE,
    ]
    top, palette = 0, {**_COLORS, **(colors or {})}
    for panel in shown:
        parts += panel_svg(panel, view, window, top + _TITLE, width - _RIGHT, palette)
        top += _TITLE + panel.height + _GAP
    return "".join([*parts, *x_ticks(view, top - _GAP), "</svg>"])


def _points(panel: Panel, window: tuple[float, float] | None) -> list[tuple[float, float | None]]:
    """A panel's points as (step, time), those in ``window`` when there is one."""
    points: list[tuple[float, float | None]] = []
    for name, values in panel.series.items():
        times: list[float | None] = [*panel.times.get(name, [])] or [None] * len(values)
        points += [(x, time) for (x, _), time in zip(values, times, strict=True)]
    return [(x, time) for x, time in points if window is None or window[0] <= x <= window[1]]


def _style(variables: str) -> str:
    return f' style="{variables}"' if variables else ""
