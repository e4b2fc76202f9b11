"""Taking a run out of its view: the chart as SVG or PNG, the chart's metrics as CSV.

The CSV travels in the link itself (a ``data:`` URL): the summary a notebook keeps gives it
without a kernel. The chart is saved as the page shows it at the click, by ``save_chart.js``, the
links' ``onclick``: it copies the drawn SVG, keeps what is visible (what the switches chose) with
the colours the theme gave it written in, and saves it, or draws it on a canvas for a PNG at
twice its size. It runs in trusted output (a notebook one has run or trusted), as any output
script does; nothing of a record is in it (the file's name is a ``data-`` attribute, escaped).
"""

from __future__ import annotations

import csv
import html
import io
import re
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import quote

from llm_magics.core.theme import MUTED

_SCRIPT = Path(__file__).with_name("save_chart.js")  # the links' onclick
_LINK = "margin-right:8px"


def metrics_csv(points: Sequence[dict[str, Any]]) -> str:
    """The chart's points as CSV: one row per logged step, a column per metric in the order they
    first came (step first, then ``elapsed_s``: seconds since the first logged time), empty where
    a step did not log one."""
    times = [point["time"] for point in points if isinstance(point.get("time"), int | float)]
    if times:
        start = min(times)
        points = [_elapsed(point, start) for point in points]
    columns: dict[str, None] = {"step": None, **({"elapsed_s": None} if times else {})}
    for point in points:
        columns.update(dict.fromkeys(point))
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([_safe(name) for name in columns])
    for point in points:
        writer.writerow([_cell(point.get(name)) for name in columns])
    return out.getvalue()


def _elapsed(point: dict[str, Any], start: float) -> dict[str, Any]:
    moment = point.get("time")
    rest = {name: value for name, value in point.items() if name != "time"}
    return {**rest, "elapsed_s": round(moment - start, 3)} if isinstance(moment, int | float) else rest


def _cell(value: Any) -> str:
    return repr(value) if isinstance(value, float) else str(value) if isinstance(value, int) else ""


def _safe(name: str) -> str:
    """A column name a spreadsheet shows as text, not as a formula (names come from records)."""
    return "'" + name if name[:1] in ("=", "+", "-", "@") else name


def file_stem(model: str, run_id: str) -> str:
    """``NAME-RUN``, with only the characters a file name can take everywhere."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{model}-{run_id}").strip("._") or "run"


def chart_links(stem: str) -> str:
    """The chart's SVG and PNG links, for a view whose chart is under the same
    ``.llm-downloadable`` or ``.llm-training-view``."""
    handler = _handler()
    return "".join(
        f'<a href="#" class="llm-download-{kind}" style="{_LINK}" data-kind="{kind}" '
        f'data-file="{html.escape(stem)}-chart.{kind}" onclick="{handler}" '
        f'title="the chart as shown, as {kind.upper()}">{kind.upper()}</a>'
        for kind in ("svg", "png")
    )


def downloads_html(points: Sequence[dict[str, Any]], stem: str) -> str:
    """The download line of a summary: the chart as SVG and PNG, its metrics as CSV."""
    if not points:
        return ""
    data = "data:text/csv;charset=utf-8," + quote(metrics_csv(points))
    csv_link = (
        f'<a class="llm-download-csv" style="{_LINK}" download="{html.escape(stem)}-metrics.csv" '
        f'href="{html.escape(data)}" title="every charted metric at each logged step">CSV</a>'
    )
    return f'<div class="llm-downloads" style="color:{MUTED}">download: {chart_links(stem)}{csv_link}</div>'


@cache
def _handler() -> str:
    """The script, as an attribute's value: its comment lines left out, escaped."""
    lines = [line for line in _SCRIPT.read_text().splitlines() if not line.lstrip().startswith("//")]
    return html.escape("\n".join(lines), quote=True)
