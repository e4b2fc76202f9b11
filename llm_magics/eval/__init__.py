"""Evaluation by generation (SPEC §12): checkpoints scored by what they answer on held-out
documents, with built-in metrics, the notebook's own functions and judges."""

from llm_magics.core.lazy import exports

_WHERE = {
    "EvalJob": "scorer",
    "Scorer": "scorer",
    "eval_job": "scorer",
    "held_out_examples": "examples",
}
__all__ = sorted(_WHERE)
__getattr__ = exports(__name__, _WHERE)
