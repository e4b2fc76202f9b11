"""Comparing runs of a model: their curves of any metric they logged, overlaid, and the
configuration keys that differ.

Each part is a block under a heading of its own (``_heading``), so that a heading never runs into
the text or table after it.

The metric is chosen in the view without a kernel or a script (a saved notebook keeps the
comparison as HTML): every metric's chart is drawn, and a row of radio buttons, whose state CSS
reads (``:has``), shows the chosen one. Each rendering's radio buttons are a group of their own (a
unique ``name``), so that two comparisons on one page do not switch each other.

Classes for tests and styling: ``.llm-metric-choices`` (the row of choices), ``.llm-pick`` (a
metric's radio button, its metric in ``value``), ``.llm-metric-chart`` (a metric's chart, its
metric in ``data-metric``; the one shown first has ``data-default``), ``.llm-not-logged`` (the runs
that did not log a metric).
"""

from __future__ import annotations

import html
import math
import uuid
from typing import TYPE_CHECKING, Any, TypeGuard

from llm_magics.core.theme import MUTED, PALETTE, ink
from llm_magics.widgets.curve import curves_svg
from llm_magics.widgets.display import html_table, is_number, shown
from llm_magics.widgets.evaluation import score_names

if TYPE_CHECKING:
    from llm_magics.store.records import Store

_MISSING = object()
Curves = dict[str, list[tuple[float, float]]]  # a metric's (step, value) points by run
# numbers a run logs that are not its model's metrics: where it is, counters, speed, the machine's load
_NOT_METRICS = {"run", "step", "epoch", "time", "num_tokens", "eval_num_tokens", "tokens_per_s", "samples_per_s"}
_NOT_METRICS |= {"total_flos", "ram", "cpu"}
_NOT_METRIC_PARTS = (("gpu_memory", "ram_", "cpu_"), ("_runtime", "_per_second"))  # prefixes, suffixes
# a metric as people read it, by its name without "eval_", in the order the choices list them
_LABELS = {
    "loss": "train loss",
    "learning_rate": "learning rate",
    "grad_norm": "gradient norm",
    "mean_token_accuracy": "token accuracy",
    "accuracy": "accuracy",
    "reward": "total reward",
    "rewards/chosen": "chosen reward",
    "rewards/rejected": "rejected reward",
    "rewards/margins": "reward margin",
    "rewards/accuracies": "pairs ranked right",
    "completions/mean_length": "completion length",
}


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


def metric_label(name: str) -> str:
    """A logged metric's name as people read it: "eval loss", "token accuracy", "eval rouge_l"."""
    base = name.removeprefix("eval_")
    text = _LABELS.get(base, base)
    return f"eval {text.removeprefix('train ')}" if name.startswith("eval_") else text


def logged_metrics(rows_by_run: dict[str, list[dict[str, Any]]]) -> dict[str, Curves]:
    """Every metric the runs logged as numbers, train loss first and each beside its evaluation's,
    as (step, value) points by run; a run that logged none of a metric is left out of its curves."""
    metrics: dict[str, Curves] = {}
    for run_id, rows in rows_by_run.items():
        for row in rows:
            step = row.get("step")
            if not _finite(step):
                continue
            for name, value in row.items():
                if _finite(value) and _is_metric(name):
                    metrics.setdefault(name, {}).setdefault(run_id, []).append((step, value))
    return {name: metrics[name] for name in sorted(metrics, key=_order)}


