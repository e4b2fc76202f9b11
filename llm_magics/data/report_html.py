"""The data report as HTML: the findings, the fields, the token-length histogram with the share cut
at max_length, and the first documents with their trained tokens marked (the label mask).

Everything shown from the documents is escaped; colours are the theme's (``core/theme``).
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING

from llm_magics.core.tables import html_table
from llm_magics.core.theme import MUTED, TEXT, ink, tint

if TYPE_CHECKING:
    from llm_magics.data.report import DataReport

_BINS = 24
_TRAINED = f"background:{tint('success', 30)};color:{TEXT}"
_MASKED = f"color:{MUTED}"


def report_html(report: DataReport) -> str:
    title = f"<b>{html.escape(report.collection)}</b>: {report.count:,} documents"
    if report.detected is not None:
        keys = html.escape(report.detected.cell()).replace("\n", "<br>")
        title += f" · {html.escape(report.detected.name)} · train on it with <code>{keys}</code>"
    findings = [[f.what, f"{f.count:,}", ", ".join(f.ids)] for f in report.findings if f.count]
    found = (
        html_table(["finding", "documents", "e.g. _id"], findings, "llm-findings")
        if findings
        else "<i>no problems found</i>"
    )
    fields = [[name, f"{info['present']:,}", f"{info['empty']:,}", ", ".join(info["types"])] for name, info in
              report.fields.items()]  # fmt: skip
    parts = [title, found, html_table(["field", "present", "empty", "types"], fields, "llm-fields")]
    if report.lengths:
        parts.append(histogram_svg(report.lengths, report.max_length))
        share = f"{report.trained_share:.0%}" if report.trained_share is not None else "—"
        cut = f"{report.truncated / len(report.lengths):.1%}" if report.max_length else "—"
        parts.append(f"<div>trained tokens: {share} of the tokens kept · cut at max_length: {cut}</div>")
    if report.previews:
        parts.append("<b>what trains</b> (green: trained tokens; grey: masked)")
        parts += [_preview(pieces) for pieces in report.previews]
    return f'<div class="llm-data-report" style="font-size:12px">{"".join(f"<div>{p}</div>" for p in parts)}</div>'


def histogram_svg(lengths: list[int], max_length: int | None, width: int = 420, height: int = 120) -> str:
    """Token lengths in bins, the bins past ``max_length`` in red and a line where it cuts."""
    top = max(max(lengths), max_length or 0, 1)
    size = max(1, -(-top // _BINS))
    counts = [0] * (top // size + 1)
    for n in lengths:
        counts[n // size] += 1
    most, left, bottom = max(counts), 30, height - 18
    bar = (width - left) / len(counts)
    bars = []
    for i, c in enumerate(counts):
        h = (bottom - 6) * c / most if most else 0
        over = max_length is not None and i * size >= max_length
        bars.append(
            f'<rect class="llm-bin{" llm-over" if over else ""}" x="{left + i * bar:.1f}" y="{bottom - h:.1f}" '
            f'width="{max(bar - 1, 1):.1f}" height="{h:.1f}" style="fill:{ink("error") if over else ink("brand")}">'
            f"<title>{i * size}-{(i + 1) * size - 1} tokens: {c}</title></rect>"
        )
    cut = ""
    if max_length is not None:
        x = left + max_length / size * bar
        cut = (
            f'<line class="llm-max-length" x1="{x:.1f}" x2="{x:.1f}" y1="4" y2="{bottom}" '
            f'style="stroke:{ink("error")}" stroke-dasharray="3,2"/>'
            f'<text x="{x + 3:.1f}" y="12" style="fill:{ink("error")}">max_length {max_length}</text>'
        )
    axis = (
        f'<text x="{left}" y="{height - 4}" style="fill:{MUTED}">0</text>'
        f'<text x="{width - 4}" y="{height - 4}" text-anchor="end" style="fill:{MUTED}">{top} tokens</text>'
        f'<text x="2" y="12" style="fill:{MUTED}">{most}</text>'
    )
    return (
        f'<svg class="llm-length-histogram" width="{width}" height="{height}" style="font-size:10px">'
        f"{''.join(bars)}{cut}{axis}</svg>"
    )


def _preview(pieces: list[tuple[str, bool]]) -> str:
    spans = "".join(
        f'<span class="{"llm-trained" if trained else "llm-masked"}" style="{_TRAINED if trained else _MASKED}">'
        f"{html.escape(text)}</span>"
        for text, trained in pieces
    )
    return f'<pre class="llm-label-mask" style="white-space:pre-wrap;margin:4px 0">{spans}</pre>'
