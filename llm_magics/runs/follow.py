"""Following a run through the store: how any kernel watches a run it does not train.

A run record carries its newest metric rows (``tail``), so each look reads that one record and
the checkpoints recorded since the last look: following a run costs the same at step 10 and at
step 100,000. A run whose process is gone is marked interrupted by the look that finds it so.
A running run whose step has not moved for a long time is shown as stalled.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from typing import TYPE_CHECKING, Any

from llm_magics.runs import logs
from llm_magics.runs.run import Control, Run, RunState
from llm_magics.store.records import ACTIVE, FINAL, alive, now

if TYPE_CHECKING:
    from llm_magics.store.database import DatabaseHandle

_log = logging.getLogger(__name__)
STALL_AFTER = 300.0  # seconds without a new step before a running run counts as stalled (at least)
_STALL_STEPS = 20  # ... and at least this many of its usual step times


def _seconds(value: Any) -> float | None:
    return value.replace(tzinfo=dt.UTC).timestamp() if isinstance(value, dt.datetime) else None


def stalled_for(record: dict[str, Any], at: dt.datetime | None = None) -> float | None:
    """Seconds since a running run's step last moved, when that is far longer than its steps take."""
    progressed = record.get("progressed")
    if record.get("status") != "running" or not isinstance(progressed, dt.datetime):
        return None
    quiet = ((at or now()) - progressed).total_seconds()
    pace = _pace(record)
    return quiet if quiet > max(STALL_AFTER, _STALL_STEPS * (pace or 0.0)) else None


def _pace(record: dict[str, Any]) -> float | None:
    """Seconds per step so far, from the record."""
    began, progressed = record.get("train_started"), record.get("progressed")
    step, first = _step(record), _step({"step": record.get("first_step") or 0})
    if not isinstance(began, dt.datetime) or not isinstance(progressed, dt.datetime) or min(step, first) < 0:
        return None
    done = step - first
    return (progressed - began).total_seconds() / done if done > 0 else None


def eta_of(record: dict[str, Any]) -> float | None:
    """Seconds left for an active run, at the pace its record shows."""
    pace, total = _pace(record), _step({"step": record.get("total_steps")})
    if pace is None or record.get("status") not in ACTIVE or total < 0:
        return None
    return pace * max(0, total - _step(record))


