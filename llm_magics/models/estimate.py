"""What a run would cost, without loading any weights: parameters, trainable parameters, memory.

The model is built on PyTorch's meta device from its config alone, so this is instant even for
a 70B model. The memory figure is an estimate (weights + adapter and optimizer state + a rough
activation term), meant to tell 3 GiB from 30 GiB, not 3.1 from 3.2.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from llm_magics.models.loader import BaseModel, meta_model

if TYPE_CHECKING:
    from llm_magics.config.configuration import LLMTrainingConfiguration

_GIB = 1024**3
# bytes per base-model parameter when loaded: nf4 with double quantization keeps ~0.53 bytes
_WEIGHT_BYTES = {4: 0.53, 8: 1.06}
_TRAINABLE_BYTES = 16  # fp32 weight + gradient + two Adam moments


@dataclass
class Estimate:
    parameters: int
    trainable: int
    weights_gib: float
    training_state_gib: float
    activations_gib: float

    @property
    def total_gib(self) -> float:
        return self.weights_gib + self.training_state_gib + self.activations_gib


def estimate(config: LLMTrainingConfiguration, base: BaseModel, longest: int) -> Estimate:
    """Parameters and memory of training ``base`` with ``config`` on sequences up to ``longest``."""
    import torch

    model = meta_model(base)
    model_config = model.config
    parameters = sum(p.numel() for p in model.parameters())
    weight_bytes = _WEIGHT_BYTES[base.bits] if base.bits else 2.0 if torch.cuda.is_available() else 4.0
    trainable = parameters
    if config.use_lora:
        from peft import get_peft_model

        trainable, _ = get_peft_model(model, config.lora_config()).get_nb_trainable_parameters()
    width = getattr(model_config, "hidden_size", 1024)
    layers = getattr(model_config, "num_hidden_layers", 1)
    tokens = config.per_device_train_batch_size * min(longest, config.max_length or longest)
    per_layer = 34 if not config.gradient_checkpointing else 2  # bytes per token and hidden unit
    dtype_bytes = 4 if base.bits is None else 2
    return Estimate(
        parameters=parameters,
        trainable=trainable,
        weights_gib=parameters * weight_bytes / _GIB,
        training_state_gib=trainable * _TRAINABLE_BYTES / _GIB,
        activations_gib=tokens * width * layers * per_layer * dtype_bytes / 4 / _GIB,
    )
