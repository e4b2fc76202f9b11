"""What a run uses of the machine where there is no GPU: the training process's CPU and memory.

Read at each logged step, from counters the kernel keeps (``os.times``, ``/proc/self/statm``,
``getrusage``): a few microseconds, no sampling thread. The CPU share is over the time since the
previous logged step, so it is the training's and not an average since the kernel began; 100% is
one core busy.
"""

from __future__ import annotations

import os
import sys
import time

try:
    import resource
except ImportError:  # Windows
    resource = None  # type: ignore[assignment]

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def _cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


def _resident() -> int | None:
    """This process's resident memory in bytes (Linux); None elsewhere."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * _PAGE
    except (OSError, IndexError, ValueError):
        return None


def _peak() -> int | None:
    """The most resident memory this process has held, in bytes."""
    if resource is None:
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # macOS counts bytes, Linux KiB


class HostUsage:
    """The process's CPU share since the last reading, and its memory now and at its peak."""

    def __init__(self) -> None:
        self._last = (time.monotonic(), _cpu_seconds())

    def read(self) -> dict[str, float]:
        """``cpu_percent`` (after the first reading), ``ram_rss`` and ``ram_peak`` (bytes)."""
        now, cpu = time.monotonic(), _cpu_seconds()
        (then, before), self._last = self._last, (now, cpu)
        values: dict[str, float] = {}
        if now - then > 1e-3:
            values["cpu_percent"] = 100 * (cpu - before) / (now - then)
        resident, peak = _resident(), _peak()
        if resident is not None:
            values["ram_rss"] = resident
        if peak is not None or resident is not None:  # the kernel's peak may lag the pages just taken
            values["ram_peak"] = max(peak or 0, resident or 0)
        return values