def runs_comparison_html(store: Store, run_ids: list[str]) -> str:
    """The runs' curves of each metric they logged, overlaid (a choice shows one, train loss
    first), their scores at their last checkpoints and the table of their differing settings."""
    runs = [store.run(run_id) for run_id in run_ids]
    diff = config_diff(runs)
    table = (
        html_table(
            ["key", *[run["_id"] for run in runs]], [[key, *map(repr, values)] for key, values in diff], "llm-diff"
        )
        if diff
        else '<p class="llm-note" style="margin:2px 0"><i>the runs have the same configuration</i></p>'
    )
    names = ", ".join(html.escape(run["_id"]) for run in runs)
    metrics = logged_metrics({run["_id"]: store.run_metrics(run["_id"]) for run in runs})
    return (
        f'<div class="llm-run-comparison">{_heading(f"metrics of runs {names}")}'
        f"{metric_charts_html(metrics, [run['_id'] for run in runs])}"
        f"{_scores_html(store, runs)}{_heading('configuration keys that differ')}{table}</div>"
    )


def metric_charts_html(metrics: dict[str, Curves], run_ids: list[str]) -> str:
    """A chart per metric, each run in the same colour in all, and the radio buttons that choose
    the one shown (train loss when logged, else the first)."""
    if not metrics:
        return _note("the runs logged no metrics yet")
    colors = {run_id: ink(PALETTE[i % len(PALETTE)]) for i, run_id in enumerate(run_ids)}
    default = "loss" if "loss" in metrics else next(iter(metrics))
    group = f"llm-metric-{uuid.uuid4().hex}"
    choices, charts = [], []
    for i, (name, curves) in enumerate(metrics.items()):
        first, metric = name == default, html.escape(name)
        choices.append(
            f'<label title="{metric}"><input type="radio" class="llm-pick llm-pick-{i}" name="{group}" '
            f'value="{metric}"{" checked" if first else ""}> {html.escape(metric_label(name))}</label>'
        )
        missing = [run_id for run_id in run_ids if run_id not in curves]
        said = _note(f"not logged by {_runs(missing)}", "llm-not-logged") if missing else ""
        chart = curves_svg(
            {run_id: curves[run_id] for run_id in run_ids if run_id in curves}, colors, title=metric_label(name)
        )
        charts.append(
            f'<div class="llm-metric-chart llm-metric-{i}" data-metric="{metric}"{" data-default" if first else ""}>'
            f"{said}{chart}</div>"
        )
    row = f'<div class="llm-metric-choices" role="radiogroup" aria-label="metric">{"".join(choices)}</div>'
    return f"{_style(len(metrics))}{row}{''.join(charts)}"


def _style(count: int) -> str:
    """Shows the chart whose radio button is checked; where a browser lacks ``:has``, the first."""
    chosen = ",".join(f".llm-run-comparison:has(.llm-pick-{i}:checked) .llm-metric-{i}" for i in range(count))
    return (
        f"<style>.llm-metric-chart{{display:none}}{chosen}{{display:block}}"
        "@supports not selector(:has(*)){.llm-metric-chart[data-default]{display:block}}"
        ".llm-metric-choices{display:flex;flex-wrap:wrap;gap:2px 14px;font-size:12px;margin:2px 0 4px}"
        ".llm-metric-choices label:has(:checked){font-weight:bold}</style>"
    )


def _runs(run_ids: list[str]) -> str:
    return ("run " if len(run_ids) == 1 else "runs ") + ", ".join(run_ids)


def _note(text: str, css: str = "") -> str:
    """A line in the muted colour (``text`` is plain text: it is escaped here)."""
    return f'<p class="llm-note {css}" style="margin:2px 0;color:{MUTED}"><i>{html.escape(text)}</i></p>'


def _is_metric(name: str) -> bool:
    prefixes, suffixes = _NOT_METRIC_PARTS
    return name not in _NOT_METRICS and not name.startswith(prefixes) and not name.endswith(suffixes)


def _order(name: str) -> tuple[int, str, bool]:
    """Known metrics first in their order, then the rest by name; each beside its evaluation's."""
    base = name.removeprefix("eval_")
    known = list(_LABELS)
    return (known.index(base) if base in known else len(known), base, name.startswith("eval_"))


def _finite(value: Any) -> TypeGuard[int | float]:
    return is_number(value) and math.isfinite(value)


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
