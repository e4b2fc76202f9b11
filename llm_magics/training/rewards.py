"""GRPO's reward functions: the user's own Python, checked before anything trains (SPEC §11).

A function comes from the notebook (``{{ f }}``, or ``reward_funcs=[f]``) or is named
``module:function`` and imported. Before a run starts, each must travel (cloudpickle, by value, to
a detached process or a Ray worker) and must answer a real completion of the base model with one
number (or None) per completion. A record keeps only each function's name and source text, which
are shown and never run; a resumed run is given its functions again.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from llm_magics.core.errors import ConfigError, RunError
from llm_magics.core.functions import UserFunction, function_name, resolve_function, shown, unique_names
from llm_magics.core.functions import packed as packed_functions

Reward = UserFunction


def resolve(specs: list[Any] | None) -> list[Reward]:
    """The configuration's ``reward_funcs`` as functions; a short error for anything else."""
    if not specs:
        raise ConfigError(
            "reward_funcs: grpo learns from reward functions — define one in a cell, e.g. "
            "def short(completions, **kw): return [-len(c) / 100 for c in completions], "
            "then reward_funcs: [{{ short }}]"
        )
    rewards = [resolve_function(spec, "reward_funcs") for spec in specs]
    unique_names(rewards, "reward_funcs")
    return rewards


def packed(rewards: list[Reward]) -> list[bytes]:
    """Each function by value, for a process or a Ray worker (see ``core.functions.packed``)."""
    return packed_functions(rewards, "reward function")


def check(
    rewards: list[Reward], prompt: Any, completion: Any, fields: dict[str, Any], completion_ids: list[int] | None = None
) -> list[float | None]:
    """Calls each function as TRL's GRPO trainer will (``prompts``, ``completions``,
    ``completion_ids``, ``trainer_state``, ``log_extra``, ``log_metric`` and the document's fields,
    as keyword arguments), on one real completion; returns their values. A function that raises,
    or returns anything but one number or None per completion, is refused by name."""
    values = []
    extras = {
        "completion_ids": [completion_ids or []],
        "trainer_state": None,  # none before training
        "log_extra": lambda column, values: None,
        "log_metric": lambda name, value: None,
    }
    for reward in rewards:
        try:
            result = reward.function(
                prompts=[prompt], completions=[completion], **{k: [v] for k, v in fields.items()}, **extras
            )
        except Exception as error:
            hint = " — a reward function takes **kwargs: TRL passes more" if isinstance(error, TypeError) else ""
            raise ConfigError(
                f"reward function {reward.name!r} raised {type(error).__name__}: {error} (tried on a completion "
                f"of the base model, with the fields {', '.join(fields) or 'none'}){hint}"
            ) from None
        values.append(_one_value(reward.name, result))
    return values


def _one_value(name: str, result: Any) -> float | None:
    if not isinstance(result, list | tuple) or len(result) != 1:
        raise ConfigError(
            f"reward function {name!r} returned {shown(result)}; it must return a list with one number "
            "(or None) per completion — it was given 1"
        )
    value = result[0]
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigError(
            f"reward function {name!r} returned {shown(result)}: each value must be a finite number or None"
        )
    return float(value)


def guarded(functions: list[Callable[..., Any]]) -> list[Callable[..., Any]]:
    """The functions as the trainer calls them: an exception ends the run naming the function."""
    return [_guard(function) for function in functions]


def _guard(function: Callable[..., Any]) -> Callable[..., Any]:
    name = function_name(function)

    @functools.wraps(function)  # TRL names each reward's curve by __name__
    def reward(*args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        except Exception as error:
            raise RunError(f"reward function {name!r} raised {type(error).__name__}: {error}") from error

    return reward


@dataclass
class Tried:
    """What the functions answered before training: shown by ``--dry-run``."""

    prompt: Any
    completion: Any
    values: dict[str, float | None]


def try_on_base(
    rewards: list[Reward], base: Any, adapter: str | None, tokenizer: Any, row: dict[str, Any], max_new_tokens: int
) -> Tried:
    """Generates one completion of the first training prompt with the model the run starts from,
    and calls every function on it with the document's fields (see ``check``)."""
    from llm_magics.models.generate import generate
    from llm_magics.models.loader import load_base_model

    model = load_base_model(base)
    if adapter is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, adapter)
    prompt = row["prompt"]
    chat = isinstance(prompt, list)
    text = tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True) if chat else prompt
    (answer,) = generate(model, tokenizer, [text], max_new_tokens=max_new_tokens, do_sample=False)
    del model
    completion = [{"role": "assistant", "content": answer}] if chat else answer
    fields = {key: value for key, value in row.items() if key != "prompt"}
    ids = tokenizer(answer, add_special_tokens=False)["input_ids"]
    values = check(rewards, prompt, completion, fields, ids)
    return Tried(prompt, completion, {reward.name: value for reward, value in zip(rewards, values, strict=True)})
