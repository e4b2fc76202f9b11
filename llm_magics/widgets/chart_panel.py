"""One panel of a chart as SVG: its frame, gridlines and ticks, lines, legend and hover points.

``curve`` stacks panels on one x axis (``chart_axes``) and adds the switches' CSS; a panel draws
its lines once per x axis and, where a switch picks the y axis, once per y axis. With the
summary's zoom ranges, each range has its y ticks, the lines are clipped to the plot and keep
their stroke under the range's map, and the y coordinates carry a digit more so that a range's
map (a loss's last quarter magnified tens of times) stays smooth.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable
from dataclasses import dataclass, field

from llm_magics.core.theme import PALETTE, ink
from llm_magics.widgets.chart_axes import Frame, XAxis, variants, x_grid
from llm_magics.widgets.scales import log_ticks, nice_ticks, smoothed, step_text, thinned, tick_text

Point = tuple[float, float]
Scale = Callable[[float], float]  # a value to its pixel on an axis
LEFT = 56  # the margin of the y axis' ticks, in pixels
SERIES_COLORS = tuple(ink(name) for name in PALETTE)  # a series' colour where it has none of its own
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
    times: dict[str, list[float]] = field(default_factory=dict)  # a series' seconds since the run began, by point


@dataclass
class _Line:
    """A series as drawn: its kept points (a long run thinned, a zoom's only), raw and smoothed,
    and the lowest and highest value it shows."""

    name: str
    label: str  # escaped
    color: str
    steps: list[float]
    times: list[float | None]
    raw: list[float]
    smooth: list[float]
    weight: float
    low: float
    high: float


@dataclass
class _YAxis:
    """A panel's y axis: its scale, its ticks, and their gridlines and labels."""

    at: Scale
    ticks: list[float]
    drawn: list[str]


@dataclass
class _Box:
    """Where a panel is drawn, in pixels, and how precisely its y coordinates are written."""

    top: int
    right: int
    height: int
    digits: int  # of a y coordinate: 2 where a zoom range magnifies the lines, else 1

    @property
    def bottom(self) -> int:
        return self.top + self.height


def panel_svg(
    panel: Panel, view: Frame, window: tuple[float, float] | None, top: int, right: int, palette: dict[str, str]
) -> list[str]:
    """One panel's SVG: the frame, gridlines and ticks, the lines, the legend, the hover points;
    the y axis and the lines on both axes when the panel has both; with zoom ranges, in a
    ``.llm-panel`` group that carries each range's map of the y pixels."""
    box = _Box(top, right, panel.height, 2 if view.zooms else 1)
    lines = [
        _line(name, series, panel.times.get(name), i, panel, palette, window)
        for i, (name, series) in enumerate(panel.series.items())
    ]
    lines = [line for line in lines if line.steps]
    title = html.escape(panel.title) + "".join(_note(text, switch) for text, switch in panel.notes)
    parts = [f'<text class="llm-axis-title" x="{LEFT}" y="{top - 4}">{title}</text>', *x_grid(view, top, box.bottom)]
    parts.append(
        f'<rect class="llm-frame" x="{LEFT}" y="{top}" width="{right - LEFT}" height="{panel.height}" fill="none"/>'
    )
    low, high = min(line.low for line in lines), max(line.high for line in lines)
    axes = {log: _y_axis(low, high, log, box) for log in _scales(panel)}
    maps = []
    for log, axis in axes.items():
        ticks, maps_of = _y_ranges(lines, view, axis, log, box)
        drawn = [*ticks, *_plot(lines, view, axis.at, panel, box), *_dots(lines, view, axis.at, box)]
        parts += [f'<g class="llm-scale-{"log" if log else "linear"}">', *drawn, "</g>"] if panel.both_scales else drawn
        maps += maps_of
    names = [(line.label, line.color) for line in lines]
    plain = " · ".join([panel.title, *(text for text, _ in panel.notes)])
    legend = _legend(names, len(plain), top, right) if [label for label, _ in names] != [html.escape(plain)] else []
    points = ['<g fill="transparent">']
    for line in lines:
        points += _hovers(line, view, {log: axis.at for log, axis in axes.items()}, panel, box)
    drawn = [*parts, *legend, *points, "</g>"]
    return [f'<g class="llm-panel" style="{";".join(maps)}">', *drawn, "</g>"] if maps else drawn


def _scales(panel: Panel) -> tuple[bool, ...]:
    """The y axes a panel is drawn on: log or not; both, linear first, when a switch picks one."""
    return (False, True) if panel.both_scales else (panel.log,)


def _note(text: str, switch: str) -> str:
    """A note after a panel's title; one that a switch shows is a ``tspan`` the switch's CSS hides."""
    return f'<tspan class="llm-note-{switch}"> · {html.escape(text)}</tspan>' if switch else f" · {html.escape(text)}"


def _line(
    name: str,
    series: list[Point],
    times: list[float] | None,
    i: int,
    panel: Panel,
    palette: dict[str, str],
    window: tuple[float, float] | None,
) -> _Line:
    """A series to draw: smoothed over all its points, then those in ``window`` kept (thinned)."""
    weight = 0.0 if name.startswith("eval") or len(series) < 2 else panel.smoothing
    smooth = smoothed([y for _, y in series], weight)
    inside = [k for k, (x, _) in enumerate(series) if window is None or window[0] <= x <= window[1]]
    kept = [inside[k] for k in thinned(len(inside))]
    values = [value for k in inside for value in (series[k][1], smooth[k])]
    return _Line(
        name,
        html.escape(label(name)),
        palette.get(name, SERIES_COLORS[i % len(SERIES_COLORS)]),
        [series[k][0] for k in kept],
        [times[k] if times else None for k in kept],
        [series[k][1] for k in kept],
        [smooth[k] for k in kept],
        weight,
        min(values, default=0.0),
        max(values, default=0.0),
    )


def label(name: str) -> str:
    """A series' name in the legend; a reward function's curve by the function's name."""
    if name in _LABELS:
        return _LABELS[name]
    parts = name.split("/")
    if len(parts) == 3 and parts[0] in ("rewards", "eval_rewards") and parts[2] == "mean":
        return ("eval " if parts[0].startswith("eval_") else "") + parts[1]
    return name


def _y_axis(low: float, high: float, log: bool, box: _Box) -> _YAxis:
    """A panel's y scale over ``low`` to ``high``, and its gridlines and tick labels."""
    y_ticks = log_ticks(low, high) if log else nice_ticks(low, high, max(2, box.height // 30))
    y_of = _scale(y_ticks, log, box.bottom, box.top)
    y_step = None if log else y_ticks[1] - y_ticks[0]
    drawn = [
        f'<line class="llm-grid" x1="{LEFT}" y1="{y_of(y):.1f}" x2="{box.right}" y2="{y_of(y):.1f}"/>'
        f'<text class="llm-tick" x="{LEFT - 4}" y="{y_of(y) + 3:.1f}" text-anchor="end">{tick_text(y, y_step)}</text>'
        for y in y_ticks
    ]
    return _YAxis(y_of, y_ticks, drawn)


def _y_ranges(lines: list[_Line], view: Frame, axis: _YAxis, log: bool, box: _Box) -> tuple[list[str], list[str]]:
    """A y axis' ticks over every step and over each zoom range (its own, over the values shown in
    it), and each range's map of the y pixels (its scale and shift) as CSS variables."""
    groups, maps = [("llm-range-all", axis.drawn)], []
    for zoom in view.zooms:
        values = [
            value
            for line in lines
            for step, raw, smooth in zip(line.steps, line.raw, line.smooth, strict=True)
            if step >= zoom.first
            for value in (raw, smooth)
        ]
        if not values:  # nothing of this panel in the range: its ticks as they are
            groups.append((f"llm-range-{zoom.name}", axis.drawn))
            continue
        zoomed = _y_axis(min(values), max(values), log, box)
        low, high = zoomed.ticks[0], zoomed.ticks[-1]
        scale = (zoomed.at(high) - zoomed.at(low)) / ((axis.at(high) - axis.at(low)) or 1.0)
        name = f"{'log' if log else 'linear'}-{zoom.name}"
        maps.append(f"--sy-{name}:{scale:.4f};--by-{name}:{zoomed.at(low) - scale * axis.at(low):.2f}px")
        groups.append((f"llm-range-{zoom.name}", zoomed.drawn))
    return variants(groups), maps


def _plot(lines: list[_Line], view: Frame, y_of: Scale, panel: Panel, box: _Box) -> list[str]:
    """The lines on each x axis; with zoom ranges, ``.llm-zoomed`` (moved by the range's map) and
    clipped to the plot."""
    zoomed = bool(view.zooms)
    groups = [
        (
            f"llm-x-{axis.kind}" + (" llm-zoomed" if zoomed else ""),
            [part for line in lines for part in _lines(line, _xs(line, view, axis), y_of, panel, box)],
        )
        for axis in view.axes
    ]
    if not zoomed:
        return variants(groups)
    clip = f"llm-clip-{box.top}-{box.right}-{box.height}"  # an id for a box: charts that share it share the box
    rect = f'<rect x="{LEFT}" y="{box.top}" width="{box.right - LEFT}" height="{box.height}"/>'
    drawn = [part for name, parts in groups for part in (f'<g class="{name}">', *parts, "</g>")]
    return [f'<clipPath id="{clip}">{rect}</clipPath><g clip-path="url(#{clip})">', *drawn, "</g>"]


def _xs(line: _Line, view: Frame, axis: XAxis) -> list[float]:
    return [view.at(axis, step, time) for step, time in zip(line.steps, line.times, strict=True)]


def _lines(line: _Line, xs: list[float], y_of: Scale, panel: Panel, box: _Box) -> list[str]:
    """A series' lines on one pair of axes: its raw line faint under the smoothed one when smoothed
    (the smoothed one marked when a switch can hide it); strokes that keep their width under a zoom."""
    raw = [y_of(y) for y in line.raw]
    data = f'data-series="{html.escape(line.name)}"' + (' vector-effect="non-scaling-stroke"' if box.digits > 1 else "")
    if not line.weight:
        return [
            f'<polyline class="llm-series" {data} fill="none" style="stroke:{line.color}" stroke-width="1.5" '
            f'points="{_path(xs, raw, box.digits)}"/>'
        ]
    kind = "llm-series llm-smoothed" if panel.switched else "llm-series"
    smooth = [y_of(y) for y in line.smooth]
    return [
        f'<polyline class="llm-raw" {data} fill="none" style="stroke:{line.color}" stroke-width="1" '
        f'stroke-opacity="0.3" points="{_path(xs, raw, box.digits)}"/>',
        f'<polyline class="{kind}" {data} fill="none" style="stroke:{line.color}" stroke-width="2" '
        f'points="{_path(xs, smooth, box.digits)}"/>',
    ]


def _dots(lines: list[_Line], view: Frame, y_of: Scale, box: _Box) -> list[str]:
    """The markers of evaluations and of a lone point (``.llm-dot``), on the first x axis; moved
    by the switches as a hover point is."""
    dots = []
    for line in lines:
        if not (line.name.startswith("eval") or len(line.steps) == 1):
            continue
        for step, time, value in zip(line.steps, line.times, line.raw, strict=True):
            x, y = view.at(view.axes[0], step, time), y_of(value)
            moves = _moves(view, step, time, x, y, box)
            dots.append(
                f'<circle class="llm-dot" cx="{x:.1f}" cy="{y:.1f}" r="2.5" style="fill:{line.color}'
                f'{";" if moves else ""}{moves}"{_range_of(view, step)}/>'
            )
    return dots


def _hovers(line: _Line, view: Frame, axes: dict[bool, Scale], panel: Panel, box: _Box) -> list[str]:
    """A series' hover points, on its drawn line (smoothed when smoothed) of the panel's first axis;
    where switches draw it other ways, each point's offsets to them (``--r``, ``--l``, ``--rl``)."""
    base, log = axes[_scales(panel)[0]], axes.get(True) if panel.both_scales else None
    points = []
    for x, time, raw, smooth in zip(line.steps, line.times, line.raw, line.smooth, strict=True):
        px, shown = view.at(view.axes[0], x, time), base(smooth)
        offsets = {"r": base(raw) - shown if panel.switched else 0.0}
        offsets.update({"l": log(smooth) - shown, "rl": log(raw) - shown} if log else {"rl": offsets["r"]})
        style = ";".join(
            f"--{key}:{value:.{box.digits}f}px" for key, value in offsets.items() if round(value, box.digits)
        )
        moves = _moves(view, x, time, px, shown, box)
        style += (";" if style and moves else "") + moves
        text = f"step {step_text(x)} · {line.label} {raw:.4g}" + (f" (smoothed {smooth:.4g})" if line.weight else "")
        points.append(_hover(px, shown, text, box, style, _range_of(view, x)))
    return points


def _moves(view: Frame, step: float, time: float | None, x: float, y: float, box: _Box) -> str:
    """A point's offset to the time axis (``--t``), and for a zoom its pixel (``--x``, ``--y``)."""
    moves = [f"--t:{view.at(view.axes[1], step, time) - x:.1f}px"] if len(view.axes) > 1 else []
    moves += [f"--x:{x:.1f}px", f"--y:{y:.{box.digits}f}px"] if view.zooms else []
    return ";".join(move for move in moves if move not in ("--t:0.0px", "--t:-0.0px"))


def _range_of(view: Frame, step: float) -> str:
    """The narrowest zoom range a point is in (``data-range``), where it is in one."""
    name = view.range_of(step)
    return f' data-range="{name}"' if name else ""


def _hover(px: float, py: float, text: str, box: _Box, style: str = "", more: str = "") -> str:
    """A point's hover target at pixel (px, py): a circle, transparent like the group around it,
    its label (shown by the CSS rule on hover) and a ``<title>`` (the browser's tooltip)."""
    anchor = "" if px < (LEFT + box.right) / 2 else ' text-anchor="end"'
    tip_x = px + 7 if not anchor else px - 7
    tip_y = py - 7 if py - 7 > box.top + 10 else py + 15
    moved = f' style="{style}"' if style else ""
    return (
        f'<g class="llm-pt"{moved}{more}><circle class="llm-hit" cx="{px:.0f}" cy="{py:.0f}" r="5"/>'
        f'<title>{text}</title><text class="llm-tip" x="{tip_x:.0f}" y="{tip_y:.0f}"{anchor}>{text}</text></g>'
    )


def _legend(names: list[tuple[str, str]], title_length: int, top: int, right: int) -> list[str]:
    """The series' names in their colors: on the title's line, flush right, when they fit there;
    else one under the other in the plot's top-right corner."""
    widths = [len(name) * 5.5 + 12 for name, _ in names]  # about, at font-size 10
    x = right - sum(widths) + 12
    in_line = x >= LEFT + title_length * 6 + 12
    texts = []
    for i, (name, color) in enumerate(names):
        at = f'x="{x:.0f}" y="{top - 4}"' if in_line else f'x="{right - 4}" y="{top + 11 + 12 * i}" text-anchor="end"'
        texts.append(f'<text class="llm-legend" {at} style="fill:{color}">{name}</text>')
        x += widths[i]
    return texts


def _scale(ticks: list[float], log: bool, start: float, end: float) -> Scale:
    """The pixel of a value on an axis that runs from the first tick (at ``start``) to the last."""
    low, high = (math.log10(ticks[0]), math.log10(ticks[-1])) if log else (ticks[0], ticks[-1])
    span = (high - low) or 1.0

    def at(value: float) -> float:
        return start + ((math.log10(value) if log else value) - low) / span * (end - start)

    return at


def _path(xs: list[float], ys: list[float], digits: int = 1) -> str:
    return " ".join(f"{x:.1f},{y:.{digits}f}" for x, y in zip(xs, ys, strict=True))
