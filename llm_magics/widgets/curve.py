"""Training charts as inline SVG: loss, learning rate and accuracy against the step, live and in
the static summary, and the overlaid curves of runs and trials.

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

Classes for tests and styling: ``svg.llm-curve``; ``.llm-series`` (one line per series, its name
in ``data-series``; a smoothed series' raw line is ``.llm-raw``); ``.llm-tick`` (tick labels);
``.llm-grid`` (gridlines); ``.llm-pt`` and its ``.llm-tip`` (a point's hover label); with the
switches, ``.llm-scale-linear`` / ``.llm-scale-log`` (a panel's y axis and lines on each axis) and
``.llm-smoothed`` (a smoothed line).
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeGuard

from llm_magics.core.theme import BORDER, FRAME, MUTED, PAGE, PALETTE, STRONG, TEXT, ink
from llm_magics.widgets.scales import log_ticks, nice_ticks, smoothed, thinned, tick_text

Point = tuple[float, float]
Scale = Callable[[float], float]  # a value to its pixel on an axis
_COLORS = {
    "loss": ink("brand"),
    "eval_loss": ink("warn"),
    "learning_rate": ink("success"),
    "mean_token_accuracy": ink("purple"),
    "eval_mean_token_accuracy": ink("error"),
    "eval_accuracy": ink("olive"),
}
_PALETTE = tuple(ink(name) for name in PALETTE)
_LABELS = {
    "reward": "total reward",
    "rewards/chosen": "chosen",
    "rewards/rejected": "rejected",
    "rewards/margins": "margin",
    "rewards/accuracies": "pairs ranked right",
    "completions/mean_length": "completion length",
    "loss": "train loss",
    "eval_loss": "eval loss",
    "learning_rate": "learning rate",
    "mean_token_accuracy": "token accuracy",
    "eval_mean_token_accuracy": "eval token accuracy",
    "eval_accuracy": "eval accuracy",
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
# what the switches of ``run_chart_html`` change: which axis and which lines show, where hover points sit
_OFF, _ON = ":has(.llm-switch-{}:not(:checked))", ":has(.llm-switch-{}:checked)"
_SWITCHES = (
    "<style>"
    + ",".join(
        f".llm-chart{state.format(switch)} {hidden}"
        for state, switch, hidden in (
            (_OFF, "log", ".llm-scale-log"),
            (_ON, "log", ".llm-scale-linear"),
            (_OFF, "log", ".llm-note-log"),
            (_OFF, "smooth", ".llm-smoothed"),
            (_OFF, "smooth", ".llm-note-smooth"),
        )
    )
    + "{display:none}"
    f".llm-chart{_OFF.format('smooth')} .llm-raw{{stroke-opacity:1;stroke-width:1.5px}}"
    f".llm-chart{_OFF.format('smooth')} .llm-pt{{transform:translateY(var(--r,0px))}}"
    f".llm-chart{_ON.format('log')} .llm-pt{{transform:translateY(var(--l,0px))}}"
    f".llm-chart{_ON.format('log')}{_OFF.format('smooth')} .llm-pt{{transform:translateY(var(--rl,0px))}}"
    ".llm-chart-switches{display:flex;gap:12px;font-size:12px}</style>"
)
_LEFT, _RIGHT, _TITLE, _GAP, _BOTTOM = 56, 14, 16, 8, 18  # margins, in pixels
SMOOTHING = 0.6  # the default smoothing of a run with more than SMOOTH_AFTER train points
SMOOTH_AFTER = 20


@dataclass(frozen=True)
class ChartOptions:
    """How a run's chart is drawn; the live view's controls change them.

    Attributes:
        smoothing: the weight of the moving average over the train curves (0: none); None:
            ``SMOOTHING`` once a run has more than ``SMOOTH_AFTER`` train points, else none.
        log_scale: the loss on a log axis (when every loss is above zero).
    """

    smoothing: float | None = None
    log_scale: bool = False


@dataclass
class Panel:
    """One plot of a chart: named series of (step, value) on a y axis of their own."""

    title: str
    series: dict[str, list[Point]]
    height: int
    log: bool = False
    smoothing: float = 0.0  # over the series that are not evaluations
    notes: list[tuple[str, str]] = field(default_factory=list)  # said after the title: (text, its switch or "")
    both_scales: bool = False  # drawn on a linear and a log axis, a switch shows one (``run_chart_html``)
    switched: bool = False  # a smoothed series drawn smoothed and raw, a switch shows one


def run_chart_svg(
    history: Sequence[dict[str, Any]],
    options: ChartOptions | None = None,
    width: int = 480,
    scores: Sequence[str] = (),
) -> str:
    """A run's chart: train and eval loss; under it, sharing the step axis, the learning rate, the
    accuracies, a method's signals and the generation metrics (``scores``) when they were logged."""
    return chart_svg(_run_panels(history, options or ChartOptions(), scores, switches=False)[1], width)


