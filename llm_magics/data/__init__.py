"""Documents to what a trainer takes: the selection, its format, the tokenized train and valid
sets."""

from llm_magics.core.lazy import exports

_WHERE = {
    "Format": "training_set",
    "Selection": "training_set",
    "TrainingSet": "training_set",
    "build": "training_set",
}
__all__ = sorted(_WHERE)
__getattr__ = exports(__name__, _WHERE)
