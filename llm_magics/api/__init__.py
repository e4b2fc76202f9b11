"""The seed's Python API: connect() and the Database with load and apply; LLM and
TextClassification, which fit, predict and export."""

from llm_magics.core.lazy import exports

_WHERE = {
    "Database": "database",
    "LLM": "llm",
    "TextClassification": "classification",
    "connect": "database",
    "load_llm": "database",
    "superduper": "database",
}
__all__ = sorted(_WHERE)
__getattr__ = exports(__name__, _WHERE)
