"""The numbers behind a chart's axes and lines: "nice" ticks, log-scale ticks, a clock's ticks,
smoothing, thinning.

Pure arithmetic, no drawing: ``curve`` turns these into SVG.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from typing import Any, TypeGuard

MAX_POINTS = 400  # a long run is thinned to about this many points per series
# a time axis' tick intervals, in seconds: the round ones of a clock, up to a day
_CLOCK = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400)


def nice_ticks(low: float, high: float, count: int = 5, whole: bool = False) -> list[float]:
    """Tick values 1, 2 or 5 times a power of ten apart, about ``count`` of them, the first at or
    below ``low`` and the last at or above ``high`` (the axis spans the ticks, so the data sits
    inside them). ``whole``: steps of at least 1 (training steps are whole numbers)."""
    if not high > low:
        pad = abs(low) * 0.1 or 1.0
        low, high = low - pad, high + pad
    raw = (high - low) / max(1, count)
    magnitude = 10.0 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw * (1 - 1e-9))
    if whole:
        step = max(step, 1.0)
    first, last = math.floor(low / step + 1e-9), math.ceil(high / step - 1e-9)
    return [_clean(i * step) for i in range(first, last + 1)]


def log_ticks(low: float, high: float) -> list[float]:
    """Ticks of a log axis for positive values: 1, 2 and 5 times the powers of ten over a short
    range, the powers of ten alone over a long one; the first at or below ``low``, the last at or
    above ``high``."""
    exponents = range(math.floor(math.log10(low)) - 1, math.ceil(math.log10(high)) + 2)
    ticks: list[float] = []
    for multiples in ((1, 2, 5), (1,)):
        candidates = [_clean(m * 10.0**e) for e in exponents for m in multiples]
        below = [c for c in candidates if c <= low * (1 + 1e-9)]
        above = [c for c in candidates if c >= high * (1 - 1e-9) and c > below[-1]]
        ticks = [c for c in candidates if below[-1] <= c <= above[0]]
        if len(ticks) <= 8:
            break
    return ticks


def tick_text(value: float, step: float | None = None) -> str:
    """A tick's label with the digits that tell it from its neighbours ``step`` away: 0.05, 2.5,
    12,000, 0.0001985, 2e-05; three significant digits on a log axis (no step)."""
    if step is None or value == 0:
        return f"{value:.3g}"
    if step >= 1e-3 and abs(value) < 1e9:
        decimals = max(0, -math.floor(math.log10(step) + 1e-9))
        return f"{value:,.{decimals}f}"
    digits = math.floor(math.log10(abs(value)) + 1e-9) - math.floor(math.log10(step) + 1e-9) + 1
    return f"{value:.{max(1, digits)}g}"


def time_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Ticks of a time axis, in seconds: a clock's round intervals apart (5 s, 30 s, 2 min, 15 min,
    1 h, 6 h, whole days), about ``count`` of them, the first at or below ``low`` and the last at or
    above ``high``; under a second apart, as ``nice_ticks``."""
    if not high > low:
        low, high = low - 1, high + 1
    raw = (high - low) / max(1, count)
    if raw < 1:
        return nice_ticks(low, high, count)
    step = next((float(s) for s in _CLOCK if s >= raw * (1 - 1e-9)), 86400.0 * math.ceil(raw / 86400))
    first, last = math.floor(low / step + 1e-9), math.ceil(high / step - 1e-9)
    return [i * step + 0.0 for i in range(first, last + 1)]


def clock_unit(ticks: Sequence[float]) -> str:
    """How a time axis' ticks read: "m:ss" under an hour; past it "h:mm", or "h:mm:ss" when they are
    under a minute apart; "s" (seconds as numbers) when they are under a second apart."""
    step = ticks[1] - ticks[0] if len(ticks) > 1 else 1.0
    if step < 1 - 1e-9:
        return "s"
    if max(abs(t) for t in ticks) < 3600:
        return "m:ss"
    return "h:mm" if step >= 60 else "h:mm:ss"


def clock_text(seconds: float, unit: str = "m:ss") -> str:
    """Seconds as a clock reads them in ``unit`` (``clock_unit``): 0:30, 12:00, 1:30 (h:mm), 1:00:05."""
    if unit == "s":
        return f"{seconds:g}"
    sign, total = "-" if seconds < 0 else "", round(abs(seconds))
    hours, rest = divmod(total, 3600)
    if unit == "m:ss":
        return f"{sign}{total // 60}:{total % 60:02d}"
    if unit == "h:mm":
        return f"{sign}{hours}:{rest // 60:02d}"
    return f"{sign}{hours}:{rest // 60:02d}:{rest % 60:02d}"


def interpolated(value: float, xs: Sequence[float], ys: Sequence[float]) -> float:
    """The y at ``value`` along points (``xs`` ascending, ``ys``): on the line between its two
    neighbours; the first or the last y beyond them."""
    i = bisect.bisect_left(xs, value)
    if i == 0:
        return ys[0]
    if i == len(xs):
        return ys[-1]
    span = xs[i] - xs[i - 1]
    return ys[i] if not span else ys[i - 1] + (value - xs[i - 1]) / span * (ys[i] - ys[i - 1])


def step_text(step: float) -> str:
    """A step as a hover label says it: 120, or 2.5 for a fraction."""
    return str(int(step)) if float(step).is_integer() else f"{step:g}"


def finite(value: Any) -> TypeGuard[int | float]:
    """Whether a logged value is a finite number (not a bool, a NaN or an infinity)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def smoothed(values: Sequence[float], weight: float) -> list[float]:
    """The exponential moving average TensorBoard draws, debiased so that the first points are not
    pulled towards zero: ``weight`` 0 leaves the values as they are, 0.99 smooths the most."""
    if not weight:
        return list(values)
    result, last = [], 0.0
    for count, value in enumerate(values, 1):
        last = last * weight + (1 - weight) * value
        result.append(last / (1 - weight**count))
    return result


def thinned(count: int, most: int = MAX_POINTS) -> list[int]:
    """Indices of at most about ``most`` evenly spaced points of ``count``, the last always among them."""
    indices = list(range(0, count, max(1, math.ceil(count / most))))
    if indices and indices[-1] != count - 1:
        indices.append(count - 1)
    return indices


def _clean(value: float) -> float:
    """A tick without the float noise of its multiplication (0.30000000000000004 is 0.3)."""
    return float(f"{value:.12g}") + 0.0  # + 0.0: no negative zero
