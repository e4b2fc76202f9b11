"""Training charts as inline SVG: loss, learning rate and accuracy against the step, live and in
the static summary, and the overlaid curves of runs and trials.

The SVG is built in Python as one string. It renders from the training thread as one throttled
HTML value, a saved notebook shows it without a kernel or JavaScript, and importing it costs
nothing. Hover values need no script either: each point carries a label that a CSS rule shows on
hover, and a ``<title>`` (the browser's own tooltip, which survives an HTML sanitizer).

Classes for tests and styling: ``svg.llm-curve``; ``.llm-series`` (one line per series, its name
in ``data-series``; a smoothed series' raw line is ``.llm-raw``); ``.llm-tick`` (tick labels);
``.llm-grid`` (gridlines); ``.llm-pt`` and its ``.llm-tip`` (a point's hover label).
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeGuard

from llm_magics.widgets.scales import log_ticks, nice_ticks, smoothed, thinned, tick_text

Point = tuple[float, float]
Scale = Callable[[float], float]  # a value to its pixel on an axis
_COLORS = {
    "loss": "#1f77b4",
    "eval_loss": "#ff7f0e",
    "learning_rate": "#2ca02c",
    "mean_token_accuracy": "#9467bd",
    "eval_mean_token_accuracy": "#d62728",
    "eval_accuracy": "#8c564b",
}
_PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf")
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
# the hover labels: hidden until their point is hovered; drawn with a white halo, as the legend
_STYLE = (
    "<style>.llm-pt .llm-tip{visibility:hidden}.llm-pt:hover .llm-tip{visibility:visible}"
    ".llm-tip,.llm-legend{paint-order:stroke;stroke:#fff;stroke-width:3px;stroke-linejoin:round}"
    ".llm-tip{font-weight:bold;fill:#222}</style>"
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
    notes: list[str] = field(default_factory=list)  # said after the title, e.g. the scale


def run_chart_svg(
    history: Sequence[dict[str, Any]],
    options: ChartOptions | None = None,
    width: int = 480,
    scores: Sequence[str] = (),
) -> str:
    """A run's chart: train and eval loss; under it, sharing the step axis, the learning rate, the
    accuracies, a method's signals and the generation metrics (``scores``) when they were logged."""
    options = options or ChartOptions()
    logged: dict[str, list[Point]] = {}  # every series, in one pass over the history
    for row in history:
        step = row.get("step")
        if _finite(step):
            for name, value in row.items():
                if name != "step" and _finite(value):
                    logged.setdefault(name, []).append((step, value))
    loss = Panel("loss", {name: logged.get(name, []) for name in ("loss", "eval_loss")}, 150)
    train_points = len(loss.series["loss"])
    weight = options.smoothing if options.smoothing is not None else SMOOTHING * (train_points > SMOOTH_AFTER)
    loss.smoothing = max(0.0, min(0.99, weight))
    if options.log_scale:
        loss.log = all(y > 0 for values in loss.series.values() for _, y in values)
        loss.notes.append("log scale" if loss.log else "linear: log needs values above 0")
    if loss.smoothing and train_points > 1:
        loss.notes.append(f"smoothed {loss.smoothing:g}")
    panels = [
        loss,
        Panel("learning rate", {"learning_rate": logged.get("learning_rate", [])}, 56),
        Panel("accuracy", {k: v for k, v in logged.items() if _accuracy(k)}, 56, smoothing=loss.smoothing),
        Panel("rewards", {k: v for k, v in logged.items() if _reward(k)}, 110, smoothing=loss.smoothing),
        Panel("completion length", {k: v for k, v in logged.items() if k.endswith("completions/mean_length")}, 56),
        Panel("KL · entropy", {k: v for k, v in logged.items() if _policy(k, logged)}, 56),
        *_score_panels({f"eval_{name}": logged.get(f"eval_{name}", []) for name in scores}),
    ]
    return chart_svg([panel for panel in panels if any(panel.series.values())] or [loss], width)


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
            f'{head}<text x="{width / 2}" y="{height / 2}" text-anchor="middle" fill="#888" font-size="12">'
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
        f'<text class="llm-tick" x="{x_of(x):.1f}" y="{bottom + 12}" text-anchor="middle" fill="#555">'
        f"{tick_text(x, x_step)}</text>"
        for x in x_ticks
    ]
    parts.append(f'<text x="{_LEFT - 6}" y="{bottom + 12}" text-anchor="end" fill="#555">step</text></svg>')
    return "".join(parts)


