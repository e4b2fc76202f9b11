"""Static displays: tables, checkpoint comparisons and the dry-run report.

Each has an HTML form (every value escaped: it may come from data, prompts or model output) and a
plain-text form.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, TypeGuard

from llm_magics.config import fast_paths
from llm_magics.config.sweep import described
from llm_magics.core.tables import CELL_STYLE, TABLE_STYLE, html_table, text_table

if TYPE_CHECKING:
    from llm_magics.models.estimate import Estimate
    from llm_magics.training.launch import Plan

NOTHING = "—"


def _size(gib: float) -> str:
    return (
        f"{gib:.2f} GiB" if gib >= 1 else f"{gib * 1024:.1f} MiB" if gib * 1024 >= 0.1 else f"{gib * 1024**2:.0f} KiB"
    )


def is_number(value: Any) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


def shown(value: Any, spec: str = "") -> str:
    """A value from a record as text: a number formatted with ``spec``, nothing as a dash, anything
    else as its text. Records come from a database others may write to: callers that build HTML
    escape what this returns."""
    if value is None:
        return NOTHING
    return format(value, spec) if spec and is_number(value) else str(value)


def clock(seconds: float | None) -> str:
    """A duration as MM:SS or H:MM:SS."""
    if not is_number(seconds):
        return NOTHING
    minutes, seconds = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes:02d}:{seconds:02d}"


def shown_time(value: Any) -> str:
    """A record's timestamp (UTC) to the second, or its text if it is not one."""
    import datetime as dt

    return value.strftime("%Y-%m-%d %H:%M:%S") if isinstance(value, dt.datetime) else shown(value)


RUN_COLUMNS = ["name", "run", "status", "backend", "steps", "last loss", "ETA", "started (UTC)", "duration"]


def run_row(run: dict[str, Any]) -> list[tuple[str, Any]]:
    """A run record's cells under ``RUN_COLUMNS``: (text, the value it sorts by). The status of an
    active run whose step stopped moving says for how long; a sweep's trial says which it is."""
    import datetime as dt

    from llm_magics.runs.follow import eta_of, stalled_for

    step, total = run.get("step", 0), run.get("total_steps")
    loss, duration, left, stalled = run.get("last_loss"), run.get("duration"), eta_of(run), stalled_for(run)
    started = run.get("started")
    return [
        (shown(run.get("model")), run.get("model")),
        (shown(run.get("_id")) + _trial(run), run.get("_id")),
        (shown(run.get("status")) if stalled is None else f"stalled ({clock(stalled)} without a step)", None),
        (shown(run.get("backend")), None),
        (shown(step) + (f"/{shown(total)}" if total else ""), step if is_number(step) else None),
        ("" if loss is None else shown(loss, ".4g"), loss if is_number(loss) else None),
        ("" if left is None else clock(left), left),
        (shown_time(started), started.isoformat() if isinstance(started, dt.datetime) else None),
        ("" if duration is None else f"{shown(duration, '.1f')} s", duration if is_number(duration) else None),
    ]


def _trial(run: dict[str, Any]) -> str:
    """`` · trial 3 · learning_rate=0.001, lora_r=8`` for a sweep's trial: its number and swept
    values (the rest of its configuration is the other trials')."""
    values, number = run.get("trial"), run.get("trial_number")
    if not run.get("sweep") or not isinstance(values, dict):
        return ""
    return (f" · trial {number}" if is_number(number) else "") + (f" · {described(values)}" if values else "")


class Table:
    """Rows under named columns, shown as an HTML table or aligned text."""

    def __init__(self, columns: Sequence[str], rows: Sequence[Sequence[Any]], title: str = "", css_class: str = ""):
        self.columns, self.rows, self.title, self.css_class = list(columns), [list(r) for r in rows], title, css_class

    def __repr__(self) -> str:
        body = text_table(self.columns, self.rows) if self.rows else "(none)"
        return f"{self.title}\n{body}" if self.title else body

    def _repr_html_(self) -> str:
        title = f'<div class="llm-heading"><b>{html.escape(self.title)}</b></div>' if self.title else ""
        body = (
            html_table(self.columns, self.rows, self.css_class)
            if self.rows
            else '<p class="llm-note"><i>(none)</i></p>'
        )
        return title + body

    def __len__(self) -> int:
        return len(self.rows)


class Comparison:
    """Answers of several checkpoints to the same prompts, side by side."""

    def __init__(self, model: str, prompts: list[str], answers: dict[str, list[str]]):
        self.model, self.prompts, self.answers = model, prompts, answers

    def _table(self) -> Table:
        columns = ["prompt", *(f"{self.model}@{ref}" for ref in self.answers)]
        rows = [[prompt, *(answers[i] for answers in self.answers.values())] for i, prompt in enumerate(self.prompts)]
        return Table(columns, rows, css_class="llm-comparison")

    def __repr__(self) -> str:
        return repr(self._table())

    def _repr_html_(self) -> str:
        return self._table()._repr_html_()


