"""What a run would cost, without loading any weights: parameters, trainable parameters, memory.

The model is built on PyTorch's meta device from its config alone, so this is instant even for
a 70B model. The memory figure is the peak a run reaches: the weights as they are held while
training, the adapter and optimizer state, and the activations the backward pass keeps.

The activation term is calibrated, not derived (BENCHMARKS.md §16 has the figures): a layer keeps
about ``_ACTIVATION_BYTES`` bytes per token for each unit of ``hidden_size + intermediate_size``,
measured with 4-bit QLoRA on random Llama models of Llama-3.2-1B's and Llama-3.1-8B's shapes (an
H200 in bfloat16: 19.8 and 19.3; this CPU in float32: 24.2). With gradient checkpointing a layer
keeps only its float32 input, and one layer at a time is recomputed in full.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from llm_magics.models.loader import BaseModel, meta_model

if TYPE_CHECKING:
    from llm_magics.config.configuration import LLMTrainingConfiguration

_GIB = 1024**3
# bytes per quantized parameter: nf4 with double quantization keeps ~0.53 bytes, int8 ~1.06
_WEIGHT_BYTES = {4: 0.53, 8: 1.06}
_TRAINABLE_BYTES = 16  # fp32 weight + gradient + two Adam moments
_ACTIVATION_BYTES = {"bfloat16": 19.5, "float32": 24.2}  # per token, layer and (hidden + intermediate) unit
_LIGER_SHARE = 0.85  # Liger's fused RMSNorm and SwiGLU keep less (H200, 1B shape: 11.9 against 13.9 GiB)
_OVERHEAD_GIB = 32 / 1024  # the trainer's own working memory (the tiny model on this CPU: 36 MiB)
_PAIRED = ("dpo", "orpo", "cpo", "simpo")  # a chosen and a rejected sequence per example


@dataclass
class Estimate:
    parameters: int
    trainable: int
    weights_gib: float
    training_state_gib: float
    activations_gib: float
    overhead_gib: float = _OVERHEAD_GIB

    @property
    def total_gib(self) -> float:
        return self.weights_gib + self.training_state_gib + self.activations_gib + self.overhead_gib


def estimate(config: LLMTrainingConfiguration, base: BaseModel, longest: int, gpu: bool | None = None) -> Estimate:
    """Parameters and peak memory of training ``base`` with ``config`` on sequences up to ``longest``,
    on a CUDA GPU (``gpu``; default: whether this machine has one) or a CPU."""
    import torch

    model = meta_model(base)
    model_config = model.config
    parameters = sum(p.numel() for p in model.parameters())
    gpu = torch.cuda.is_available() if gpu is None else gpu
    weights = _weight_bytes(model, base.bits, gpu)
    trainable = parameters
    if config.use_lora:
        from peft import get_peft_model

        trainable, _ = get_peft_model(model, config.lora_config()).get_nb_trainable_parameters()
    length = config.max_length if config.packing and config.max_length else min(longest, config.max_length or longest)
    tokens = config.per_device_train_batch_size * length * (2 if config.method in _PAIRED else 1)
    return Estimate(
        parameters=parameters,
        trainable=trainable,
        weights_gib=weights / _GIB,
        training_state_gib=trainable * _TRAINABLE_BYTES / _GIB,
        activations_gib=_activation_bytes(model_config, config, tokens, gpu) / _GIB,
    )


def _weight_bytes(model: Any, bits: int | None, gpu: bool) -> float:
    """The weights as training holds them. Quantized, every linear layer but the output head is
    packed and the rest (embeddings, norms, the head) is upcast to float32 for training (peft's
    ``prepare_model_for_kbit_training``); else the model is in bfloat16 on a GPU, float32 on a CPU."""
    import torch

    total = sum(p.numel() for p in model.parameters())
    if bits is None:
        return total * (2 if gpu else 4)
    head = model.get_output_embeddings()
    packed = {
        id(module.weight): module.weight.numel()
        for module in model.modules()
        if isinstance(module, torch.nn.Linear) and module is not head
    }
    quantized = sum(packed.values())
    return quantized * _WEIGHT_BYTES[bits] + (total - quantized) * 4


def _activation_bytes(model_config: Any, config: LLMTrainingConfiguration, tokens: int, gpu: bool) -> float:
    width = getattr(model_config, "hidden_size", 1024)
    inner = getattr(model_config, "intermediate_size", 4 * width)
    layers = getattr(model_config, "num_hidden_layers", 1)
    per_layer = _ACTIVATION_BYTES["bfloat16" if gpu else "float32"] * (width + inner) * tokens
    if config.use_liger_kernel:
        per_layer *= _LIGER_SHARE
    if config.gradient_checkpointing:
        return tokens * width * 4 * layers + per_layer  # each layer's input, and one layer recomputed
    return per_layer * layers
