"""The x axes of a run's chart, and the ranges of steps it zooms to.

A chart's x axis is the step, or the time since the run's first logged point (``ChartOptions.x_axis``
in the live view, the "x: time" switch in the summary). A training row carries the moment it was
logged (``time``, epoch seconds); a row without one is placed by its step, between the rows around
it. ``ChartOptions.zoom`` draws a range of steps over the whole width, with ticks inside it (the
live view redraws; ``curve`` leaves the points outside out). The summary zooms without a kernel:
its range menu picks the last half or the last quarter of the steps, each a ``Zoom`` of its own
ticks and of a map (a scale and a shift) of the whole run's pixels onto the range's, which CSS
applies to the lines drawn once.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from llm_magics.widgets.scales import (
    clock_text,
    clock_unit,
    finite,
    interpolated,
    nice_ticks,
    tick_text,
    time_ticks,
)

Timed = tuple[float, float | None]  # a point's step, and its seconds since the run began where known
STEP, TIME = "step", "time"
X_AXES = (STEP, TIME)
# the summary's zoom presets: (name, where the range begins, as a share of the steps)
RANGES = (("half", 0.5), ("quarter", 0.75))


@dataclass
class XAxis:
    """One x axis: what it measures (``STEP`` or ``TIME``), the values at the plot's left and right
    edges, its ticks and their labels, and its title."""

    kind: str
    low: float
    high: float
    ticks: list[float]
    labels: list[str]
    title: str
    left: float
    right: float

    def at(self, value: float) -> float:
        """The pixel of a value."""
        return self.left + (value - self.low) / ((self.high - self.low) or 1.0) * (self.right - self.left)


def x_axis(kind: str, low: float, high: float, left: float, right: float, exact: bool = False) -> XAxis:
    """An axis over ``low`` to ``high`` between the pixels ``left`` and ``right``: a step axis spans
    its ticks (the data sits inside them); a time axis, or any axis ``exact`` (a zoom), spans ``low``
    to ``high``, its ticks inside (a clock's intervals seldom fit a run's length: 6:14 on an axis
    to 8:00 would leave a fifth of it empty)."""
    count = max(2, int(right - left) // 60)
    if kind == TIME:
        ticks = time_ticks(low, high, count)
        unit = clock_unit(ticks)
        labels, title = [clock_text(t, unit) for t in ticks], "time (s)" if unit == "s" else unit
    else:
        ticks = nice_ticks(low, high, count, whole=True)
        labels, title = [tick_text(t, ticks[1] - ticks[0]) for t in ticks], STEP
    if (exact or kind == TIME) and high > low:
        inside = [i for i, t in enumerate(ticks) if low - 1e-9 <= t <= high + 1e-9]
        ticks, labels = [ticks[i] for i in inside], [labels[i] for i in inside]
    else:
        low, high = ticks[0], ticks[-1]
    return XAxis(kind, low, high, ticks, labels, title, left, right)


@dataclass
class Zoom:
    """A range of steps the summary zooms to: its first step, its x axes, and per x axis the map
    (scale, shift) from the whole run's pixels to the range's."""

    name: str
    first: float
    axes: list[XAxis]
    maps: list[tuple[float, float]]


@dataclass
class Frame:
    """A chart's x axes (the first shown without a switch, the others behind it) and the summary's
    zoom ranges."""

    axes: list[XAxis]
    zooms: list[Zoom]

    def at(self, axis: XAxis, step: float, time: float | None) -> float:
        """A point's pixel along an axis."""
        return axis.at(_value(axis.kind, step, time))

    def range_of(self, step: float) -> str:
        """The narrowest zoom range a step is in; "" when it is in none."""
        return next((zoom.name for zoom in reversed(self.zooms) if step >= zoom.first), "")


def frame(
    points: Sequence[Timed],
    kinds: Sequence[str],
    left: float,
    right: float,
    window: tuple[float, float] | None = None,
    ranges: bool = False,
) -> Frame:
    """The x axes (``kinds``; the time where every point has one) over the (step, time) ``points``,
    which must not be empty; ``window``: the steps zoomed to, each axis over them exactly;
    ``ranges``: the summary's zoom ranges too."""
    timed = all(time is not None for _, time in points) and len({time for _, time in points}) > 1
    kinds = [kind for kind in kinds if kind == STEP or timed] or [STEP]
    axes = [_axis_over(kind, points, left, right, exact=window is not None) for kind in kinds]
    result = Frame(axes, [])
    steps = sorted({step for step, _ in points})
    for name, share in RANGES if ranges else ():
        first = steps[0] + share * (steps[-1] - steps[0])
        first = math.ceil(first - 1e-9) if all(float(s).is_integer() for s in steps) else first
        inside = [(step, time) for step, time in points if step >= first]
        if len({step for step, _ in inside}) < 2:
            continue
        zoomed = [_axis_over(axis.kind, inside, left, right, exact=True) for axis in axes]
        maps = [_map(axis, zoom, inside) for axis, zoom in zip(axes, zoomed, strict=True)]
        result.zooms.append(Zoom(name, first, zoomed, maps))
    return result


