"""A checkpoint out of the store: merged into its base, converted to GGUF and checked against the
model, with an Ollama Modelfile."""

from llm_magics.core.lazy import exports

_WHERE = {
    "export_gguf": "gguf",
    "export_model": "merged",
    "modelfile": "modelfile",
}
__all__ = sorted(_WHERE)
__getattr__ = exports(__name__, _WHERE)
