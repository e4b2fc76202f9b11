"""Tables as HTML (every cell escaped: it may come from data, prompts or model output) and as
aligned text.

The cell styles are inline, so a table reads the same in a widget and in a cell's HTML output
(whose stylesheet right-aligns cells and a widget's would not pad them), and colours come from the
theme (``core/theme``)."""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

from llm_magics.core.theme import BORDER

TABLE_STYLE = "border-collapse:collapse;font-size:12px;line-height:1.4"
CELL_STYLE = f"padding:2px 8px;border-bottom:1px solid {BORDER};text-align:left;vertical-align:top"
# a cell of free text (a prompt, an answer): its lines kept, wrapped at the column's edge, never cut
# (anywhere: a long word too); 10ch at least, or a long answer beside it squeezes a prompt to a letter a line
TEXT_CELL_STYLE = f"{CELL_STYLE};white-space:pre-wrap;overflow-wrap:anywhere;min-width:10ch"


def _cell(value: Any) -> str:
    return "" if value is None else str(value)


def html_table(columns: Sequence[str], rows: Sequence[Sequence[Any]], css_class: str = "") -> str:
    head = "".join(f'<th style="{CELL_STYLE}">{html.escape(c)}</th>' for c in columns)
    body = "".join(
        "<tr>" + "".join(f'<td style="{CELL_STYLE}">{html.escape(_cell(v))}</td>' for v in row) + "</tr>"
        for row in rows
    )
    return (
        f'<table class="{css_class}" style="{TABLE_STYLE}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'
    )


def text_table(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [list(columns), *[[_cell(v).replace("\n", " ") for v in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    lines = ["  ".join(value.ljust(width) for value, width in zip(row, widths, strict=True)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)
