"""Training methods (SPEC §11): which TRL trainer a run uses, which of its settings a configuration
may give, and which document fields each method reads.

A method's own settings (``beta``, ``num_generations``, ...) are the fields of its TRL config class
that ``SFTConfig`` lacks. They are given as top-level keys, like any other, and kept in the
configuration's ``method_args``; their names and types are checked against that class.
"""

from __future__ import annotations

import functools
import importlib
import warnings
from typing import Any

from llm_magics.config.validation import defaults, init_fields, type_hints, type_problem
from llm_magics.core.errors import did_you_mean, one_of

METHODS = ("sft", "dpo", "kto", "orpo", "simpo", "grpo")
PREFERENCE = ("dpo", "orpo", "simpo")
# method -> (module, class) of its TRL config, imported when the method is used
_CONFIGS = {
    "sft": ("trl", "SFTConfig"),
    "dpo": ("trl", "DPOConfig"),
    "kto": ("trl", "KTOConfig"),
    "orpo": ("trl.experimental.orpo", "ORPOConfig"),
    "simpo": ("trl.experimental.cpo", "CPOConfig"),
    "grpo": ("trl", "GRPOConfig"),
}
# settings a method starts from that its TRL class does not: SimPO is CPO's "simpo" loss without
# CPO's behaviour-cloning term (the SimPO paper's recipe)
# (and ORPO's and CPO's collator needs the raw columns, which they would otherwise warn and keep)
_OWN_DEFAULTS: dict[str, dict[str, Any]] = {
    "simpo": {"loss_type": "simpo", "cpo_alpha": 0.0, "remove_unused_columns": False},
    "orpo": {"remove_unused_columns": False},
}
# the document fields each method reads, as the configuration's keys that name them
DATA_FIELDS = {
    "sft": (),
    "dpo": ("prompt", "chosen", "rejected"),
    "orpo": ("prompt", "chosen", "rejected"),
    "simpo": ("prompt", "chosen", "rejected"),
    "kto": ("prompt", "completion", "label"),
    "grpo": ("prompt",),
}
# the training signals each method's trainer logs (and, evaluating, logs again with eval_)
_SIGNALS = {
    "dpo": ("rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies"),
    "orpo": ("rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies", "nll_loss"),
    "simpo": ("rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies", "nll_loss"),
    "kto": ("rewards/chosen", "rewards/rejected", "rewards/margins", "kl"),
    "grpo": ("reward", "reward_std", "completions/mean_length", "entropy", "kl"),
}
# what only the trainers of these methods do, and so is no setting of any other method
_SETTINGS_OF = {"reward_funcs": ("grpo",), "completions_to_record": ("grpo",)}


def config_class(method: str) -> type:
    module, name = _CONFIGS[method]
    return getattr(stable_import(module), name)


def stable_import(module: str) -> Any:
    """Imports a TRL module; ORPO's and CPO's live in ``trl.experimental``, whose import warns that
    its APIs may change: ours are pinned by the tests, so the user is not told on each run."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="You are importing from 'trl.experimental'")
        return importlib.import_module(module)


@functools.cache
def own_settings(method: str) -> tuple[str, ...]:
    """The settings of ``method`` that ``SFTConfig`` does not have."""
    if method == "sft":
        return ()
    shared = set(init_fields(config_class("sft")))
    return tuple(name for name in init_fields(config_class(method)) if name not in shared)


@functools.cache
def sft_only(method: str) -> tuple[str, ...]:
    """``SFTConfig``'s own settings (not ``TrainingArguments``') that ``method``'s trainer lacks."""
    if method == "sft":
        return ()
    from transformers import TrainingArguments

    common = set(init_fields(TrainingArguments)) | set(init_fields(config_class(method)))
    return tuple(name for name in init_fields(config_class("sft")) if name not in common)


def methods_with(key: str) -> list[str]:
    """The methods that have ``key`` as a setting of their own."""
    if key in _SETTINGS_OF:
        return list(_SETTINGS_OF[key])
    return [method for method in METHODS if key in own_settings(method)]


