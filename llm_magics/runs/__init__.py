"""A run once it exists: its handle (status, wait, stop, metrics), following one trained elsewhere,
a detached run's log."""

from llm_magics.core.lazy import exports

_WHERE = {
    "Follower": "follow",
    "Run": "run",
    "RunState": "run",
    "active_run": "run",
}
__all__ = sorted(_WHERE)
__getattr__ = exports(__name__, _WHERE)
