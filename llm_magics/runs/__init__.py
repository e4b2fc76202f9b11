"""A run once it exists: its handle (status, wait, stop, metrics), following one trained elsewhere,
a detached run's log, a run named by its id or its model's name."""

from llm_magics.core.lazy import exports

_WHERE = {
    "Follower": "follow",
    "Run": "run",
    "RunState": "run",
    "Target": "target",
    "active_run": "run",
    "resolve_run": "target",
}
__all__ = sorted(_WHERE)
__getattr__ = exports(__name__, _WHERE)
