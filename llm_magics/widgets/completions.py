"""GRPO's sampled completions as HTML, beside the probe grid (SPEC §11): the newest logging step's
prompts and completions with each reward function's value, so a reward that is easy to game shows
in the text, not only in the curve.

Prompts and completions are model output and data: everything is escaped.
"""

from __future__ import annotations

import html
from collections.abc import Iterable
from typing import Any

from llm_magics.core.tables import TABLE_STYLE, TEXT_CELL_STYLE
from llm_magics.widgets.display import NOTHING, shown

SHOWN = 8  # completions shown of the newest step


def completions_html(completions: Iterable[dict[str, Any]], most: int = SHOWN) -> str:
    """The newest step's completions: a row each, a column per reward function."""
    rows = [row for row in completions if isinstance(row, dict)]
    if not rows:
        return ""
    step = rows[-1].get("step")
    newest = [row for row in rows if row.get("step") == step][:most]
    names = list(dict.fromkeys(name for row in newest for name in _rewards(row)))
    head = "".join(f'<th style="{TEXT_CELL_STYLE}">{html.escape(name)}</th>' for name in names)
    body = "".join(
        f'<tr><td style="{TEXT_CELL_STYLE}"><code>{html.escape(_text(row.get("prompt")))}</code></td>'
        f'<td style="{TEXT_CELL_STYLE}"><code>{html.escape(_text(row.get("completion")))}</code></td>'
        + "".join(
            f'<td style="{TEXT_CELL_STYLE}">{html.escape(_value(_rewards(row).get(name)))}</td>' for name in names
        )
        + "</tr>"
        for row in newest
    )
    return (
        f'<div class="llm-completions"><b>Sampled completions</b> at step {html.escape(shown(step))}'
        f'<table style="{TABLE_STYLE}">'
        f'<thead><tr><th style="{TEXT_CELL_STYLE}">prompt</th>'
        f'<th style="{TEXT_CELL_STYLE}">completion</th>{head}</tr></thead>'
        f"<tbody>{body}</tbody></table></div>"
    )


def _rewards(row: dict[str, Any]) -> dict[str, Any]:
    rewards = row.get("rewards")
    return rewards if isinstance(rewards, dict) else {}


def _text(value: Any) -> str:
    """A prompt or completion: text, or a chat's turns one per line."""
    if isinstance(value, list):
        return "\n".join(f"{m.get('role')}: {m.get('content')}" for m in value if isinstance(m, dict))
    return shown(value)


def _value(value: Any) -> str:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return f"{value:.3g}"
    return NOTHING