def run_chart_html(
    history: Sequence[dict[str, Any]], options: ChartOptions | None = None, scores: Sequence[str] = ()
) -> str:
    """A run's chart with its smoothing and log-scale switches, set as ``options`` say; they work
    without a kernel or a script (the summary's chart)."""
    options = options or ChartOptions()
    loss, panels = _run_panels(history, options, scores, switches=True)
    smoothing = _switch("smooth", f"smoothing {loss.smoothing:g}", _smoothed(options, loss), not loss.switched)
    why = "" if loss.both_scales else "log needs values above 0"
    log = _switch("log", "log scale", options.log_scale and loss.both_scales, not loss.both_scales, why)
    return (
        f'<div class="llm-chart">{_SWITCHES}<div class="llm-chart-switches">{smoothing}{log}</div>'
        f"{chart_svg(panels)}</div>"
    )


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
    for row in history:
        step = row.get("step")
        if _finite(step):
            for name, value in row.items():
                if name != "step" and _finite(value):
                    logged.setdefault(name, []).append((step, value))
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
    clean = {name: [(x, y) for x, y in values if _finite(x) and _finite(y)] for name, values in series.items()}
    palette = {name: (colors or {}).get(name, _PALETTE[i % len(_PALETTE)]) for i, name in enumerate(clean)}
    panel = Panel(title, clean, max(40, height - _TITLE - _GAP - _BOTTOM))
    return chart_svg([panel], width, palette)


def _label(name: str) -> str:
    """A series' name in the legend; a reward function's curve by the function's name."""
    if name in _LABELS:
        return _LABELS[name]
    parts = name.split("/")
    if len(parts) == 3 and parts[0] in ("rewards", "eval_rewards") and parts[2] == "mean":
        return ("eval " if parts[0].startswith("eval_") else "") + parts[1]
    return name


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


