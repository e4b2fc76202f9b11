"""What a run's view says around its numbers: the configuration it trains with, and for a run that
trains in a process of its own, the newest lines of its log.

Both come from records others may write to: every value is escaped.
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING

from llm_magics.core.theme import BORDER, MUTED
from llm_magics.runs import logs
from llm_magics.runs.run import DETACHED
from llm_magics.store.records import FINAL

if TYPE_CHECKING:
    from llm_magics.runs.run import RunState

TAIL_LINES = 6  # of a detached run's log, under its live view
_CELL = "text-align:left;padding:0 8px 0 0;vertical-align:top"
_PRE = f"max-height:9em;overflow:auto;margin:2px 0;padding:4px;border:1px solid {BORDER};white-space:pre-wrap"


def config_html(state: RunState, open_: bool = False) -> str:
    """The run's configuration as a table that unfolds: the keys set away from their defaults
    first (in bold), then the rest in muted text. Empty when the run's record keeps none."""
    config = state.config
    if not config:
        return ""
    changed = [key for key in state.config_set if key in config]
    rest = sorted(key for key in config if key not in changed)
    rows = [_row(key, config[key], True) for key in changed] + [_row(key, config[key], False) for key in rest]
    names = ", ".join(changed[:6]) + (", …" if len(changed) > 6 else "")
    summary = f"configuration: {len(changed)} key{'s' * (len(changed) != 1)} set" + (f" ({names})" if changed else "")
    return (
        f'<details class="llm-config"{" open" * open_}><summary>{html.escape(summary)}</summary>'
        f'<div style="max-height:18em;overflow:auto"><table>{"".join(rows)}</table></div></details>'
    )


def _row(key: str, value: object, changed: bool) -> str:
    style = "" if changed else f' style="color:{MUTED}"'
    name = f"<b>{html.escape(key)}</b>" if changed else html.escape(key)
    kind = "set" if changed else "default"
    cells = f'<th style="{_CELL}">{name}</th><td style="{_CELL}">{html.escape(repr(value))}</td>'
    return f'<tr class="llm-config-{kind}"{style}>{cells}</tr>'


def log_tail_html(state: RunState, lines: int = TAIL_LINES) -> str:
    """The newest lines of a detached run's log while it trains (``%llm_logs`` has the rest);
    empty for a run in this kernel, or one that has ended (its summary says how it ended)."""
    if state.backend not in DETACHED or state.status in FINAL or not state.log:
        return ""
    tail = logs.tail(state.log, lines)
    if not tail:
        return ""
    command = f"%llm_logs {state.run_id}"
    return (
        f'<div class="llm-log-tail"><div style="color:{MUTED}">its log, newest lines '
        f"(<code>{html.escape(command)}</code> for all):</div>"
        f'<pre style="{_PRE}">{html.escape(chr(10).join(tail))}</pre></div>'
    )
