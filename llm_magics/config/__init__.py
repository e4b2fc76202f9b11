"""What the user wrote, checked: cell bodies and YAML, checkpoint references, the training
configuration and its validation, sweep blocks."""

from llm_magics.core.lazy import exports

_WHERE = {
    "CheckpointRef": "refs",
    "LLMTrainingConfiguration": "configuration",
    "Sweep": "sweep",
    "parse_cell": "cell",
    "parse_ref": "refs",
    "parse_sweep": "sweep",
    "parse_target": "refs",
}
__all__ = sorted(_WHERE)
__getattr__ = exports(__name__, _WHERE)