def _panel(panel: Panel, x_ticks: list[float], x_of: Scale, top: int, width: int, palette: dict[str, str]) -> list[str]:
    """One panel's SVG: the frame, gridlines and y ticks, the lines, the legend, the hover points."""
    bottom, right = top + panel.height, width - _RIGHT
    values = [y for series in panel.series.values() for _, y in series]
    low, high = min(values), max(values)
    y_ticks = log_ticks(low, high) if panel.log else nice_ticks(low, high, max(2, panel.height // 30))
    y_of = _scale(y_ticks, panel.log, bottom, top)
    y_step = None if panel.log else y_ticks[1] - y_ticks[0]
    title = html.escape(" · ".join([panel.title, *panel.notes]))
    parts = [f'<text class="llm-axis-title" x="{_LEFT}" y="{top - 4}" fill="#333">{title}</text>']
    for y in y_ticks:
        parts.append(
            f'<line class="llm-grid" x1="{_LEFT}" y1="{y_of(y):.1f}" x2="{right}" y2="{y_of(y):.1f}" stroke="#eee"/>'
            f'<text class="llm-tick" x="{_LEFT - 4}" y="{y_of(y) + 3:.1f}" text-anchor="end" fill="#555">'
            f"{tick_text(y, y_step)}</text>"
        )
    parts += [
        f'<line class="llm-grid" x1="{x_of(x):.1f}" y1="{top}" x2="{x_of(x):.1f}" y2="{bottom}" stroke="#eee"/>'
        for x in x_ticks
    ]
    parts.append(
        f'<rect x="{_LEFT}" y="{top}" width="{right - _LEFT}" height="{panel.height}" fill="none" stroke="#999"/>'
    )
    points, names = ['<g fill="transparent">'], []
    for i, (name, series) in enumerate(panel.series.items()):
        color, label = palette.get(name, _PALETTE[i % len(_PALETTE)]), html.escape(_label(name))
        weight = 0.0 if name.startswith("eval") or len(series) < 2 else panel.smoothing
        lines, hover = _series(name, label, series, weight, color, x_of, y_of)
        parts += lines
        points += [_hover(px, py, text, top, right) for px, py, text in hover]
        names.append((label, color))
    legend = _legend(names, len(title), top, right) if [label for label, _ in names] != [title] else []
    return [*parts, *legend, *points, "</g>"]


def _legend(names: list[tuple[str, str]], title_length: int, top: int, right: int) -> list[str]:
    """The series' names in their colors: on the title's line, flush right, when they fit there;
    else one under the other in the plot's top-right corner."""
    widths = [len(label) * 5.5 + 12 for label, _ in names]  # about, at font-size 10
    x = right - sum(widths) + 12
    in_line = x >= _LEFT + title_length * 6 + 12
    texts = []
    for i, (label, color) in enumerate(names):
        at = f'x="{x:.0f}" y="{top - 4}"' if in_line else f'x="{right - 4}" y="{top + 11 + 12 * i}" text-anchor="end"'
        texts.append(f'<text class="llm-legend" {at} fill="{color}">{label}</text>')
        x += widths[i]
    return texts


def _series(
    name: str, label: str, series: list[Point], weight: float, color: str, x_of: Scale, y_of: Scale
) -> tuple[list[str], list[tuple[float, float, str]]]:
    """A series' lines (its raw line faint under the smoothed one when smoothed), its markers (for
    evaluations, and a lone point), and its hover points as (pixel x, pixel y, label)."""
    kept = thinned(len(series))
    smooth = smoothed([y for _, y in series], weight)
    xs = [x_of(series[i][0]) for i in kept]
    raw = [y_of(series[i][1]) for i in kept]
    drawn = [y_of(smooth[i]) for i in kept] if weight else raw
    data = f'data-series="{html.escape(name)}"'
    lines = []
    if weight:
        lines.append(
            f'<polyline class="llm-raw" {data} fill="none" stroke="{color}" stroke-width="1" stroke-opacity="0.3" '
            f'points="{_path(xs, raw)}"/>'
        )
    lines.append(
        f'<polyline class="llm-series" {data} fill="none" stroke="{color}" stroke-width="{2 if weight else 1.5}" '
        f'points="{_path(xs, drawn)}"/>'
    )
    if name.startswith("eval") or len(kept) == 1:
        lines += [f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2.5" fill="{color}"/>' for x, y in zip(xs, raw, strict=True)]
    labels = [
        f"step {_step(series[i][0])} · {label} {series[i][1]:.4g}" + (f" (smoothed {smooth[i]:.4g})" if weight else "")
        for i in kept
    ]
    return lines, list(zip(xs, drawn, labels, strict=True))


def _hover(px: float, py: float, label: str, top: int, right: int) -> str:
    """A point's hover target at pixel (px, py): a circle, transparent like the group around it,
    its label (shown by the CSS rule on hover) and a ``<title>`` (the browser's tooltip)."""
    anchor = "" if px < (_LEFT + right) / 2 else ' text-anchor="end"'
    tip_x = px + 7 if not anchor else px - 7
    tip_y = py - 7 if py - 7 > top + 10 else py + 15
    return (
        f'<g class="llm-pt"><circle class="llm-hit" cx="{px:.0f}" cy="{py:.0f}" r="5"/><title>{label}</title>'
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
