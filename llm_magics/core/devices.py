"""What this machine's accelerator can do, asked in one place."""

from __future__ import annotations

from typing import Any


def cuda_bf16() -> bool:
    """Whether a CUDA GPU with bfloat16 support is visible."""
    import torch

    return torch.cuda.is_available() and torch.cuda.is_bf16_supported()


def default_device_map() -> dict[str, Any] | None:
    """The current CUDA device for the whole model, or None (the CPU)."""
    import torch

    return {"": torch.cuda.current_device()} if torch.cuda.is_available() else None
