"""Base models and what they do without training: loading (safetensors only), the Hub, generation
in a checkpoint's prompt format, the memory estimate, the tiny test models."""

from llm_magics.core.lazy import exports

_WHERE = {
    "BaseModel": "loader",
    "Estimate": "estimate",
    "estimate": "estimate",
    "generate": "generate",
    "load_cached": "loader",
    "shaped_model": "tiny",
    "tiny_model": "tiny",
    "tiny_sentencepiece_model": "tiny",
}
__all__ = sorted(_WHERE)
__getattr__ = exports(__name__, _WHERE)
