"""The loss curve as inline SVG: drawn live in the view and kept in the static summary."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

_COLORS = {"loss": "#1f77b4", "eval_loss": "#ff7f0e"}
_PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b")
_MAX_POINTS = 400  # a long run is thinned to this many points per series


def loss_svg(history: Sequence[dict[str, Any]], width: int = 440, height: int = 170) -> str:
    """Train and eval loss against the step, as an SVG element (numbers only, nothing to escape)."""
    series = {
        name: [(row["step"], row[name]) for row in history if _finite(row.get(name)) and _finite(row.get("step"))]
        for name in ("loss", "eval_loss")
    }
    return curves_svg({k: v for k, v in series.items() if v}, _COLORS, width, height)


def curves_svg(
    series: dict[str, list[tuple[Any, Any]]],
    colors: dict[str, str] | None = None,
    width: int = 440,
    height: int = 170,
) -> str:
    """Several named (x, y) series on shared axes, with a legend; ``colors`` maps names to colors.
    Points that are not two finite numbers (a damaged or hostile record) are left out."""
    series = {name: [(x, y) for x, y in values if _finite(x) and _finite(y)] for name, values in series.items()}
    series = {name: values for name, values in series.items() if values}
    points = [point for values in series.values() for point in values]
    if not points:
        return (
            f'<svg class="llm-curve" width="{width}" height="{height}" role="img" aria-label="loss curve">'
            f'<text x="{width / 2}" y="{height / 2}" text-anchor="middle" fill="#888" font-size="12">'
            "the loss curve appears with the first logged step</text></svg>"
        )
    left, right, top, bottom = 48, 10, 10, 28
    x_low, x_high = min(p[0] for p in points), max(p[0] for p in points)
    y_low, y_high = min(p[1] for p in points), max(p[1] for p in points)
    x_span, y_span = (x_high - x_low) or 1, (y_high - y_low) or abs(y_high) or 1

    def at(x: float, y: float) -> str:
        px = left + (x - x_low) / x_span * (width - left - right)
        py = top + (y_high - y) / y_span * (height - top - bottom)
        return f"{px:.1f},{py:.1f}"

    parts = [
        f'<svg class="llm-curve" width="{width}" height="{height}" role="img" aria-label="loss curve" '
        'font-family="sans-serif" font-size="10">',
        f'<line x1="{left}" y1="{height - bottom}" x2="{width - right}" y2="{height - bottom}" stroke="#999"/>',
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{height - bottom}" stroke="#999"/>',
        f'<text x="{left - 4}" y="{top + 8}" text-anchor="end" fill="#555">{y_high:.3g}</text>',
        f'<text x="{left - 4}" y="{height - bottom}" text-anchor="end" fill="#555">{y_low:.3g}</text>',
        f'<text x="{left}" y="{height - 10}" fill="#555">step {x_low:g}</text>',
        f'<text x="{width - right}" y="{height - 10}" text-anchor="end" fill="#555">{x_high:g}</text>',
    ]
    colors = colors or {}
    for i, (name, values) in enumerate(series.items()):
        color = colors.get(name, _PALETTE[i % len(_PALETTE)])
        thinned = values[:: max(1, math.ceil(len(values) / _MAX_POINTS))]
        if thinned[-1] != values[-1]:
            thinned.append(values[-1])
        path = " ".join(at(x, y) for x, y in thinned)
        parts.append(f'<polyline class="llm-series" fill="none" stroke="{color}" stroke-width="1.5" points="{path}"/>')
        if len(thinned) == 1:
            parts.append(
                f'<circle cx="{at(*thinned[0]).split(",")[0]}" cy="{at(*thinned[0]).split(",")[1]}" '
                f'r="2.5" fill="{color}"/>'
            )
        parts.append(
            f'<text x="{width - right - 4}" y="{top + 10 + 12 * i}" text-anchor="end" fill="{color}">'
            f"{_label(name)}</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


def _label(name: str) -> str:
    import html

    return html.escape({"loss": "train loss", "eval_loss": "eval loss"}.get(name, name))


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
