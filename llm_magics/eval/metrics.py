"""Generation metrics: the built-ins over ``sacrebleu`` and ``rouge-score`` (both work offline;
HF ``evaluate`` fetches its metric code from the Hub at run time), and the user's own functions.

Each metric scores one example, ``(prediction, reference, document)``, with a number or None
(missing). A checkpoint's score is the mean of its examples' numbers; BLEU and chrF are scored
over the whole set, as ``sacrebleu`` defines them, and per example for the examples view.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from llm_magics.config.eval_generate import Judge, metric_name
from llm_magics.core.errors import ConfigError
from llm_magics.core.functions import UserFunction, resolve_function, shown

PerExample = Callable[[str, str, dict[str, Any]], Any]
_SPACE = re.compile(r"\s+")


@dataclass
class Metric:
    """A metric as evaluation runs it. ``corpus``: the set's score from every example at once;
    None: the mean of the examples' scores. ``source``: a user function's text, for the record."""

    name: str
    score: PerExample
    corpus: Callable[[list[str], list[str]], float] | None = None
    source: str | None = None
    judge: Judge | None = None  # scored by another model (eval.judge), not by ``score``


def _normal(text: str) -> str:
    return _SPACE.sub(" ", text).strip().casefold()


def exact_match(prediction: str, reference: str, document: dict[str, Any]) -> float:
    """1 when the answer is the reference, ignoring case and runs of white space."""
    return float(_normal(prediction) == _normal(reference))


def contains(prediction: str, reference: str, document: dict[str, Any]) -> float:
    """1 when the answer holds the reference (ignoring case and runs of white space)."""
    return float(_normal(reference) in _normal(prediction))


@functools.cache
def _rouge() -> Any:
    from rouge_score.rouge_scorer import RougeScorer

    return RougeScorer(["rougeL"])


def rouge_l(prediction: str, reference: str, document: dict[str, Any]) -> float:
    """ROUGE-L F1: the longest common subsequence of words, between 0 and 1."""
    return float(_rouge().score(reference, prediction)["rougeL"].fmeasure)


def bleu(prediction: str, reference: str, document: dict[str, Any]) -> float:
    """sacrebleu's sentence BLEU, 0 to 100."""
    from sacrebleu.metrics import BLEU

    return float(BLEU(effective_order=True).sentence_score(prediction, [reference]).score)


def chrf(prediction: str, reference: str, document: dict[str, Any]) -> float:
    """sacrebleu's chrF, 0 to 100."""
    from sacrebleu.metrics import CHRF

    return float(CHRF().sentence_score(prediction, [reference]).score)


def length(prediction: str, reference: str, document: dict[str, Any]) -> float:
    """The answer's length in characters."""
    return float(len(prediction))


def _corpus_bleu(predictions: list[str], references: list[str]) -> float:
    from sacrebleu.metrics import BLEU

    return float(BLEU().corpus_score(predictions, [references]).score)


def _corpus_chrf(predictions: list[str], references: list[str]) -> float:
    from sacrebleu.metrics import CHRF

    return float(CHRF().corpus_score(predictions, [references]).score)


_BUILTIN: dict[str, tuple[PerExample, Callable[[list[str], list[str]], float] | None]] = {
    "exact_match": (exact_match, None),
    "contains": (contains, None),
    "rouge_l": (rouge_l, None),
    "bleu": (bleu, _corpus_bleu),
    "chrf": (chrf, _corpus_chrf),
    "length": (length, None),
}


def resolve(specs: tuple[Any, ...]) -> list[Metric]:
    """The block's metrics, ready to score (built-ins, functions, judges); user functions resolved."""
    found = []
    for spec in specs:
        if isinstance(spec, Judge):
            found.append(Metric(spec.name, _unscored, judge=spec))
        elif isinstance(spec, str) and spec in _BUILTIN:
            score, corpus = _BUILTIN[spec]
            found.append(Metric(spec, score, corpus))
        else:
            user = resolve_function(spec, "eval_generate.metrics")
            found.append(Metric(user.name, user.function, source=user.source))
    return found


def user_functions(metrics: list[Metric]) -> list[UserFunction]:
    """The notebook's own metrics, as functions that travel to a training process."""
    return [UserFunction(m.name, m.score, m.source) for m in metrics if m.source is not None]


def _unscored(prediction: str, reference: str, document: dict[str, Any]) -> None:
    return None


def value(metric: Metric, prediction: str, reference: str, document: dict[str, Any]) -> float | None:
    """One example's score; a user function that raises or answers wrong is named."""
    try:
        result = metric.score(prediction, reference, document)
    except Exception as error:
        raise ConfigError(
            f"metric {metric.name!r} raised {type(error).__name__}: {error} — a metric takes "
            "(prediction, reference, document) and returns a number or None"
        ) from None
    if result is None:
        return None
    if isinstance(result, bool):
        return float(result)
    if not isinstance(result, int | float) or not math.isfinite(result):
        raise ConfigError(f"metric {metric.name!r} returned {shown(result)}: it must return a finite number or None")
    return float(result)


def summary(metric: Metric, rows: list[dict[str, Any]]) -> float | None:
    """The set's score: the corpus score where the metric has one, else the mean of the numbers."""
    if metric.corpus is not None and rows:
        return metric.corpus([r["prediction"] for r in rows], [r["reference"] for r in rows])
    numbers = [r["scores"][metric.name] for r in rows if r["scores"].get(metric.name) is not None]
    return sum(numbers) / len(numbers) if numbers else None


__all__ = ["Metric", "metric_name", "resolve", "summary", "user_functions", "value"]
