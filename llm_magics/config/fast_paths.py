"""The fast paths, one key each: ``packing``, ``padding_free``, ``use_liger_kernel``,
``activation_offloading``, ``gradient_checkpointing`` and ``attn_implementation``.

What each needs of the machine that trains is checked there, before the model is loaded: a key
this machine cannot honour is a one-line error naming the key and what to do instead, never a
traceback from inside a kernel library. ``packing`` and ``padding_free`` work on every machine
(documents packed into one row are kept apart by their position ids).
"""

from __future__ import annotations

import importlib.util
from typing import Any

# attention implementations transformers names (a Hub kernel, "org/name", is passed as it is)
ATTENTION = ("eager", "sdpa", "flex_attention", "flash_attention_2", "flash_attention_3")
_FLASH_PACKAGE = {"flash_attention_2": "flash_attn", "flash_attention_3": "flash_attn_interface"}


def attention_problems(value: Any) -> list[str]:
    """``attn_implementation``, as written (any machine)."""
    if value is None or (isinstance(value, str) and (value in ATTENTION or "/" in value)):
        return []
    choices = ", ".join(ATTENTION)
    return [f"attn_implementation: {value!r} is not an attention implementation — one of {choices}"]


def machine_problems(values: dict[str, Any], cuda: bool) -> list[str]:
    """What this machine lacks for the fast paths ``values`` turn on (``cuda``: a GPU is visible)."""
    problems = []
    attention = values.get("attn_implementation")
    if attention in _FLASH_PACKAGE:
        package = _FLASH_PACKAGE[attention]
        if not cuda:
            problems.append(f"attn_implementation: {attention} needs a CUDA GPU and none is visible — use sdpa")
        elif not _installed(package):
            problems.append(f"attn_implementation: {attention} needs the {package} package — or use sdpa")
    if values.get("use_liger_kernel"):
        if not _installed("liger_kernel"):
            problems.append("use_liger_kernel: needs the liger-kernel package (pip install liger-kernel)")
        elif not cuda:
            problems.append("use_liger_kernel: Liger's kernels run on a CUDA GPU and none is visible — remove it")
    if values.get("activation_offloading") and not cuda:
        problems.append(
            "activation_offloading: moves activations from the GPU to CPU memory and no GPU is visible — "
            "remove it (gradient_checkpointing saves memory on any machine)"
        )
    return problems


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def chosen(config: Any) -> str:
    """The fast paths a configuration turns on, as a dry run says them."""
    keys = ("packing", "padding_free", "use_liger_kernel", "activation_offloading")
    on = [key for key in keys if getattr(config, key)]
    if getattr(config, "gradient_checkpointing", None):
        on.append("gradient_checkpointing")
    attention = config.attn_implementation or config.model_kwargs.get("attn_implementation")
    on.append(f"attention {attention or 'sdpa (the default)'}")
    if not config.packing and config.method == "sft" and config.task == "causal-lm":
        on.append("packing off (the default; packing: true packs documents into full rows)")
    return " · ".join(on)