def chart_svg(panels: list[Panel], width: int = 480, colors: dict[str, str] | None = None) -> str:
    """Panels stacked on one step axis, each with ticks, gridlines, a title, a legend and hover
    labels; the step's ticks under the last."""
    height = sum(_TITLE + panel.height + _GAP for panel in panels) + _BOTTOM
    head = (
        f'<svg class="llm-curve" width="{width}" height="{height}" role="img" aria-label="training chart" '
        'font-family="sans-serif" font-size="10">'
    )
    for panel in panels:
        panel.series = {name: values for name, values in panel.series.items() if values}
    panels = [panel for panel in panels if panel.series]
    steps = [x for panel in panels for values in panel.series.values() for x, _ in values]
    if not steps:
        return (
            f'{head}{_STYLE}<text x="{width / 2}" y="{height / 2}" text-anchor="middle" font-size="12">'
            "the chart appears with the first logged step</text></svg>"
        )
    x_ticks = nice_ticks(min(steps), max(steps), max(2, (width - _LEFT - _RIGHT) // 60), whole=True)
    x_of = _scale(x_ticks, False, _LEFT, width - _RIGHT)
    parts, top, palette = [head, _STYLE], 0, {**_COLORS, **(colors or {})}
    for panel in panels:
        parts += _panel(panel, x_ticks, x_of, top + _TITLE, width, palette)
        top += _TITLE + panel.height + _GAP
    bottom = top - _GAP
    x_step = x_ticks[1] - x_ticks[0]
    parts += [
        f'<text class="llm-tick" x="{x_of(x):.1f}" y="{bottom + 12}" text-anchor="middle">{tick_text(x, x_step)}</text>'
        for x in x_ticks
    ]
    parts.append(f'<text x="{_LEFT - 6}" y="{bottom + 12}" text-anchor="end">step</text></svg>')
    return "".join(parts)


@dataclass
class _Line:
    """A series as drawn: its kept points (a long run thinned), raw and smoothed."""

    name: str
    label: str  # escaped
    color: str
    steps: list[float]
    raw: list[float]
    smooth: list[float]
    weight: float


def _panel(panel: Panel, x_ticks: list[float], x_of: Scale, top: int, width: int, palette: dict[str, str]) -> list[str]:
    """One panel's SVG: the frame, gridlines and y ticks, the lines, the legend, the hover points;
    the y axis and the lines on both axes when the panel has both."""
    bottom, right = top + panel.height, width - _RIGHT
    values = [y for series in panel.series.values() for _, y in series]
    title = html.escape(panel.title) + "".join(_note(text, switch) for text, switch in panel.notes)
    parts = [f'<text class="llm-axis-title" x="{_LEFT}" y="{top - 4}">{title}</text>']
    parts += [
        f'<line class="llm-grid" x1="{x_of(x):.1f}" y1="{top}" x2="{x_of(x):.1f}" y2="{bottom}"/>' for x in x_ticks
    ]
    parts.append(
        f'<rect class="llm-frame" x="{_LEFT}" y="{top}" width="{right - _LEFT}" height="{panel.height}" fill="none"/>'
    )
    lines = [_line(name, series, i, panel, palette) for i, (name, series) in enumerate(panel.series.items())]
    axes = {log: _y_axis(values, log, panel.height, top, right) for log in _scales(panel)}
    for log, (y_of, ticks) in axes.items():
        drawn = ticks + [part for line in lines for part in _lines(line, x_of, y_of, panel.switched)]
        parts += [f'<g class="llm-scale-{"log" if log else "linear"}">', *drawn, "</g>"] if panel.both_scales else drawn
    names = [(line.label, line.color) for line in lines]
    plain = " · ".join([panel.title, *(text for text, _ in panel.notes)])
    legend = _legend(names, len(plain), top, right) if [label for label, _ in names] != [html.escape(plain)] else []
    points = ['<g fill="transparent">']
    for line in lines:
        points += _hovers(line, x_of, {log: y_of for log, (y_of, _) in axes.items()}, panel, top, right)
    return [*parts, *legend, *points, "</g>"]


def _scales(panel: Panel) -> tuple[bool, ...]:
    """The y axes a panel is drawn on: log or not; both, linear first, when a switch picks one."""
    return (False, True) if panel.both_scales else (panel.log,)


def _note(text: str, switch: str) -> str:
    """A note after a panel's title; one that a switch shows is a ``tspan`` the switch's CSS hides."""
    return f'<tspan class="llm-note-{switch}"> · {html.escape(text)}</tspan>' if switch else f" · {html.escape(text)}"


def _y_axis(values: list[float], log: bool, height: int, top: int, right: int) -> tuple[Scale, list[str]]:
    """A panel's y scale over ``values``, and its gridlines and tick labels."""
    low, high, bottom = min(values), max(values), top + height
    y_ticks = log_ticks(low, high) if log else nice_ticks(low, high, max(2, height // 30))
    y_of = _scale(y_ticks, log, bottom, top)
    y_step = None if log else y_ticks[1] - y_ticks[0]
    return y_of, [
        f'<line class="llm-grid" x1="{_LEFT}" y1="{y_of(y):.1f}" x2="{right}" y2="{y_of(y):.1f}"/>'
        f'<text class="llm-tick" x="{_LEFT - 4}" y="{y_of(y) + 3:.1f}" text-anchor="end">{tick_text(y, y_step)}</text>'
        for y in y_ticks
    ]


def _line(name: str, series: list[Point], i: int, panel: Panel, palette: dict[str, str]) -> _Line:
    weight = 0.0 if name.startswith("eval") or len(series) < 2 else panel.smoothing
    kept = thinned(len(series))
    smooth = smoothed([y for _, y in series], weight)
    return _Line(
        name,
        html.escape(_label(name)),
        palette.get(name, _PALETTE[i % len(_PALETTE)]),
        [series[k][0] for k in kept],
        [series[k][1] for k in kept],
        [smooth[k] for k in kept],
        weight,
    )


def _legend(names: list[tuple[str, str]], title_length: int, top: int, right: int) -> list[str]:
    """The series' names in their colors: on the title's line, flush right, when they fit there;
    else one under the other in the plot's top-right corner."""
    widths = [len(label) * 5.5 + 12 for label, _ in names]  # about, at font-size 10
    x = right - sum(widths) + 12
    in_line = x >= _LEFT + title_length * 6 + 12
    texts = []
    for i, (label, color) in enumerate(names):
        at = f'x="{x:.0f}" y="{top - 4}"' if in_line else f'x="{right - 4}" y="{top + 11 + 12 * i}" text-anchor="end"'
        texts.append(f'<text class="llm-legend" {at} style="fill:{color}">{label}</text>')
        x += widths[i]
    return texts


def _lines(line: _Line, x_of: Scale, y_of: Scale, switched: bool) -> list[str]:
    """A series' lines on one y axis (its raw line faint under the smoothed one when smoothed; the
    smoothed one marked when a switch can hide it) and its markers (for evaluations, and a lone
    point)."""
    xs = [x_of(x) for x in line.steps]
    raw = [y_of(y) for y in line.raw]
    data = f'data-series="{html.escape(line.name)}"'
    lines = []
    if line.weight:
        lines.append(
            f'<polyline class="llm-raw" {data} fill="none" style="stroke:{line.color}" stroke-width="1" '
            f'stroke-opacity="0.3" points="{_path(xs, raw)}"/>'
        )
        kind = "llm-series llm-smoothed" if switched else "llm-series"
        smooth = [y_of(y) for y in line.smooth]
        lines.append(
            f'<polyline class="{kind}" {data} fill="none" style="stroke:{line.color}" stroke-width="2" '
            f'points="{_path(xs, smooth)}"/>'
        )
    else:
        lines.append(
            f'<polyline class="llm-series" {data} fill="none" style="stroke:{line.color}" stroke-width="1.5" '
            f'points="{_path(xs, raw)}"/>'
        )
    if line.name.startswith("eval") or len(xs) == 1:
        lines += [
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2.5" style="fill:{line.color}"/>'
            for x, y in zip(xs, raw, strict=True)
        ]
    return lines


def _hovers(line: _Line, x_of: Scale, axes: dict[bool, Scale], panel: Panel, top: int, right: int) -> list[str]:
    """A series' hover points, on its drawn line (smoothed when smoothed) of the panel's first axis;
    where switches draw it other ways, each point's offsets to them (``--r``, ``--l``, ``--rl``)."""
    base, log = axes[_scales(panel)[0]], axes.get(True) if panel.both_scales else None
    points = []
    for x, raw, smooth in zip(line.steps, line.raw, line.smooth, strict=True):
        shown = base(smooth)
        offsets = {"r": base(raw) - shown if panel.switched else 0.0}
        offsets.update({"l": log(smooth) - shown, "rl": log(raw) - shown} if log else {"rl": offsets["r"]})
        style = ";".join(f"--{key}:{value:.1f}px" for key, value in offsets.items() if round(value, 1))
        label = f"step {_step(x)} · {line.label} {raw:.4g}" + (f" (smoothed {smooth:.4g})" if line.weight else "")
        points.append(_hover(x_of(x), shown, label, top, right, style))
    return points


def _hover(px: float, py: float, label: str, top: int, right: int, style: str = "") -> str:
    """A point's hover target at pixel (px, py): a circle, transparent like the group around it,
    its label (shown by the CSS rule on hover) and a ``<title>`` (the browser's tooltip)."""
    anchor = "" if px < (_LEFT + right) / 2 else ' text-anchor="end"'
    tip_x = px + 7 if not anchor else px - 7
    tip_y = py - 7 if py - 7 > top + 10 else py + 15
    moved = f' style="{style}"' if style else ""
    return (
        f'<g class="llm-pt"{moved}><circle class="llm-hit" cx="{px:.0f}" cy="{py:.0f}" r="5"/><title>{label}</title>'
        f'<text class="llm-tip" x="{tip_x:.0f}" y="{tip_y:.0f}"{anchor}>{label}</text></g>'
    )


def _scale(ticks: list[float], log: bool, start: float, end: float) -> Scale:
    """The pixel of a value on an axis that runs from the first tick (at ``start``) to the last."""
    low, high = (math.log10(ticks[0]), math.log10(ticks[-1])) if log else (ticks[0], ticks[-1])
    span = (high - low) or 1.0

    def at(value: float) -> float:
        return start + ((math.log10(value) if log else value) - low) / span * (end - start)

    return at


def _path(xs: list[float], ys: list[float]) -> str:
    return " ".join(f"{x:.1f},{y:.1f}" for x, y in zip(xs, ys, strict=True))


def _step(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


def _finite(value: Any) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
