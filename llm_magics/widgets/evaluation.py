"""Evaluation by generation in the views (SPEC §12): the progress bar of ``%llm_eval``,
and the examples view, a checkpoint's held-out prompts with reference and answer, worst first, or
two checkpoints side by side with the answers that differ marked.

Prompts, references and answers come from data and model output: everything is escaped.
"""

from __future__ import annotations

import html
from typing import Any

from llm_magics.core.tables import TABLE_STYLE, TEXT_CELL_STYLE
from llm_magics.core.theme import MUTED, tint
from llm_magics.widgets.display import is_number, shown

_DIFFERS = f"background:{tint('warn')}"


def score_names(records: list[dict[str, Any]]) -> list[str]:
    """The metrics scored on any of these checkpoints, in the order they were first scored."""
    names: dict[str, None] = {}
    for record in records:
        evaluations = record.get("evaluations")
        for evaluation in evaluations.values() if isinstance(evaluations, dict) else []:
            scores = evaluation.get("scores") if isinstance(evaluation, dict) else None
            names.update(dict.fromkeys(k for k in scores or {} if isinstance(k, str)))
    return list(names)


class EvalProgress:
    """A progress bar for ``%llm_eval``: examples scored of the checkpoint being scored."""

    def __init__(self) -> None:
        import ipywidgets as w

        self.bar = w.IntProgress(value=0, min=0, max=1, description="scoring")
        self.label = w.HTML()
        self.widget = w.HBox([self.bar, self.label])
        self.widget.add_class("llm-eval-progress")

    def __call__(self, checkpoint: str, done: int, total: int) -> None:
        self.bar.max, self.bar.value = max(1, total), done
        self.label.value = f"{html.escape(checkpoint)}: {done}/{total} examples"

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)


def examples_html(columns: dict[str, list[dict[str, Any]]], metric: str | None = None) -> str:
    """The examples view: for one checkpoint (``columns``: label -> its scored examples) its
    held-out prompts, references and answers with their scores, worst first by ``metric`` (default:
    the first); for two, side by side, worst first by the first one's score, the answers that
    differ marked."""
    if not columns:
        return ""
    labels = list(columns)
    first = columns[labels[0]]
    metric = metric or next((k for r in first for k in r.get("scores") or {}), None)
    others = {label: {r.get("index"): r for r in columns[label]} for label in labels[1:]}
    rows = sorted(first, key=lambda r: _score((r.get("scores") or {}).get(metric)))
    head = "".join(f'<th style="{TEXT_CELL_STYLE}">{html.escape(h)}</th>' for h in ("prompt", "reference"))
    head += "".join(f'<th style="{TEXT_CELL_STYLE}">{html.escape(label)}</th>' for label in labels)
    body = "".join(_row(r, [others[label].get(r.get("index")) for label in labels[1:]], metric) for r in rows)
    title = f"worst first by {html.escape(metric)}" if metric else ""
    return (
        f'<div class="llm-examples"><div style="font-size:12px;color:{MUTED}">{title}</div>'
        f'<table style="{TABLE_STYLE}">'
        f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>"
    )


def _score(value: Any) -> float:
    return float(value) if is_number(value) else float("-inf")


def _row(first: dict[str, Any], others: list[dict[str, Any] | None], metric: str | None) -> str:
    prompt = first.get("prompt")
    shown_prompt = (
        prompt
        if isinstance(prompt, str)
        else "\n".join(f"{m.get('role')}: {m.get('content')}" for m in prompt or [] if isinstance(m, dict))
    )
    answers = [first, *others]
    differs = len({shown(a.get("prediction")) for a in answers if a is not None}) > 1
    cells = [f'<td style="{TEXT_CELL_STYLE}"><code>{html.escape(shown_prompt)}</code></td>']
    cells.append(f'<td style="{TEXT_CELL_STYLE}"><code>{html.escape(shown(first.get("reference")))}</code></td>')
    for answer in answers:
        style = TEXT_CELL_STYLE + (";" + _DIFFERS if differs else "")
        if answer is None:
            cells.append(f'<td style="{style}">—</td>')
            continue
        scores = answer.get("scores") or {}
        marks = " ".join(f"{html.escape(str(k))} {html.escape(shown(v, '.3g'))}" for k, v in scores.items())
        css = ' class="llm-differs"' if differs else ""
        cells.append(
            f'<td style="{style}"{css}><code>{html.escape(shown(answer.get("prediction")))}</code>'
            f'<div style="color:{MUTED};font-size:11px">{marks}</div></td>'
        )
    return f"<tr>{''.join(cells)}</tr>"
