"""Training events -> the store and the run's live state.

Metric rows are written in batches (every ``flush_interval`` seconds, and before each checkpoint
record), so the step rate never sets the write rate. A checkpoint record is written after its
files are complete (the event only comes from ``on_save``); pruning deletes a record before its
files, so a crash in between leaves unlisted files, never a record without them.

When the database cannot be reached, training goes on: writes wait in order in an outbox and
go out when it answers again. If it still does not answer when the run ends, the waiting
records are saved to a file beside the checkpoints and the run's view says so. A write the
database refuses (a quota, a document it will not take) stops the run, which ends ``failed`` with
the reason: no run claims to train while nothing records it.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from pathlib import Path
from typing import Any, TextIO

from llm_magics.core.errors import RunError
from llm_magics.core.secrets import redact_text
from llm_magics.runs.run import RunState
from llm_magics.store.records import Store, best_of, now, unsaved
from llm_magics.training.run_log import RunLog, end_line, event_lines

_log = logging.getLogger(__name__)

_WRITES = {
    "update_run": "the run's record",
    "add_metrics": "the metrics",
    "add_checkpoint": "a checkpoint's record",
    "add_completions": "the sampled completions",
    "add_evaluations": "the evaluation's examples",
}


def _unreachable() -> tuple[type[BaseException], ...]:
    """Errors that say the database is away for now (a retry may succeed), not that it refuses."""
    from pymongo.errors import ConnectionFailure

    return (ConnectionFailure, sqlite3.OperationalError, ConnectionError, TimeoutError)


class Outbox:
    """Store writes in order; the first that fails for want of the database, and all after it,
    wait for the next try. A write the database refuses is dropped and its reason kept in
    ``refused``: trying it again would not help."""

    def __init__(self, store: Store):
        self.store = store
        self.pending: list[tuple[str, tuple, dict]] = []
        self.error: BaseException | None = None
        self.refused: list[str] = []

    def write(self, method: str, *args: Any, **kwargs: Any) -> bool:
        self.pending.append((method, args, kwargs))
        return self.flush()

    def flush(self) -> bool:
        """Sends what waits; True when nothing is left."""
        while self.pending:
            method, args, kwargs = self.pending[0]
            try:
                getattr(self.store, method)(*args, **kwargs)
            except _unreachable() as error:
                self.error = error
                return False
            except Exception as error:
                self.refused.append(f"{_WRITES.get(method, method)} was refused: {redact_text(error).strip()}")
            self.pending.pop(0)
        self.error = None
        return True

    def drain(self, grace: float) -> bool:
        """Keeps trying for ``grace`` seconds; True when everything was written."""
        deadline = time.monotonic() + grace
        while not self.flush():
            if time.monotonic() >= deadline:
                return False
            time.sleep(min(0.5, grace))
        return True

    def save(self, path: Path) -> None:
        """Keeps the waiting writes in ``path``, to be written when the database is next opened."""
        unsaved.keep(path, self.pending)


class Recorder:
    """Receives a run's events (from the kernel's trainer or from Ray workers). ``log``: the run's
    log file, or a stream that is its log, where each event becomes a line (``training.run_log``)."""

    def __init__(
        self,
        store: Store,
        state: RunState,
        *,
        keep: int | None = None,
        template: dict[str, Any] | None = None,
        flush_interval: float = 2.0,
        log_metrics: bool = True,
        grace: float = 30.0,
        output_dir: str | None = None,
        upload: str | None = None,
        log: str | TextIO | None = None,
    ):
        self.log = RunLog(log) if log is not None else None
        self.upload = upload  # None, or what of each checkpoint goes to GridFS: 'weights' / 'all'
        self.store, self.state, self.log_metrics = store, state, log_metrics
        self.outbox, self.grace, self.output_dir = Outbox(store), grace, output_dir
        self.keep, self.template, self.flush_interval = keep, template, flush_interval
        self._rows: list[dict[str, Any]] = []
        self._samples: list[dict[str, Any]] = []  # a reward method's sampled completions, per logging step
        self._examples: list[dict[str, Any]] = []  # eval_generate's scored examples, written with the checkpoint
        self._flushed = time.monotonic()
        self._summary: dict[str, Any] = {}

    def __call__(self, event: dict[str, Any]) -> None:
        getattr(self, "_on_" + event["kind"])(event)
        self._write(event_lines(event, self.state.total_steps))
        if self.outbox.refused:
            raise RunError(f"recording the run failed, so it was stopped: {self.outbox.refused[0]}")
        self.state.changed()

    def started(self) -> None:
        """The run starts now: a sweep's trial when Tune starts it, not when the sweep was recorded."""
        self.state.started = time.time()
        self.outbox.write("update_run", self.state.run_id, started=now())

    def _write(self, lines: list[str]) -> None:
        """Lines into the run's log; a log that cannot be written never stops the run."""
        if self.log is None:
            return
        try:
            self.log.write(lines)
        except OSError:
            _log.warning("the log of run %s could not be written", self.state.run_id, exc_info=True)

    def _on_begin(self, event: dict[str, Any]) -> None:
        self.state.status = "running"
        self.state.total_steps = event["total_steps"]
        self.state.step = self.state.first_step = event["step"]
        self.state.train_started = event["time"]
        self.outbox.write(
            "update_run",
            self.state.run_id,
            status="running",
            total_steps=event["total_steps"],
            first_step=event["step"],
            train_started=now(),
            progressed=now(),
        )

    def _on_log(self, event: dict[str, Any]) -> None:
        row = {k: v for k, v in event.items() if k != "kind"}
        self._rows.append({"run": self.state.run_id, "model": self.state.model, **row})
        state = self.state
        state.step, state.epoch = row["step"], row.get("epoch") or state.epoch
        state.take(row)
        if time.monotonic() - self._flushed >= self.flush_interval:
            self.flush()

    def _on_checkpoint(self, event: dict[str, Any]) -> None:
        self.flush()
        record = {
            "_id": f"{self.state.run_id}-{event['step']}",
            "model": self.state.model,
            "run": self.state.run_id,
            "step": event["step"],
            "epoch": event["epoch"],
            "path": event["path"],
            "files": event["files"],
            "size": event["size"],
            "metrics": event["metrics"],
            "probes": event.get("probes", []),
            "template": self.template,
            "created": now(),
        }
        if event.get("evaluation"):
            evaluation = event["evaluation"]
            record["evaluations"] = {evaluation["key"]: {k: v for k, v in evaluation.items() if k != "key"}}
        self.state.add_checkpoint(record)
        if self.outbox.write("add_checkpoint", record, upload=self.upload):
            self._prune()

    def _on_completions(self, event: dict[str, Any]) -> None:
        """Shown at once; written with the metric rows, in batches."""
        self.state.add_completions(event["step"], event["rows"])
        self._samples.append({"run": self.state.run_id, "step": event["step"], "rows": event["rows"]})

    def _on_evaluation(self, event: dict[str, Any]) -> None:
        """Shown at once; the examples are written just before the checkpoint they score."""
        step, key = event["step"], event["key"]
        self.state.add_evaluation(step, event["record"]["scores"], event["rows"])
        checkpoint = f"{self.state.run_id}-{step}"
        self._examples += [
            {
                "run": self.state.run_id,
                "model": self.state.model,
                "checkpoint": checkpoint,
                "step": step,
                "key": key,
                **row,
            }
            for row in event["rows"]
        ]

    def _on_warning(self, event: dict[str, Any]) -> None:
        """Only the log keeps it."""

    def _on_probe(self, event: dict[str, Any]) -> None:
        self.state.add_probes(event["step"], event["probes"])

    def _on_summary(self, event: dict[str, Any]) -> None:
        self._summary = {k: v for k, v in event.items() if k != "kind"}

    def _on_end(self, event: dict[str, Any]) -> None:
        self.state.step = event["step"]
        self.state.reason = event.get("reason")  # why it ended before max_steps (early stopping)
        self.flush()

    def flush(self) -> None:
        """Writes the buffered metric rows and the run's progress (or leaves them in the outbox)."""
        rows, self._rows = self._rows, []
        samples, self._samples = self._samples, []
        if self.log_metrics and rows:
            self.outbox.write("add_metrics", rows)
        if samples:
            self.outbox.write("add_completions", samples)
        examples, self._examples = self._examples, []
        if examples:
            self.outbox.write("add_evaluations", examples)
        state = self.state
        progress = {"progressed": now()} if rows else {}
        self.outbox.write(
            "update_run",
            state.run_id,
            tail=[{k: v for k, v in row.items() if k not in ("run", "model")} for row in rows],
            step=state.step,
            epoch=state.epoch,
            last_loss=state.loss,
            last_eval_loss=state.eval_loss,
            **progress,
        )
        self._flushed = time.monotonic()

    def finish(self, status: str, error: str | None = None) -> None:
        """Marks the run ended; called once by the runner, whatever happened. It never raises:
        what cannot be written now is kept on disk and written when the database is next opened."""
        state = self.state
        refused = len(self.outbox.refused)
        state.status, state.error, state.ended = status, error, time.time()
        self.flush()
        final = {"status": status, "error": error, "ended": now(), "duration": round(state.elapsed, 3)}
        if state.reason:
            final["reason"] = state.reason
        self.outbox.write("update_run", state.run_id, **final, summary=self._summary)
        end_refused = len(self.outbox.refused) > refused
        drained = self.outbox.drain(self.grace)
        if end_refused:  # kept for a later try: a run whose end is not recorded would claim to train
            self.outbox.pending.append(("update_run", (state.run_id,), final))
        lost = self._keep_unsaved() if not drained or self.outbox.pending else None
        notes = [text for text in (error, *self.outbox.refused[refused:], lost) if text]
        state.error = "; ".join(dict.fromkeys(notes)) or None
        self._write([end_line(state)])
        try:
            state.changed()
        except Exception:  # a broken view must not leave the runner without an end
            _log.exception("a view of run %s failed", state.run_id)

    def _keep_unsaved(self) -> str:
        """Saves what the database did not take beside the checkpoints; says where (or why not)."""
        kept = Path(self.output_dir or ".") / unsaved.UNSAVED
        reason = redact_text(self.outbox.error) if self.outbox.error else "it refused them"
        count = len(self.outbox.pending)
        try:
            self.outbox.save(kept)
        except OSError as failure:
            return (
                f"the database did not take {count} record(s) ({reason}) and they could not be kept in "
                f"{kept} either ({redact_text(failure)})"
            )
        return (
            f"the database did not answer ({reason}); {count} record(s) were not written and are kept in "
            f"{kept}; they are written when the database is next opened"
        )

    def _prune(self) -> None:
        """Keeps this run's newest ``keep`` checkpoints, its best one and the model's selected one."""
        if self.keep is None:
            return
        try:
            listed = self.store.list_checkpoints(self.state.model)
        except _unreachable():
            return  # the next checkpoint prunes
        records = [c for c in listed if c["run"] == self.state.run_id]
        protected = {c["_id"] for c in records if c["selected"]}
        best = best_of(records, self.store.best_by(self.state.model))
        if best is not None:
            protected.add(best["_id"])
        candidates = sorted(records, key=lambda c: c["step"])[: max(0, len(records) - self.keep)]
        for record in candidates:
            if record["_id"] not in protected:
                try:
                    self.store.remove_checkpoint(record)
                except _unreachable():
                    return
                self.state.checkpoints = [c for c in self.state.checkpoints if c["_id"] != record["_id"]]
