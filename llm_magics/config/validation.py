"""The checks behind ``LLMTrainingConfiguration``: names and types of the given keys, ranges and
combinations of their values. Every problem is collected, so one error names them all."""

from __future__ import annotations

import dataclasses
import enum
import functools
import math
import types
import typing
from collections.abc import Callable
from typing import Any, Literal, TypeVar

from llm_magics.core.errors import did_you_mean, one_of

# Lower bounds checked before anything trains: field -> smallest valid value.
_AT_LEAST = {
    "per_device_train_batch_size": 1,
    "per_device_eval_batch_size": 1,
    "gradient_accumulation_steps": 1,
    "lora_r": 1,
    "lora_alpha": 1,
    "max_length": 1,
    "logging_steps": 0,
    "save_steps": 0,
    "eval_steps": 0,
    "num_train_epochs": 0,
    "warmup_steps": 0,
    "weight_decay": 0,
    "save_total_limit": 1,
    "probe_steps": 1,
    "probe_max_new_tokens": 1,
    "completions_to_record": 0,
    "early_stopping_patience": 1,
    "early_stopping_threshold": 0,
}
_POSITIVE = ("learning_rate",)
_FRACTIONS = ("lora_dropout", "valid_fraction")
T = TypeVar("T")


def _per_class(function: Callable[[type], T]) -> Callable[[type], T]:
    """``functools.cache`` for a function of a class (typed so that a dataclass, whose instances
    are unhashable, still counts as a hashable class)."""
    return functools.cache(function)


def argument_problems(cls: type, kwargs: dict[str, Any], aliases: dict[str, str]) -> tuple[dict[str, Any], list[str]]:
    """The keyword arguments under their field names, and the problems with their names and types.

    When a name or a type is wrong, the range and combination problems among the values of the
    right type are reported too, so one error names everything.
    """
    fields = init_fields(cls)
    hints = type_hints(cls)
    problems, checked = [], {}
    for key, value in kwargs.items():
        name = aliases.get(key, key)
        if name not in fields:
            problems.append(f"unknown key '{key}'{did_you_mean(key, [*fields, *aliases])}")
        elif name in checked:
            other = next(k for k in kwargs if aliases.get(k, k) == name and k != key)
            problems.append(f"'{key}' is given twice (also as '{other}')")
        else:
            problem = type_problem(value, hints[name])
            if problem:
                problems.append(f"{key}: {problem}")
            checked[name] = value
    if problems:
        typed = {k: v for k, v in checked.items() if type_problem(v, hints[k]) is None}
        problems += value_problems(types.SimpleNamespace(**{**defaults(cls), **typed}), fields)
    return checked, problems


def value_problems(config: Any, fields: tuple[str, ...]) -> list[str]:
    """Ranges and combinations: what is wrong with values that have the right types."""
    # nan passes every comparison below, so a non-finite number is refused first
    infinite = [name for name in fields if isinstance(getattr(config, name), float)]
    infinite = [name for name in infinite if not math.isfinite(getattr(config, name))]
    problems = [f"{name}: must be a finite number, got {getattr(config, name)!r}" for name in infinite]
    for name, low in _AT_LEAST.items():
        value = getattr(config, name)
        if value is not None and name not in infinite and value < low:
            problems.append(f"{name}: must be at least {low}, got {value!r}")
    for name in _POSITIVE:
        if name not in infinite and getattr(config, name) <= 0:
            problems.append(f"{name}: must be greater than 0, got {getattr(config, name)!r}")
    for name in _FRACTIONS:
        value = getattr(config, name)
        if value is not None and name not in infinite and not 0 <= value < 1:
            problems.append(f"{name}: must be at least 0 and below 1, got {value!r}")
    if config.max_steps == 0 or config.max_steps < -1:
        problems.append(
            f"max_steps: must be a positive number of steps, or -1 for num_train_epochs, got {config.max_steps}"
        )
    problems += _data_problems(config) + _ray_problems(config.ray_configs) + _early_stopping_problems(config)
    if config.fp16 and config.bf16:
        problems.append("fp16 and bf16: choose one")
    if config.bits is not None and not config.use_lora:
        problems.append("bits: a quantized model trains only through LoRA — set use_lora: true, or remove bits")
    return problems


def _ray_problems(ray_configs: dict[str, Any] | None) -> list[str]:
    """What can be told without importing Ray (seconds): the shapes; Ray checks the rest at the start."""
    problems = []
    for key in ("scaling_config", "run_config"):
        value = (ray_configs or {}).get(key)
        if value is not None and not dataclasses.is_dataclass(value) and not isinstance(value, dict):
            problems.append(f"ray_configs.{key}: must be a mapping, got {shown(value)}")
    scaling = (ray_configs or {}).get("scaling_config")
    workers = scaling.get("num_workers", 1) if isinstance(scaling, dict) else 1
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        problems.append(f"ray_configs.scaling_config.num_workers: must be a whole number, at least 1, got {workers!r}")
    return problems


def _early_stopping_problems(config: Any) -> list[str]:
    """Early stopping judges evaluations and ``@best`` names a saved checkpoint: it needs evaluation,
    a save at every evaluation, and more evaluations than its patience."""
    patience = config.early_stopping_patience
    if patience is None or not isinstance(patience, int) or patience < 1:
        return []
    strategy = str(getattr(config.eval_strategy, "value", config.eval_strategy))
    saving = str(getattr(config.save_strategy, "value", config.save_strategy))
    if strategy == "no":
        return ["early_stopping_patience: needs evaluation — set eval_strategy: steps and eval_steps: N"]
    if saving != strategy:
        return [f"early_stopping_patience: save where it evaluates — set save_strategy: {strategy}"]
    every = config.eval_steps or config.logging_steps
    if strategy == "steps" and every and config.save_steps and every % config.save_steps:
        return [
            f"early_stopping_patience: save at every evaluation, so that @best names a checkpoint — "
            f"save_steps: {shown(every)} (now {shown(config.save_steps)}; eval_steps is {shown(every)})"
        ]
    if strategy == "steps" and every >= 1 and config.max_steps > 0 and config.max_steps // every <= patience:
        return [
            f"early_stopping_patience: {patience} can never stop this run — max_steps {config.max_steps} gives "
            f"{config.max_steps // int(every)} evaluation(s) (eval_steps {shown(every)}); lower the patience or "
            "evaluate more often"
        ]
    return []