class DryRun:
    """What a run would do: the resolved configuration, the data, the parameters, the memory."""

    def __init__(self, plan: Plan, estimate: Estimate, tokenizer: Any, report: Any = None):
        self.plan, self.estimate, self.tokenizer = plan, estimate, tokenizer
        self.report = report  # the data report of the cell's own selection (SFT), or None

    def facts(self) -> list[tuple[str, str]]:
        plan, counts, est = self.plan, self.plan.data.counts, self.estimate
        quantized = f"{plan.base.bits}-bit" if plan.base.bits else "full precision"
        facts = [
            ("model", f"{plan.name} ← {plan.base.path} ({quantized})"),
            ("method", plan.config.method),
            ("backend", plan.where.backend),
            ("data", f"collection '{plan.data.selection.collection}' as {plan.data.format.kind}"),
            ("documents", f"{counts['train_docs']} train · {counts['valid_docs']} valid"),
        ]
        if "train_tokens" in counts:  # SFT's tokenized data (the other methods' trainers tokenize)
            share = counts["trained_tokens"] / counts["train_tokens"] if counts["train_tokens"] else 0
            facts.append(
                (
                    "tokens",
                    f"{counts['train_tokens']} train, {counts['trained_tokens']} trained ({share:.0%})"
                    + (" · tokenized by an earlier run (the cache)" if counts.get("from_cache") else ""),
                )
            )
        if plan.rewards:
            facts.append(("reward functions", ", ".join(reward.name for reward in plan.rewards)))
        facts.append(("fast paths", fast_paths.chosen(plan.config)))
        return [
            *facts,
            ("parameters", f"{est.parameters:,} · trainable {est.trainable:,} ({est.trainable / est.parameters:.2%})"),
            (
                "memory (estimate)",
                f"≈ {_size(est.total_gib)}: weights {_size(est.weights_gib)} + training state "
                f"{_size(est.training_state_gib)} + activations {_size(est.activations_gib)} + the trainer's own "
                f"{_size(est.overhead_gib)}",
            ),
        ]

    def sections(self) -> list[tuple[str, list[tuple[str, bool]]]]:
        """What training sees of the first example, as titled (text, trained) pieces."""
        method = self.plan.config.method
        if method == "sft":
            return [("first example", self.example())]
        from llm_magics.widgets.method_example import sections

        return sections(method, self.plan.data.example, self.tokenizer, self.plan.tried)

    def example(self) -> list[tuple[str, bool]]:
        """The first example as (text, trained) pieces: consecutive tokens grouped."""
        example = self.plan.data.example
        pieces: list[tuple[str, bool]] = []
        group: list[int] = []
        trained = None
        labels = example.get("labels")
        marks = [label != -100 for label in labels] if isinstance(labels, list) else [True] * len(example["input_ids"])
        for token, mark in zip(example.get("input_ids", []), marks, strict=True):
            if trained is not None and mark != trained:
                pieces.append((self.tokenizer.decode(group), trained))
                group = []
            group.append(token)
            trained = mark
        if group:
            pieces.append((self.tokenizer.decode(group), bool(trained)))
        return pieces

    def config_rows(self) -> list[tuple[str, Any]]:
        return sorted(self.plan.config.changes().items())

    def __repr__(self) -> str:
        lines = ["dry run: nothing was trained or written", *(f"{k}: {v}" for k, v in self.facts())]
        for title, pieces in self.sections():
            lines.append(f"{title} (trained part in [[ ]]): " + "".join(f"[[{t}]]" if m else t for t, m in pieces))
        lines.append("configuration (differs from the defaults):")
        lines += [f"  {key}: {value!r}" for key, value in self.config_rows()]
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        facts = "".join(
            f"<tr><th style='{CELL_STYLE}'>{html.escape(k)}</th><td style='{CELL_STYLE}'>{html.escape(v)}</td></tr>"
            for k, v in self.facts()
        )
        examples = "".join(
            f"<div>{html.escape(title)} (<mark>highlighted</mark>: trained):<pre style='white-space:pre-wrap'>"
            + "".join(
                f'<mark class="llm-trained">{html.escape(text)}</mark>' if trained else html.escape(text)
                for text, trained in pieces
            )
            + "</pre></div>"
            for title, pieces in self.sections()
        )
        config = html_table(["key", "value"], [(k, repr(v)) for k, v in self.config_rows()], "llm-config")
        return (
            '<div class="llm-dry-run"><b>Dry run</b>: nothing was trained or written.'
            f'<table style="{TABLE_STYLE}">{facts}</table>'
            f"{examples}<details><summary>Configuration (keys that differ from the defaults)</summary>"
            f"{config}</details>{self._report_html()}</div>"
        )

    def _report_html(self) -> str:
        if self.report is None:
            return ""
        found = sum(1 for finding in self.report.findings if finding.count)
        return (
            f"<details><summary>Data report ({found} finding(s); %llm_data shows it alone)</summary>"
            f"{self.report._repr_html_()}</details>"
        )


class SweepDryRun:
    """What a sweep would run: its trials and their values, and the memory of the largest."""

    def __init__(self, name: str, values: list[dict[str, Any]], options: dict[str, Any], largest: Estimate):
        self.name, self.values, self.options, self.largest = name, values, options, largest

    def table(self) -> Table:
        keys = list(self.values[0]) if self.values else []
        rows = [[f"#{i + 1}", *(shown(trial[key], ".4g") for key in keys)] for i, trial in enumerate(self.values)]
        scheduler = self.options["scheduler"]
        title = (
            f"sweep of {self.name}: {len(self.values)} trials on Ray Tune, {self.options['metric']} "
            f"({self.options['mode']}), scheduler {scheduler}; the largest needs ≈ {_size(self.largest.total_gib)}"
        )
        return Table(["trial", *keys], rows, title=title, css_class="llm-sweep-dry-run")

    def _repr_html_(self) -> str:
        return self.table()._repr_html_()

    def __repr__(self) -> str:
        return repr(self.table())
