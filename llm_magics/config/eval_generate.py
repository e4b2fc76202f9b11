"""The ``eval_generate:`` block (SPEC §12): checkpoints scored by what they answer, checked here.

```yaml
eval_generate:
  metrics: [exact_match, rouge_l, {{ my_metric }}]
  limit: 64
  max_new_tokens: 64
  when: save            # at every checkpoint; or end
```

A metric is a built-in name, a notebook function (``{{ f }}``: ``f(prediction, reference,
document)`` returns a number or None), a ``module:function`` name, or a judge: ``{judge: {model:
NAME@REF or a path, prompt: "... {prediction} ...", scale: [1, 10]}}``. Nothing here runs a
function or loads a model: that is ``eval/``'s, before anything trains.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from llm_magics.core.errors import ConfigError, did_you_mean, one_of

BUILTIN = ("exact_match", "contains", "rouge_l", "bleu", "chrf", "length")
WHEN = ("save", "end")
_KEYS = ("metrics", "limit", "max_new_tokens", "batch_size", "when", "select", "reference", "generation_kwargs")
_JUDGE_KEYS = ("model", "prompt", "scale", "name", "max_new_tokens")
_JUDGE_FIELDS = ("{prompt}", "{prediction}", "{reference}")
_COUNTS = {"limit": 64, "max_new_tokens": 64, "batch_size": 8}


@dataclass(frozen=True)
class Judge:
    """Another model asked to score an answer: a stored checkpoint (``NAME@REF``) or a base path."""

    model: str
    prompt: str
    scale: tuple[float, float] = (1.0, 10.0)
    name: str = "judge"
    max_new_tokens: int = 8

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "prompt": self.prompt,
            "scale": list(self.scale),
            "name": self.name,
            "max_new_tokens": self.max_new_tokens,
        }


@dataclass(frozen=True)
class EvalGenerate:
    """The checked block. ``metrics`` holds built-in names, functions (or ``module:function``
    names) and judges, in the order given."""

    metrics: tuple[Any, ...] = ("exact_match", "rouge_l")
    limit: int = 64
    max_new_tokens: int = 64
    batch_size: int = 8
    when: str = "save"
    select: dict[str, Any] | None = None  # documents of its own, instead of the run's held-out split
    reference: str | None = None  # the field holding each answer to compare with
    generation_kwargs: dict[str, Any] = field(default_factory=dict)

    def metric_names(self) -> list[str]:
        return [metric_name(metric) for metric in self.metrics]

    def to_dict(self) -> dict[str, Any]:
        """As a record keeps it: functions by name."""
        return {
            "metrics": [m.to_dict() if isinstance(m, Judge) else metric_name(m) for m in self.metrics],
            "limit": self.limit,
            "max_new_tokens": self.max_new_tokens,
            "batch_size": self.batch_size,
            "when": self.when,
            "select": self.select,
            "reference": self.reference,
            "generation_kwargs": self.generation_kwargs,
        }

    def key(self, sources: dict[str, str] | None = None) -> str:
        """What makes two evaluations the same: the settings, and each function's source text.
        Scores recorded under the same key are reused; any change evaluates again."""
        settings = {k: v for k, v in self.to_dict().items() if k not in ("when", "batch_size")}
        text = json.dumps([settings, sorted((sources or {}).items())], sort_keys=True, default=str)
        return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


def metric_name(metric: Any) -> str:
    if isinstance(metric, Judge):
        return metric.name
    if isinstance(metric, str):
        return metric.partition(":")[2] or metric
    return getattr(metric, "__name__", None) or type(metric).__name__


def parse(value: Any) -> EvalGenerate:
    """The block as given in a cell or in Python; one ``ConfigError`` naming every problem."""
    if isinstance(value, EvalGenerate):
        return value
    if not isinstance(value, dict):
        raise ConfigError(f"eval_generate: must be a mapping (metrics, limit, max_new_tokens, ...), got {value!r}")
    problems = [
        f"eval_generate.{key}: unknown key{did_you_mean(str(key), _KEYS) or '; the keys are ' + ', '.join(_KEYS)}"
        for key in value
        if key not in _KEYS
    ]
    metrics: list[Any] = []
    for item in value.get("metrics", EvalGenerate.metrics) or []:
        found, problem = _metric(item)
        metrics.append(found)
        problems += [problem] if problem else []
    if not metrics and "metrics" in value:
        problems.append(f"eval_generate.metrics: name at least one, e.g. [exact_match, rouge_l] ({', '.join(BUILTIN)})")
    names = [metric_name(m) for m in metrics]
    problems += [
        f"eval_generate.metrics: {name!r} is given twice" for name in sorted(set(names)) if names.count(name) > 1
    ]
    counts = {}
    for key, default in _COUNTS.items():
        number = value.get(key, default)
        if isinstance(number, bool) or not isinstance(number, int) or number < 1:
            problems.append(f"eval_generate.{key}: must be a whole number, at least 1, got {number!r}")
        counts[key] = number
    when = value.get("when", "save")
    if when not in WHEN:
        problems.append(f"eval_generate.when: must be {one_of(WHEN)}, got {when!r}{did_you_mean(str(when), WHEN)}")
    select = _select(value.get("select"), problems)
    reference = value.get("reference")
    if reference is not None and not (isinstance(reference, str) and reference):
        problems.append(f"eval_generate.reference: the name of the field holding each answer, got {reference!r}")
    generation = value.get("generation_kwargs") or {}
    if not isinstance(generation, dict):
        problems.append(f"eval_generate.generation_kwargs: must be a mapping, got {generation!r}")
    if problems:
        raise ConfigError(problems)
    return EvalGenerate(
        tuple(metrics), when=when, select=select, reference=reference, generation_kwargs=generation, **counts
    )


def _metric(item: Any) -> tuple[Any, str | None]:
    if isinstance(item, Judge) or callable(item):
        return item, None
    if isinstance(item, dict) and set(item) == {"judge"}:
        return _judge(item["judge"])
    if isinstance(item, str) and (item in BUILTIN or ":" in item):
        return item, None
    if isinstance(item, str):
        hint = did_you_mean(item, BUILTIN) or f"; the built-ins are {', '.join(BUILTIN)}"
        return item, f"eval_generate.metrics: unknown metric {item!r}{hint} (or a notebook function: {{{{ f }}}})"
    return item, f"eval_generate.metrics: {item!r} is not a metric name, a function or {{judge: {{...}}}}"


def _judge(spec: Any) -> tuple[Any, str | None]:
    where = "eval_generate.metrics: judge"
    if not isinstance(spec, dict):
        return spec, f"{where}: must be a mapping {{model, prompt, scale}}, got {spec!r}"
    unknown = [key for key in spec if key not in _JUDGE_KEYS]
    if unknown:
        return spec, f"{where}.{unknown[0]}: unknown key{did_you_mean(str(unknown[0]), _JUDGE_KEYS)}"
    model, prompt, scale = spec.get("model"), spec.get("prompt"), spec.get("scale", [1, 10])
    if not isinstance(model, str) or not model:
        return spec, f"{where}.model: a stored model (NAME@REF) or a model path, got {model!r}"
    if not isinstance(prompt, str) or "{prediction}" not in prompt:
        return (
            spec,
            f"{where}.prompt: a template holding {{prediction}} (and {{prompt}}, {{reference}}), got {prompt!r}",
        )
    numbers = isinstance(scale, list | tuple) and len(scale) == 2
    if (
        not numbers
        or not all(isinstance(x, int | float) and not isinstance(x, bool) for x in scale)
        or scale[0] >= scale[1]
    ):
        return spec, f"{where}.scale: [lowest, highest] score, e.g. [1, 10], got {scale!r}"
    name, length = spec.get("name", "judge"), spec.get("max_new_tokens", 8)
    if not isinstance(name, str) or not name.isidentifier():
        return spec, f"{where}.name: a name for its column (letters, digits, _), got {name!r}"
    if isinstance(length, bool) or not isinstance(length, int) or length < 1:
        return spec, f"{where}.max_new_tokens: a whole number, at least 1, got {length!r}"
    return Judge(model, prompt, (float(scale[0]), float(scale[1])), name, length), None


def _select(value: Any, problems: list[str]) -> dict[str, Any] | None:
    if value is None:
        return None
    if isinstance(value, str) and value:
        return {"collection": value}
    if isinstance(value, dict) and isinstance(value.get("collection"), str):
        extra = [key for key in value if key not in ("collection", "filter", "limit")]
        if not extra:
            return dict(value)
    problems.append(f"eval_generate.select: a collection name or {{collection, filter, limit}}, got {value!r}")
    return None


def placement_problems(config: Any, block: EvalGenerate) -> list[str]:
    """What the rest of the configuration must give for the block to score every checkpoint."""
    problems = []
    if config.task != "causal-lm":
        problems.append(f"eval_generate: scores generated answers; task {config.task} generates none")
    strategy = str(getattr(config.eval_strategy, "value", config.eval_strategy))
    if strategy == "no":
        problems.append(
            "eval_generate: scores held-out documents at each evaluation — set eval_strategy: steps "
            "(documents with _fold: valid, or valid_fraction, are held out)"
        )
    elif block.when == "save" and strategy == "steps":
        every = config.eval_steps or config.logging_steps
        if every and config.save_steps and config.save_steps % every:
            problems.append(
                f"eval_generate: when save scores each checkpoint at its evaluation — make save_steps "
                f"({config.save_steps}) a multiple of eval_steps ({every})"
            )
    best = (config.metric_for_best_model or "").removeprefix("eval_")
    if best in block.metric_names() and block.when == "end":
        problems.append(
            f"metric_for_best_model: {best} is scored only at the end (eval_generate.when: end) — "
            "set eval_generate.when: save to choose a checkpoint by it"
        )
    if block.reference is None and reference_field(config) is None:
        problems.append(
            f"eval_generate.reference: name the field holding each expected answer (method {config.method} "
            "has no response field to compare with)"
        )
    return problems


def best_by(metric: str | None, greater_is_better: bool | None) -> dict[str, Any] | None:
    """transformers' ``metric_for_best_model`` and ``greater_is_better`` as a model's record keeps
    them for ``@best``: the logged name (``eval_...``), and greater is better unless it is a loss."""
    if not metric:
        return None
    name = metric if metric.startswith("eval_") else f"eval_{metric}"
    greater = greater_is_better if greater_is_better is not None else not name.endswith("loss")
    return {"metric": name, "greater": bool(greater)}


def reference_field(config: Any) -> str | None:
    """The document field that holds the expected answer, when the block names none."""
    if config.method in ("dpo", "orpo", "simpo"):
        return config.chosen
    if config.method == "sft" and config.messages:
        return config.messages  # its last assistant turn
    return config.response if config.method == "sft" else None
