"""Probe answers as HTML: one checkpoint's answers (the checkpoint browser), and the grid of probe
prompts by steps that shows a run's answers change over training (the live view and the summary).

Prompts and answers come from data and model output: everything is escaped. Their cells are text
cells (``core/tables``): left-aligned, padded, wrapped at the column's edge rather than cut.
"""

from __future__ import annotations

import html
from typing import Any

from llm_magics.core.tables import TABLE_STYLE, TEXT_CELL_STYLE
from llm_magics.widgets.display import NOTHING, shown

GRID_STEPS = 8  # the grid's step columns at most: the first step, then the newest ones
ELIDED = object()  # the column of the steps left out
_CELL = TEXT_CELL_STYLE


def probes_html(probes: list[dict[str, Any]]) -> str:
    """A table of probe answers, one row per (step, prompt)."""
    if not probes:
        return ""
    rows = "".join(
        f'<tr><td style="{_CELL}">{html.escape(str(p.get("step", "")))}</td>'
        f'<td style="{_CELL}"><code>{html.escape(p["prompt"])}</code></td>'
        f'<td style="{_CELL}"><code>{html.escape(p["answer"])}</code></td></tr>'
        for p in probes
    )
    head = "".join(f'<th style="{_CELL}">{name}</th>' for name in ("step", "probe prompt", "answer"))
    return (
        f'<table class="llm-probes" style="{TABLE_STYLE}"><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>'
    )


def grid_steps(steps: list[Any], most: int = GRID_STEPS) -> list[Any]:
    """The step columns the grid shows: all of them, or the first, ``ELIDED`` (the steps left
    out) and the newest ``most - 1``."""
    return steps if len(steps) <= most else [steps[0], ELIDED, *steps[1 - most :]]


def probe_grid_html(probes: list[dict[str, Any]]) -> str:
    """A run's probe answers as a grid: a row per probe prompt, a column per probed step (in the
    order they were probed, the newest last), each cell that step's answer."""
    if not probes:
        return ""
    steps = list(dict.fromkeys(p["step"] for p in probes))
    prompts = list(dict.fromkeys(shown(p.get("prompt")) for p in probes))
    answers = {(p["step"], shown(p.get("prompt"))): shown(p.get("answer")) for p in probes}
    columns = grid_steps(steps)
    left_out = len(steps) - len(columns) + 1
    head = "".join(
        f'<th class="llm-elided" style="{_CELL}" title="{left_out} steps not shown">…</th>'
        if step is ELIDED
        else f'<th class="llm-step" style="{_CELL}">step {html.escape(shown(step))}</th>'
        for step in columns
    )
    rows = "".join(
        f'<tr><th style="{_CELL}"><code>{html.escape(prompt)}</code></th>'
        + "".join(
            f'<td style="{_CELL}">…</td>'
            if step is ELIDED
            else f'<td style="{_CELL}"><code>{html.escape(answers.get((step, prompt), NOTHING))}</code></td>'
            for step in columns
        )
        + "</tr>"
        for prompt in prompts
    )
    return (
        f'<table class="llm-probe-grid" style="{TABLE_STYLE}">'
        f'<thead><tr><th style="{_CELL}">probe prompt</th>{head}</tr></thead><tbody>{rows}</tbody></table>'
    )