def _axis_over(kind: str, points: Sequence[Timed], left: float, right: float, exact: bool) -> XAxis:
    values = [_value(kind, *point) for point in points]
    return x_axis(kind, min(values), max(values), left, right, exact)


def _map(axis: XAxis, zoom: XAxis, inside: Sequence[Timed]) -> tuple[float, float]:
    """The scale and shift that take a pixel of ``axis`` to the pixel of ``zoom`` (an affine map)."""
    values = [_value(axis.kind, *point) for point in inside]
    low, high = axis.at(min(values)), axis.at(max(values))
    scale = (zoom.right - zoom.left) / ((high - low) or 1.0)
    return scale, zoom.left - scale * low


def _value(kind: str, step: float, time: float | None) -> float:
    """Where a point lies along an axis of ``kind``."""
    return time if kind == TIME and time is not None else step


def variants(groups: list[tuple[str, list[str]]]) -> list[str]:
    """Markup drawn several ways, each in a group of its class (that a switch shows); a lone way as it is."""
    if len(groups) == 1:
        return groups[0][1]
    return [part for name, drawn in groups for part in (f'<g class="{name}">', *drawn, "</g>")]


def _ranged(view: Frame, drawn: Callable[[XAxis], list[str]]) -> list[str]:
    """Markup of each x axis (``.llm-x-step``, ``.llm-x-time``) over every step and over each zoom
    range (``.llm-range-all``, ``-half``, ``-quarter``)."""
    return variants(
        [
            (
                f"llm-x-{axis.kind}",
                variants(
                    [("llm-range-all", drawn(axis))]
                    + [(f"llm-range-{zoom.name}", drawn(zoom.axes[i])) for zoom in view.zooms]
                ),
            )
            for i, axis in enumerate(view.axes)
        ]
    )


def x_grid(view: Frame, top: int, bottom: int) -> list[str]:
    """A panel's vertical gridlines at the x ticks."""

    def lines(axis: XAxis) -> list[str]:
        return [f'<path class="llm-grid" d="{"".join(f"M{axis.at(x):.1f} {top}V{bottom}" for x in axis.ticks)}"/>']

    return _ranged(view, lines)


def x_ticks(view: Frame, bottom: int) -> list[str]:
    """The x tick labels and the axis' name (``.llm-x-title``) under the last panel."""

    def labels(axis: XAxis) -> list[str]:
        ticks = [
            f'<text class="llm-tick" x="{axis.at(x):.1f}" y="{bottom + 12}" text-anchor="middle">{text}</text>'
            for x, text in zip(axis.ticks, axis.labels, strict=True)
        ]
        # left of the first tick's label where that label reaches into the margin (0:00 is wider than 0)
        left = axis.left - 6
        if axis.ticks:
            left = min(left, axis.at(axis.ticks[0]) - 2.8 * len(axis.labels[0]) - 4)
        return [
            *ticks,
            f'<text class="llm-x-title" x="{left:.0f}" y="{bottom + 12}" text-anchor="end">{axis.title}</text>',
        ]

    return _ranged(view, labels)


def elapsed(history: Sequence[dict[str, Any]]) -> Callable[[dict[str, Any]], float] | None:
    """A logged row's seconds since the run's first logged time: its own ``time``, else its step's
    (on the line between the timed rows around it); None when fewer than two times were logged."""
    timed = sorted((row["step"], row["time"]) for row in history if finite(row.get("step")) and finite(row.get("time")))
    if len({time for _, time in timed}) < 2:
        return None
    start = min(time for _, time in timed)
    steps, times = [step for step, _ in timed], [time - start for _, time in timed]

    def of(row: dict[str, Any]) -> float:
        time = row.get("time")
        return time - start if finite(time) else interpolated(row["step"], steps, times)

    return of
