"""Notebook views: they read the store and the live run state, and never train."""

from llm_magics.core.lazy import exports

_WHERE = {
    "CheckpointBrowser": "checkpoints",
    "ExportPanel": "export",
    "SweepView": "sweep",
    "TrainingView": "progress",
    "show_run": "progress",
}
__all__ = sorted(_WHERE)
__getattr__ = exports(__name__, _WHERE)
