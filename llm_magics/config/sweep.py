"""A ``sweep:`` block: the trials it asks for, each checked like any configuration.

Lists are grids (every value); ``{choice: [...]}``, ``{uniform: [a, b]}``, ``{loguniform: [a, b]}``
and ``{randint: [a, b]}`` are distributions, drawn ``num_samples`` times for each point of the grid
(from the configuration's seed, so a sweep draws the same trials each time). Every problem of the
block is reported at once; each swept value is then checked alone, and every trial, before anything
runs (``training/sweeps``).
"""

from __future__ import annotations

import itertools
import math
import random
from dataclasses import dataclass, field
from typing import Any

from llm_magics.core.errors import ConfigError, did_you_mean, one_of

DISTRIBUTIONS = ("choice", "uniform", "loguniform", "randint")
SCHEDULERS = ("asha", "none")
MAX_TRIALS = 10_000  # checked before any trial is expanded in memory
_OPTIONS = ("num_samples", "metric", "mode", "scheduler", "max_concurrent_trials", "resources_per_trial")
_NOT_SWEPT = ("model", "data", "select", "X", "y", "backend", "on_ray", "ray_address", "output_dir", "artifacts")


@dataclass(frozen=True)
class Sweep:
    """What a ``sweep:`` block asks: the swept keys and how trials are run and judged."""

    space: dict[str, Any]
    num_samples: int = 1
    metric: str = "eval_loss"
    mode: str = "min"
    scheduler: str = "asha"
    max_concurrent_trials: int | None = None
    resources_per_trial: dict[str, float] = field(default_factory=lambda: {"cpu": 1})

    @property
    def keys(self) -> list[str]:
        return list(self.space)

    def to_dict(self) -> dict[str, Any]:
        return {
            "space": self.space,
            "num_samples": self.num_samples,
            "metric": self.metric,
            "mode": self.mode,
            "scheduler": self.scheduler,
            "max_concurrent_trials": self.max_concurrent_trials,
            "resources_per_trial": self.resources_per_trial,
        }


def parse_sweep(block: Any, known_keys: list[str]) -> Sweep:
    """The ``sweep:`` mapping as a ``Sweep``; every problem at once, each naming its key or value,
    otherwise."""
    if not isinstance(block, dict) or not block:
        raise ConfigError("sweep: give a mapping of keys to values, e.g. sweep: {learning_rate: [1e-4, 2e-4]}")
    options = {key: block[key] for key in _OPTIONS if key in block}
    space = {key: value for key, value in block.items() if key not in _OPTIONS}
    if not space:
        raise ConfigError("sweep: name at least one key to sweep, e.g. learning_rate: [1e-4, 2e-4]")
    problems = [problem for key, values in space.items() if (problem := _check_key(key, values, known_keys))]
    metric = options.get("metric", "eval_loss")
    if not isinstance(metric, str) or not metric:
        problems.append(f"sweep.metric: give a metric name such as eval_loss, got {metric!r}")
        metric = "eval_loss"
    mode = options.get("mode", "min" if metric.endswith("loss") else "max")
    if mode not in ("min", "max"):
        problems.append(f"sweep.mode: must be 'min' or 'max', got {mode!r}")
    scheduler = options.get("scheduler", "asha")
    if scheduler not in SCHEDULERS:
        problems.append(f"sweep.scheduler: must be {one_of(SCHEDULERS)}{did_you_mean(str(scheduler), SCHEDULERS)}")
    samples = options.get("num_samples", 1)
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
        problems.append(f"sweep.num_samples: must be a whole number, at least 1, got {samples!r}")
    elif not problems:  # the grid's size, once its lists are known to be lists
        count = samples * math.prod(len(values) for values in space.values() if isinstance(values, list))
        if count > MAX_TRIALS:
            problems.append(f"sweep: {count:,} trials (the grid times num_samples); at most {MAX_TRIALS:,}")
    concurrent = options.get("max_concurrent_trials")
    if concurrent is not None and (isinstance(concurrent, bool) or not isinstance(concurrent, int) or concurrent < 1):
        problems.append(f"sweep.max_concurrent_trials: must be a whole number, at least 1, got {concurrent!r}")
    resources = options.get("resources_per_trial", {"cpu": 1})
    if not isinstance(resources, dict) or not all(
        isinstance(v, int | float) and not isinstance(v, bool) and v >= 0 for v in resources.values()
    ):
        problems.append(f"sweep.resources_per_trial: give a mapping like {{cpu: 1, gpu: 1}}, got {resources!r}")
    if problems:
        raise ConfigError(problems)
    return Sweep(space, samples, metric, mode, scheduler, concurrent, dict(resources))