def setting_problems(method: str, settings: dict[str, Any]) -> list[str]:
    """What is wrong with the names and types of a method's own settings."""
    if method not in METHODS:
        return []  # the method's own key says so
    known = own_settings(method)
    hints = type_hints(config_class(method)) if known else {}
    problems = []
    for key, value in settings.items():
        if key not in known:
            problems.append(unknown_setting(key, method))
            continue
        problem = type_problem(value, hints[key])
        if problem:
            problems.append(f"{key}: {problem}")
    return problems


def unknown_setting(key: str, method: str, others: tuple[str, ...] = ()) -> str:
    """'beta: a setting of dpo, kto, ... — not of sft (set method: dpo)', or an unknown key's message."""
    owners = [m for m in methods_with(key) if m != method]
    if owners:
        return f"{key}: a setting of {', '.join(owners)}, not of method {method} — set method: {owners[0]}"
    return f"unknown key '{key}'{did_you_mean(key, [*others, *own_settings(method)])}"


def method_problems(config: Any) -> list[str]:
    """The method's name, its settings, the SFT-only keys it cannot take, and its data fields."""
    method = config.method
    if method not in METHODS:
        return [f"method: must be {one_of(METHODS)}, got {method!r}{did_you_mean(str(method), METHODS)}"]
    problems = setting_problems(method, config.method_args)
    sft = defaults(config_class("sft"))
    ours = defaults(type(config))
    for name in sft_only(method):
        value = getattr(config, name)
        if value != ours.get(name, sft.get(name)):
            problems.append(f"{name}: a setting of sft, not of method {method} — remove it")
    for key, owners in _SETTINGS_OF.items():
        if method not in owners and getattr(config, key) != ours.get(key):
            problems.append(f"{key}: a setting of {', '.join(owners)}, not of method {method}")
    return problems + data_problems(config)


def data_problems(config: Any) -> list[str]:
    """Each method's document fields: all named, and no other method's."""
    method = config.method
    if method == "sft":
        problems = []
        if (config.prompt is None) != (config.response is None):
            problems.append("prompt and response: give both field names (the loss is on the response)")
        problems += [
            f"{key}: a field of {', '.join(m for m in METHODS if key in DATA_FIELDS[m])}, not of method sft"
            for key in ("chosen", "rejected", "completion", "label")
            if getattr(config, key) is not None
        ]
        return problems
    if config.task != "causal-lm":
        return [f"method {method}: trains a causal-lm, not {config.task}"]
    if isinstance(config.prompt, list):
        return [f"prompt: one field for method {method} (a list of fields joins them for sft only)"]
    needed = DATA_FIELDS[method]
    missing = [key for key in needed if getattr(config, key) is None]
    problems = []
    if missing:
        example = ", ".join(f"{key}: FIELD" for key in missing)
        problems.append(f"method {method}: name the document fields of {', '.join(missing)} ({example})")
    extra = [key for key in ("chosen", "rejected", "completion", "label", "response", "messages") if key not in needed]
    problems += [
        f"{key}: not a field of method {method} (it reads {', '.join(needed)})"
        for key in extra
        if getattr(config, key) is not None
    ]
    return problems


def trainer_settings(config: Any, values: dict[str, Any]) -> dict[str, Any]:
    """The keyword arguments of the method's TRL config: ``values`` (the ``SFTConfig`` fields as the
    run sets them) cut to what the method's class takes, where a TRL default that SFT sets
    differently (``loss_type``) becomes the method's own, then the method's settings on top."""
    method = config.method
    if method == "sft":
        return values
    fields = set(init_fields(config_class(method)))
    sft, own = defaults(config_class("sft")), defaults(config_class(method))
    kept = {}
    for name, value in values.items():
        if name not in fields:
            continue
        if name in own and value == sft.get(name) and own[name] != value:
            continue  # left at SFT's default: the method's default applies
        kept[name] = value
    return {**kept, **_OWN_DEFAULTS.get(method, {}), **config.method_args}


def signals(method: str, reward_names: list[str] | None = None) -> tuple[str, ...]:
    """The numbers a method's run logs beyond the loss, a reward function's own among them."""
    own = tuple(f"rewards/{name}/mean" for name in reward_names or ())
    return (*_SIGNALS.get(method, ()), *own)
