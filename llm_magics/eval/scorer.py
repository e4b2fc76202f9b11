"""Scoring a model by what it answers: batched greedy generation over the held-out examples, in
the checkpoint's prompt format, each answer scored by every metric and judge.

``EvalJob`` holds what scoring needs and pickles (the notebook's functions cloudpickled), so the
same scoring runs in the kernel, in a detached process and in a Ray worker, at each save.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from llm_magics.config.eval_generate import BUILTIN, Judge, metric_name
from llm_magics.core.errors import ConfigError, RunError
from llm_magics.core.functions import packed, unpacked
from llm_magics.eval import metrics as metric_functions
from llm_magics.eval.judge import JudgeModel
from llm_magics.models.generate import generate

if TYPE_CHECKING:
    from llm_magics.config.eval_generate import EvalGenerate
    from llm_magics.models.checkpoint import StoredModel

Progress = Callable[[list[dict[str, Any]]], None]


@dataclass
class EvalJob:
    """An evaluation's settings (as recorded), examples, the notebook's metric functions (by name:
    callables in the kernel, cloudpickled bytes elsewhere) and the judges' models."""

    settings: dict[str, Any]
    key: str
    examples: list[dict[str, Any]]
    functions: dict[str, Any] = field(default_factory=dict)
    judges: dict[str, StoredModel] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)  # each function's text, for the record

    def travelling(self) -> EvalJob:
        """The same job with its functions by value, for a process or a Ray worker."""
        users = [metric_functions.Metric(name, f, source=self.sources.get(name)) for name, f in self.functions.items()]
        payloads = packed(metric_functions.user_functions(users), "metric")
        return EvalJob(
            self.settings,
            self.key,
            self.examples,
            dict(zip(self.functions, payloads, strict=True)),
            self.judges,
            self.sources,
        )

    @property
    def names(self) -> list[str]:
        return [metric_name(_spec(item)) for item in self.settings["metrics"]]


def _spec(item: Any) -> Any:
    return Judge(**{**item, "scale": tuple(item["scale"])}) if isinstance(item, dict) else item


def eval_job(block: EvalGenerate, examples: list[dict[str, Any]], judges: dict[str, StoredModel]) -> EvalJob:
    """Resolves the block's functions and checks each on the first example (with its reference,
    and with an empty answer, as the prediction): one that raises or answers wrong is named."""
    resolved = metric_functions.resolve(block.metrics)
    users = [m for m in resolved if m.source is not None]
    first = examples[0]
    for metric in users:
        for prediction in (first["reference"], ""):
            metric_functions.value(metric, prediction, first["reference"], first["document"])
    sources = {m.name: m.source or "" for m in users}
    return EvalJob(
        block.to_dict(),
        block.key(sources),
        examples,
        {m.name: m.score for m in users},
        judges,
        sources,
    )


@dataclass
class Scored:
    """One model's evaluation: the set's scores, each example's row, and what was missing."""

    scores: dict[str, float | None]
    rows: list[dict[str, Any]]
    missing: dict[str, int]

    def record(self, job: EvalJob, step: int | None = None) -> dict[str, Any]:
        """What a checkpoint's record keeps of it."""
        return {
            "scores": self.scores,
            "missing": self.missing,
            "count": len(self.rows),
            "settings": job.settings,
            "functions": [{"name": n, "source": s} for n, s in job.sources.items()],
            **({"step": step} if step is not None else {}),
        }


class Scorer:
    """Scores models for one ``EvalJob`` (its functions unpacked and judges loaded once)."""

    def __init__(self, job: EvalJob):
        self.job = job
        functions = {name: f if callable(f) else unpacked([f])[0] for name, f in job.functions.items()}
        self.metrics: list[metric_functions.Metric] = []
        self.judges: dict[str, JudgeModel] = {}
        for item in job.settings["metrics"]:
            spec = _spec(item)
            if isinstance(spec, Judge):
                self.judges[spec.name] = JudgeModel(spec, job.judges[spec.name])
            elif spec in BUILTIN:
                self.metrics += metric_functions.resolve((spec,))
            else:
                name = metric_name(spec)
                self.metrics.append(metric_functions.Metric(name, functions[name], source=job.sources.get(name)))

    def __call__(
        self,
        model: Any,
        tokenizer: Any,
        template: dict[str, Any] | None,
        done: list[dict[str, Any]] | None = None,
        progress: Progress | None = None,
    ) -> Scored:
        """Generates and scores every example not in ``done`` (rows already scored, e.g. before an
        interruption); ``progress`` receives each batch's new rows."""
        rows = list(done or [])
        scored = {row["index"] for row in rows}
        todo = [(i, e) for i, e in enumerate(self.job.examples) if i not in scored]
        size = self.job.settings["batch_size"]
        for start in range(0, len(todo), size):
            batch = todo[start : start + size]
            new = self._batch(model, tokenizer, template, batch)
            rows += new
            if progress is not None:
                progress(new)
        rows.sort(key=lambda row: row["index"])
        return self._summary(rows)

    def _batch(
        self, model: Any, tokenizer: Any, template: dict[str, Any] | None, batch: list[tuple[int, dict[str, Any]]]
    ) -> list[dict[str, Any]]:
        settings = self.job.settings
        kwargs = {"do_sample": False, **settings["generation_kwargs"]}
        prompts = [e["prompt"] for _, e in batch]
        predictions = generate(model, tokenizer, prompts, template, max_new_tokens=settings["max_new_tokens"], **kwargs)
        rows = []
        for (index, example), prediction in zip(batch, predictions, strict=True):
            scores = {m.name: self._value(m, prediction, example) for m in self.metrics}
            rows.append(
                {
                    "index": index,
                    "id": example["id"],
                    "prompt": example["prompt"],
                    "reference": example["reference"],
                    "prediction": prediction,
                    "scores": scores,
                }
            )
        for name, judge in self.judges.items():
            values = judge.scores(prompts, predictions, [e["reference"] for _, e in batch])
            for row, value in zip(rows, values, strict=True):
                row["scores"][name] = value
        return rows

    def _value(self, metric: metric_functions.Metric, prediction: str, example: dict[str, Any]) -> float | None:
        try:
            return metric_functions.value(metric, prediction, example["reference"], example["document"])
        except ConfigError as error:
            raise RunError(str(error)) from None

    def _summary(self, rows: list[dict[str, Any]]) -> Scored:
        names = self.job.names
        scores = {m.name: metric_functions.summary(m, rows) for m in self.metrics}
        for name in self.judges:
            numbers = [r["scores"][name] for r in rows if r["scores"].get(name) is not None]
            scores[name] = sum(numbers) / len(numbers) if numbers else None
        missing = {name: sum(1 for r in rows if r["scores"].get(name) is None) for name in names}
        return Scored({name: scores[name] for name in names}, rows, {k: v for k, v in missing.items() if v})