def _check_key(key: str, values: Any, known_keys: list[str]) -> str | None:
    """What is wrong with one swept key and its values, or None."""
    if key not in known_keys:
        return f"sweep: unknown key '{key}'{did_you_mean(key, known_keys)}"
    if key in _NOT_SWEPT:
        return f"sweep: '{key}' is the same for every trial; sweep training settings, not {key}"
    if isinstance(values, list):
        return None if values else f"sweep.{key}: give at least one value"
    if not isinstance(values, dict) or len(values) != 1 or next(iter(values)) not in DISTRIBUTIONS:
        return f"sweep.{key}: give a list of values, or one of {one_of('{' + d + ': ...}' for d in DISTRIBUTIONS)}"
    ((kind, given),) = values.items()
    if kind == "choice":
        ok = isinstance(given, list) and given
        return None if ok else f"sweep.{key}: choice takes a list of values, e.g. {{choice: [8, 16]}}"
    if (
        not isinstance(given, list)
        or len(given) != 2
        or not all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in given)
    ):
        return f"sweep.{key}: {kind} takes [low, high], two numbers, e.g. {{{kind}: [1e-5, 1e-3]}}"
    low, high = given
    if not low < high:
        return f"sweep.{key}: {kind} [{low}, {high}]: low must be below high"
    if kind == "loguniform" and low <= 0:
        return f"sweep.{key}: loguniform [{low}, {high}]: both bounds must be above 0"
    if kind == "randint" and not all(isinstance(v, int) for v in given):
        return f"sweep.{key}: randint [{low}, {high}]: give two whole numbers (high excluded)"
    return None


def trials(sweep: Sweep, seed: int = 42) -> list[dict[str, Any]]:
    """The values of every trial: each point of the grid, ``num_samples`` times, with the
    distributions drawn for each (the same draws for the same seed)."""
    grid = {key: values for key, values in sweep.space.items() if isinstance(values, list)}
    drawn = {key: values for key, values in sweep.space.items() if isinstance(values, dict)}
    rng = random.Random(seed)
    points = [dict(zip(grid, values, strict=True)) for values in itertools.product(*grid.values())]
    found = []
    for _ in range(sweep.num_samples):
        for point in points:
            found.append({**point, **{key: _draw(spec, rng) for key, spec in drawn.items()}})
    return [{key: trial[key] for key in sweep.space} for trial in found]  # in the order written


def _draw(spec: dict[str, Any], rng: random.Random) -> Any:
    ((kind, given),) = spec.items()
    if kind == "choice":
        return rng.choice(given)
    low, high = given
    if kind == "uniform":
        return rng.uniform(low, high)
    if kind == "loguniform":
        return math.exp(rng.uniform(math.log(low), math.log(high)))
    return rng.randrange(low, high)


def each_value(sweep: Sweep) -> list[tuple[str, Any, str]]:
    """Every value a swept key takes, alone: ``(key, value, how)``, ``how`` saying where it comes
    from when not a grid's list. A distribution's are its choices, or its bounds: every value a
    trial could draw lies between them, so checking these checks the draws' kinds and ranges."""
    found = []
    for key, values in sweep.space.items():
        if isinstance(values, list):
            found += [(key, value, "") for value in values]
            continue
        ((kind, given),) = values.items()
        if kind == "choice":
            found += [(key, value, " (one of its choices)") for value in given]
        else:
            edges = [given[0], given[1] - 1 if kind == "randint" else given[1]]
            found += [(key, value, " (a bound of its distribution)") for value in edges]
    return found


def described(values: dict[str, Any]) -> str:
    """A trial's values in a line: ``learning_rate=0.0002, lora_r=8``."""
    return ", ".join(f"{key}={_short(value)}" for key, value in values.items())


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