class Follower:
    """Keeps a ``RunState`` up to date from the store, reading only what is new."""

    def __init__(self, db: DatabaseHandle, run_id: str):
        self.db, self.run_id = db, run_id
        self.state = Run(db, run_id).stored_state()  # everything so far, once
        self._last_row = max((_step(row) for row in self.state.history), default=-1)
        self._last_checkpoint = max((c["step"] for c in self.state.checkpoints), default=-1)
        self._last_sampled = max((_step(row) for row in self.state.completions), default=-1)
        self.looks = 0
        record = self.db.store.runs.find_one({"_id": run_id}) or {}
        self.uncertain = _uncertain(record)  # judged dead from another host by its silence: it may write again
        self._apply(record)

    def look(self) -> bool:
        """Reads what changed since the last look into the state; True if anything did."""
        store = self.db.store
        record = store.runs.find_one({"_id": self.run_id})
        self.looks += 1
        if record is None:
            return False
        if record.get("status") in ACTIVE and not alive(record):
            store.reap()
            record = store.runs.find_one({"_id": self.run_id}) or record
        self.uncertain = _uncertain(record)
        if record.get("status") in FINAL:
            ended = Run(self.db, self.run_id).stored_state()  # the final word: pruned checkpoints gone
            self._apply(record, ended)
            return True
        before = (self.state.step, self.state.status, len(self.state.history), len(self.state.checkpoints))
        self._rows(record)
        self._checkpoints()
        self._completions()
        self._apply(record)
        after = (self.state.step, self.state.status, len(self.state.history), len(self.state.checkpoints))
        return after != before or self.state.stalled_for is not None

    def _rows(self, record: dict[str, Any]) -> None:
        tail = [row for row in record.get("tail") or [] if isinstance(row, dict) and _step(row) > self._last_row]
        if tail and len(record.get("tail") or []) >= 2 and _step(tail[0]) > self._last_row + 1:
            # the tail moved on past rows this follower has not seen: read those from the metrics
            missed = self.db.store.metrics.find(
                {"run": self.run_id, "step": {"$gt": self._last_row, "$lt": _step(tail[0])}}, {"_id": 0}
            )
            tail = sorted(missed, key=_step) + tail
        state = self.state
        for row in tail:
            state.step = max(state.step, _step(row))
            state.take(row)
            self._last_row = _step(row)

    def _checkpoints(self) -> None:
        found = self.db.store.checkpoints.find({"run": self.run_id, "step": {"$gt": self._last_checkpoint}})
        for record in sorted(found, key=_step):
            self.state.add_checkpoint(record)
            self._last_checkpoint = _step(record)

    def _completions(self) -> None:
        """A reward method's sampled completions of the steps logged since the last look."""
        for row in self.db.store.run_completions(self.run_id, after=self._last_sampled):
            self.state.completions.append(row)
            self._last_sampled = max(self._last_sampled, _step(row))

    def _apply(self, record: dict[str, Any], ended: RunState | None = None) -> None:
        state = self.state
        if ended is not None:
            state.history, state.checkpoints, state.probes = ended.history, ended.checkpoints, ended.probes
            state.completions = ended.completions
            state.ended, state.eval_accuracy, state.latest = ended.ended, ended.eval_accuracy, ended.latest
        state.status = record.get("status", state.status)
        state.error = record.get("error")
        if isinstance(record.get("step"), int):
            state.step = max(state.step, record["step"])
        state.total_steps = record.get("total_steps", state.total_steps)
        state.epoch = record.get("epoch") or state.epoch
        for name, field in (("loss", "last_loss"), ("eval_loss", "last_eval_loss")):
            if record.get(field) is not None:
                setattr(state, name, record[field])
        state.train_started = _seconds(record.get("train_started")) or state.train_started
        state.first_step = record.get("first_step") or state.first_step
        state.log, state.reason = logs.of_run(record), record.get("reason")
        state.stalled_for = stalled_for(record)


_KEEP_LOOKING = 600.0  # seconds a silent run is still looked at after its last write


def _uncertain(record: dict[str, Any]) -> bool:
    """Whether a run was judged dead only by its silence on another host, not long ago."""
    beat = record.get("heartbeat")
    silence = (now() - beat).total_seconds() if isinstance(beat, dt.datetime) else _KEEP_LOOKING
    return record.get("reaped") == "silent" and silence < _KEEP_LOOKING


def _step(row: dict[str, Any]) -> int:
    step = row.get("step")
    return step if isinstance(step, int) and not isinstance(step, bool) else -1


def follow(run: Run, interval: float = 0.5) -> Run:
    """Makes ``run`` (trained elsewhere) live in this kernel: its state follows the store every
    ``interval`` seconds until it ends; ``stop()`` asks its process through the store."""
    if run.control is not None:
        return run
    follower = Follower(run.db, run.id)
    state = follower.state
    control = Control()  # its stop() asks the process through the store
    run.state, run.control, run.followed = state, control, True
    if state.status in FINAL:
        control.done.set()
        if not follower.uncertain:
            return run
    run.register()
    threading.Thread(target=_keep_up, args=(follower, run, interval), daemon=True, name=f"follow-{run.id}").start()
    return run


def _keep_up(follower: Follower, run: Run, interval: float) -> None:
    """Looks until the run ends. A run judged dead only by its silence on another host ends for
    ``wait()``, but is still looked at, less often, for a while: if it writes again, it is running
    again, and so are its views."""
    state = follower.state
    while state.status not in FINAL or follower.uncertain:
        time.sleep(interval if state.status not in FINAL else interval * 10)
        try:
            changed = follower.look()
        except Exception:  # the database away: keep looking
            _log.debug("following run %s", run.id, exc_info=True)
            continue
        if changed:
            try:
                state.changed()
            except Exception:
                _log.exception("a view of run %s failed", run.id)
        # the views have shown the end before wait() returns (a notebook's next cell may be its last)
        if state.status in FINAL:
            run.finished()
        elif run.control is not None and run.control.done.is_set():  # it came back
            run.control.done.clear()
            run.register()
    run.finished()
