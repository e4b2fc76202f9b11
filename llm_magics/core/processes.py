"""Which process owns a run, and whether it is still there.

A process is gone only when the system says so: no process has its pid, or the one that has it
started at another time (the pid was reused). A process the system will not signal
(``PermissionError``: another user's, on a shared host) is alive. On another host, only the run's
heartbeat can tell.
"""

from __future__ import annotations

import datetime as dt
import functools
import os
import socket
from typing import Any


def process_owner(pid: int | None = None) -> dict[str, Any]:
    """Identifies this process (or a child, ``pid``) well enough to tell later whether it is
    still alive."""
    pid = os.getpid() if pid is None else pid
    return {"host": socket.gethostname(), "machine": machine(), "pid": pid, "start": process_start(pid)}


@functools.cache  # a process's boot and pid namespace do not change under it
def machine() -> str:
    """Where a pid means the same process: this boot of this kernel, and this pid namespace. A
    host name alone does not tell: two containers often share one (and a boot)."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as boot:
            booted = boot.read().strip()
        namespace = os.readlink("/proc/self/ns/pid")
    except OSError:
        return "unknown"
    return f"{booted}/{namespace}"


def same_host(owner: Any) -> bool:
    """Whether a record's owner ran where this process runs, so that its pid can be asked about
    (where there is no /proc to tell, e.g. macOS, the host name alone says so)."""
    return isinstance(owner, dict) and owner.get("host") == socket.gethostname() and owner.get("machine") == machine()


def process_start(pid: int) -> str | None:
    """When the process started (clock ticks since boot), or None when there is no such process
    or it has ended and only waits to be reaped (a zombie: a killed child of this kernel)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return None if fields[0] in ("Z", "X") else fields[19]


def owner_alive(owner: dict[str, Any], heartbeat: dt.datetime | None, now: dt.datetime, silence: dt.timedelta) -> bool:
    """Whether the process in ``owner`` may still be running its run. On another host: whether it
    wrote a heartbeat within ``silence`` of ``now``."""
    if not same_host(owner):
        return isinstance(heartbeat, dt.datetime) and now - heartbeat < silence
    pid = owner.get("pid")
    if not isinstance(pid, int) or isinstance(pid, bool):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists, and belongs to someone else
    started, now_started = owner.get("start"), process_start(pid)
    if now_started is None and os.path.isdir("/proc/self"):
        return _unreadable(pid)  # gone, a zombie, or hidden from this user (hidepid)
    return started is None or now_started in (started, None)


def _unreadable(pid: int) -> bool:
    """A process that answers signals but whose /proc entry does not read: alive unless it is a
    zombie (it has ended; only its exit status is left)."""
    try:
        with open(f"/proc/{pid}/status") as status:
            return not any(line.startswith("State:") and line.split()[1] in ("Z", "X") for line in status)
    except FileNotFoundError:
        return False  # it ended since it answered
    except OSError:
        return True
