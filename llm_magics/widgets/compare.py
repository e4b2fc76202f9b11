"""Comparing runs of a model: their loss curves overlaid and the configuration keys that differ.

Each part is a block under a heading of its own (``_heading``), so that a heading never runs into
the text or table after it."""

from __future__ import annotations

import html
from typing import TYPE_CHECKING, Any

from llm_magics.widgets.curve import curves_svg
from llm_magics.widgets.display import html_table, is_number, shown
from llm_magics.widgets.evaluation import score_names

if TYPE_CHECKING:
    from llm_magics.store.records import Store

_MISSING = object()


def config_diff(runs: list[dict[str, Any]]) -> list[tuple[str, list[Any]]]:
    """(key, value in each run) for every configuration key whose values are not all equal."""
    configs = [run.get("config", {}) for run in runs]
    keys = sorted({key for config in configs for key in config})
    rows = []
    for key in keys:
        values = [config.get(key, _MISSING) for config in configs]
        if any(value != values[0] for value in values[1:]):
            rows.append((key, ["(unset)" if v is _MISSING else v for v in values]))
    return rows


def runs_comparison_html(store: Store, run_ids: list[str]) -> str:
    """Overlaid train-loss curves of the runs and the table of their differing settings."""
    runs = [store.run(run_id) for run_id in run_ids]
    series = {
        run["_id"]: [(row.get("step"), row["loss"]) for row in store.run_metrics(run["_id"]) if "loss" in row]
        for run in runs
    }
    diff = config_diff(runs)
    table = (
        html_table(
            ["key", *[run["_id"] for run in runs]], [[key, *map(repr, values)] for key, values in diff], "llm-diff"
        )
        if diff
        else '<p class="llm-note" style="margin:2px 0"><i>the runs have the same configuration</i></p>'
    )
    names = ", ".join(html.escape(run["_id"]) for run in runs)
    return (
        f'<div class="llm-run-comparison">{_heading(f"train loss of runs {names}")}'
        f"<div>{curves_svg({k: v for k, v in series.items() if v})}</div>"
        f"{_scores_html(store, runs)}{_heading('configuration keys that differ')}{table}</div>"
    )


def score_deltas(store: Store, runs: list[dict[str, Any]]) -> list[tuple[str, list[Any]]]:
    """(metric, [(score, its difference from the first run's)] per run) of each generation metric,
    at each run's last checkpoint (None where a run was not scored by it)."""
    last = {}
    for run in runs:
        checkpoints = [c for c in store.list_checkpoints(run["model"]) if c["run"] == run["_id"]]
        last[run["_id"]] = checkpoints[-1] if checkpoints else {}
    rows = []
    for name in score_names(list(last.values())):
        values = [(last[run["_id"]].get("metrics") or {}).get(f"eval_{name}") for run in runs]
        first = values[0]
        rows.append((name, [(v, v - first if is_number(v) and is_number(first) else None) for v in values]))
    return rows


def _scores_html(store: Store, runs: list[dict[str, Any]]) -> str:
    rows = score_deltas(store, runs)
    if not rows:
        return ""
    cells = [
        [
            name,
            *(f"{shown(v, '.4g')}" + (f" ({d:+.4g})" if d is not None and i else "") for i, (v, d) in enumerate(pairs)),
        ]
        for name, pairs in rows
    ]
    table = html_table(["generation metric", *[run["_id"] for run in runs]], cells, "llm-score-deltas")
    return _heading("scores at each run's last checkpoint (difference from the first run)") + table


def _heading(text: str) -> str:
    """A part's heading, a block of its own (``text`` is HTML, escaped by the caller)."""
    return f'<div class="llm-heading" style="font-weight:bold;margin:6px 0 2px">{text}</div>'
