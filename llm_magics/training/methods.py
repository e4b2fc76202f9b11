"""The trainer of each method (SPEC §11): TRL's DPO, KTO, ORPO, CPO (for SimPO) and GRPO trainers,
built from a run's model, arguments and data like the SFT trainer is.

Each takes the LoRA configuration itself (``peft_config``) or a model that already carries the
adapter it starts from; DPO and KTO then use the model with its adapter switched off as their
reference, so no second copy of the weights is loaded.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from llm_magics.config.methods import stable_import
from llm_magics.core.functions import unpacked
from llm_magics.training import rewards

# method -> (module, class) of its TRL trainer
_TRAINERS = {
    "dpo": ("trl", "DPOTrainer"),
    "kto": ("trl", "KTOTrainer"),
    "orpo": ("trl.experimental.orpo", "ORPOTrainer"),
    "simpo": ("trl.experimental.cpo", "CPOTrainer"),
    "grpo": ("trl", "GRPOTrainer"),
}


def method_trainer(method: str, common: dict[str, Any], reward_funcs: list[Any] | None) -> Any:
    """The trainer of ``method``; ``common``: model, args, data, processing_class, callbacks,
    peft_config. ``reward_funcs``: GRPO's functions, or their cloudpickled bytes (another process)."""
    module, name = _TRAINERS[method]
    trainer_class = getattr(stable_import(module), name)
    if method == "grpo":
        functions = [f if callable(f) else unpacked([f])[0] for f in reward_funcs or []]
        trainer = trainer_class(reward_funcs=rewards.guarded(functions), **common)
        _full_modules_in_model_dtype(trainer.model)
        return trainer
    return trainer_class(**common)


def _full_modules_in_model_dtype(model: Any) -> None:
    """TRL's GRPO casts every trainable weight of a quantized model to bfloat16 (QLoRA's recipe for
    the adapter, whose layers cast their input). A module trained in full beside the adapter
    (``lora_modules_to_save``, e.g. lm_head) is a plain layer that casts nothing: it goes back to
    the dtype of the model's activations, or its first step fails on mixed dtypes."""
    from peft.utils import ModulesToSaveWrapper

    dtype = model.get_input_embeddings().weight.dtype
    for module in model.modules():
        if isinstance(module, ModulesToSaveWrapper):
            for parameter in module.parameters():
                if parameter.requires_grad and parameter.dtype != dtype:
                    parameter.data = parameter.data.to(dtype)


def samples_of(trainer: Any, limit: int) -> Callable[[], list[dict[str, Any]]] | None:
    """Reads a GRPO trainer's newest sampled completions with each function's reward (TRL keeps
    those of the latest generation batch); None for the other trainers, or when none are kept."""
    logs = getattr(trainer, "_logs", None)
    if not isinstance(logs, dict) or "completion" not in logs or limit == 0:
        return None

    def samples() -> list[dict[str, Any]]:
        prompts, completions = list(logs["prompt"]), list(logs["completion"])
        scores = {name: list(values) for name, values in logs["rewards"].items()}
        advantages = list(logs["advantages"])
        rows = []
        for i in range(min(limit, len(completions))):
            rows.append(
                {
                    "prompt": _text(prompts[i]) if i < len(prompts) else None,
                    "completion": _text(completions[i]),
                    "rewards": {name: _number(values[i]) for name, values in scores.items() if i < len(values)},
                    "advantage": _number(advantages[i]) if i < len(advantages) else None,
                }
            )
        return rows

    return samples


def _text(value: Any) -> Any:
    """A prompt or completion as the store keeps it: text, or a chat's messages as role/content."""
    if isinstance(value, list):
        return [{"role": str(m.get("role")), "content": str(m.get("content"))} for m in value if isinstance(m, dict)]
    return str(value)


def _number(value: Any) -> float | None:
    """A reward as the store keeps it: a finite float, or None (a function's None, or NaN)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if number == number and abs(number) != float("inf") else None