def _data_problems(config: Any) -> list[str]:
    problems = []
    if config.data is not None and config.select is not None:
        problems.append("data and select: give one — data: NAME, or select: {collection: NAME, filter: ...}")
    if isinstance(config.select, dict):
        problems += _select_problems(config.select)
    if config.messages is not None and config.prompt is not None:
        problems.append("messages and prompt/response: choose one data format")
    if config.task == "text-classification" and config.y is None:
        problems.append("y: text-classification needs the label field, e.g. y: label")
    if config.prompt_template is not None and "{prompt}" not in config.prompt_template:
        problems.append("prompt_template: must contain {prompt}")
    return problems


def _select_problems(select: dict[str, Any]) -> list[str]:
    allowed = ("collection", "filter", "projection", "limit")
    problems = [
        f"select: unknown key '{key}'{did_you_mean(str(key), allowed)}; valid: {one_of(allowed)}"
        for key in select
        if key not in allowed
    ]
    if not isinstance(select.get("collection"), str):
        problems.append("select: needs collection: NAME")
    limit = select.get("limit")
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 1):
        problems.append(f"select.limit: must be a positive integer, got {limit!r}")
    for key in ("filter", "projection"):
        if not isinstance(select.get(key) or {}, dict):
            problems.append(f"select.{key}: must be a mapping")
    return problems


# --- types -----------------------------------------------------------------------------------


def type_problem(value: Any, annotation: Any) -> str | None:
    """Returns why ``value`` does not fit ``annotation``, or None when it fits."""
    if _fits(value, annotation):
        return None
    return f"expected {describe(annotation)}, got {shown(value)}"


def _fits(value: Any, annotation: Any) -> bool:
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if annotation is Any:
        return True
    if annotation is None or annotation is type(None):
        return value is None
    if origin in (typing.Union, types.UnionType):
        choices = enum_choices(args)
        if choices is not None and isinstance(value, str):
            return value in choices
        return any(_fits(value, arg) for arg in args)
    if origin is Literal:
        return any(value == arg and type(value) is type(arg) for arg in args)
    if annotation is bool:
        return isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if annotation is str:
        return isinstance(value, str)
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return isinstance(value, annotation) or value in [member.value for member in annotation]  # may be unhashable
    if origin is list or annotation is list:
        return isinstance(value, list) and all(_fits(item, args[0]) for item in value if args)
    if origin is dict or annotation is dict:
        return isinstance(value, dict)
    return True  # a library type we do not check (e.g. accelerate's ParallelismConfig)


def enum_choices(args: tuple[Any, ...]) -> list[str] | None:
    """The values of the enum among a union's members, if one is an enum."""
    for arg in args:
        if isinstance(arg, type) and issubclass(arg, enum.Enum):
            return [member.value for member in arg]
    return None


def describe(annotation: Any) -> str:
    """A type as the error messages (and the README's reference) say it: 'an integer or null'."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        choices = enum_choices(args)
        if choices is not None:
            return one_of(choices)
        literals = [a for arg in args for a in (typing.get_args(arg) if typing.get_origin(arg) is Literal else ())]
        if literals and all(typing.get_origin(a) is Literal or a is type(None) for a in args):
            return one_of(literals) + " or null"
        return " or ".join(dict.fromkeys(describe(arg) for arg in args))
    if origin is Literal:
        return one_of(args)
    names = {
        bool: "true or false",
        int: "an integer",
        float: "a number",
        str: "a string",
        type(None): "null",
        list: "a list",
        dict: "a mapping",
    }
    if annotation in names:
        return names[annotation]
    if origin in names:
        inner = describe(args[0]).removeprefix("an ").removeprefix("a ") if origin is list and args else ""
        return names[origin] + (f" of {inner}s" if inner and args[0] is not Any else "")
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return one_of(member.value for member in annotation)
    return getattr(annotation, "__name__", str(annotation))


def shown(value: Any) -> str:
    """A value as a message quotes it: its repr, shortened, and what kind of value it is."""
    text = repr(value)
    text = text if len(text) <= 40 else text[:37] + "..."
    return f"{text} ({kind_of(value)})"


def kind_of(value: Any) -> str:
    names = {
        dict: "a mapping",
        list: "a list",
        str: "a string",
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        type(None): "null",
    }
    return names.get(type(value), type(value).__name__)


def plain(value: Any) -> Any:
    """An enum as its value (also inside a list): what YAML writes and a record stores."""
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, list):
        return [item.value if isinstance(item, enum.Enum) else item for item in value]
    return value


@_per_class
def type_hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


@_per_class
def defaults(cls: type) -> dict[str, Any]:
    """Each field's default value, as plain data."""
    values = {}
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            values[f.name] = plain(f.default)
        elif f.default_factory is not dataclasses.MISSING:
            values[f.name] = f.default_factory()
    return values


@_per_class
def init_fields(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(cls) if f.init)


@_per_class
def enum_fields(cls: type) -> tuple[str, ...]:
    """The fields whose values are enum members (transformers' strategies) when not plain text."""
    return tuple(name for name, hint in type_hints(cls).items() if enum_choices(typing.get_args(hint)) is not None)
