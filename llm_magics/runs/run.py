"""The Run handle: what a started training run looks like to the user, live or from the store.

Its rich display (the live view, the static summary) belongs to the views, which register it
with IPython; here it is data and control only.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llm_magics.core.errors import RunError
from llm_magics.runs import logs
from llm_magics.store.records import FINAL

if TYPE_CHECKING:
    from llm_magics.store.database import DatabaseHandle

DETACHED = ("process", "ray-job")  # backends whose runs outlive the kernel and stop through the store
# runs still training in this process, or followed from it, by id (for %llm_stop and the views)
_active: dict[str, Run] = {}
COMPLETIONS_KEPT = 64  # sampled completions a live view keeps (the store keeps every recorded one)
RECENT = 20  # logged steps the pace (ETA) and the token rate are measured over
ROW_FIELDS = ("loss", "eval_loss", "eval_accuracy", "learning_rate", "tokens_per_s")  # a logged row's, kept live
# a logged row's other numbers kept live (their newest value, in RunState.latest): besides these, every eval_*
LATEST: tuple[str, ...] = ("mean_token_accuracy", "samples_per_s", "gpu_memory_allocated", "gpu_memory_reserved")
LATEST += ("gpu_memory_peak", "reward", "rewards/margins", "rewards/accuracies")  # and a method's signal
LATEST += ("cpu_percent", "ram_rss", "ram_peak")  # the process's, where there is no GPU


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


# the training signals of the preference and reward methods (SPEC §11), charted beside the loss
METHOD_SIGNALS = ("reward", "kl", "entropy", "completions/mean_length")


def charted(name: str) -> bool:
    """Whether a logged number is a series of the run's chart."""
    name = name.removeprefix("eval_")
    return (
        name in ("step", "loss", "learning_rate", *METHOD_SIGNALS)
        or name.endswith("accuracy")
        or (name.startswith("rewards/") and not name.endswith("/std"))
    )


def chart_point(row: dict[str, Any]) -> dict[str, Any] | None:
    """A logged row's point of the run's chart: the step, the losses, the learning rate, the
    accuracies, the method's own signals and the evaluation's metrics (numbers only), and when it
    was logged (``time``, for the chart's time axis); None when it has none of them."""
    point = {
        name: value
        for name, value in row.items()
        if _number(value) and (charted(name) or name.startswith("eval_") or name == "time")
    }
    if "reward" not in row:  # SFT logs its entropy too; it is charted where a reward method's is
        point.pop("entropy", None)
    return point if set(point) - {"step", "time"} else None


@dataclass
class RunState:
    """Live progress of a run in this process; the recorder writes it, views read it."""

    run_id: str
    model: str
    backend: str
    status: str = "starting"
    step: int = 0
    total_steps: int | None = None
    epoch: float = 0.0
    started: float = field(default_factory=time.time)
    train_started: float | None = None  # when the first step began (model loaded)
    first_step: int = 0  # the step training began at (a resumed run does not begin at 0)
    ended: float | None = None
    loss: float | None = None
    eval_loss: float | None = None
    eval_accuracy: float | None = None  # text classification
    learning_rate: float | None = None
    tokens_per_s: float | None = None
    error: str | None = None
    history: list[dict[str, Any]] = field(default_factory=list)  # the chart's points (chart_point)
    latest: dict[str, float] = field(default_factory=dict)  # the newest of each LATEST and eval_* number
    checkpoints: list[dict[str, Any]] = field(default_factory=list)
    probes: list[dict[str, Any]] = field(default_factory=list)  # {step, prompt, answer} of every probed step
    # a reward method's sampled completions: {step, prompt, completion, rewards} of the newest logging steps
    completions: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=COMPLETIONS_KEPT), repr=False)
    # eval_generate: the newest evaluation's scored examples {index, prompt, reference, prediction, scores}
    examples: list[dict[str, Any]] = field(default_factory=list, repr=False)
    examples_step: int | None = None
    scores: list[str] = field(default_factory=list)  # eval_generate's metrics (charted as eval_NAME)
    log: Path | None = None  # a detached run's log file, in its own directory on this machine
    config: dict[str, Any] = field(default_factory=dict, repr=False)  # as the run's record keeps it (masked)
    config_set: list[str] = field(default_factory=list, repr=False)  # its keys away from their defaults
    reason: str | None = None  # why it ended before max_steps, e.g. early stopping
    stalled_for: float | None = None  # seconds since a running run's step last moved, when far too long
    stopping: str | None = None  # asked to stop, not stopped yet: what the views say meanwhile
    # (time, step, tokens seen) of the newest logged steps: the pace and the token rate over a window
    recent: deque[tuple[float, int, float | None]] = field(default_factory=lambda: deque(maxlen=RECENT), repr=False)
    listeners: list[Callable[[RunState], None]] = field(default_factory=list, repr=False)

    def take(self, row: dict[str, Any]) -> None:
        """A logged step's values into the state: its metrics, its point of the chart, and its
        time and token count for the windowed pace and rate (the step is the caller's)."""
        self.logged(row)
        for name in ROW_FIELDS:
            if row.get(name) is not None:
                setattr(self, name, row[name])
        self.latest.update({k: v for k, v in row.items() if (k in LATEST or k.startswith("eval_")) and _number(v)})
        point = chart_point(row)
        if point is not None:
            self.history.append(point)

    def add_probes(self, step: Any, probes: list[Any]) -> None:
        """A step's probe answers, after those of the steps before (a step probed again replaces
        its answers); entries that are not mappings (a damaged record) are left out."""
        self.probes = [p for p in self.probes if p["step"] != step]
        self.probes += [{**probe, "step": step} for probe in probes if isinstance(probe, dict)]

    def add_completions(self, step: Any, rows: list[Any]) -> None:
        """A logging step's sampled completions (entries that are not mappings are left out)."""
        self.completions.extend({**row, "step": step} for row in rows if isinstance(row, dict))

    def add_evaluation(self, step: Any, scores: dict[str, Any], rows: list[Any]) -> None:
        """An evaluation's scored examples (the view shows the newest); its scores come as eval_* rows."""
        self.examples = [row for row in rows if isinstance(row, dict)]
        self.examples_step = step if isinstance(step, int) else None
        self.add_scores(scores)

    def add_scores(self, scores: Any) -> None:
        """The names of generation metrics a checkpoint was scored by (its record's ``evaluations``)."""
        names = [name for name in scores if isinstance(name, str)] if isinstance(scores, dict) else []
        self.scores = list(dict.fromkeys([*self.scores, *names]))

    def add_checkpoint(self, record: dict[str, Any]) -> None:
        """A recorded checkpoint: its probe answers and the metrics it was scored by."""
        self.checkpoints.append(record)
        if isinstance(record.get("probes"), list):
            self.add_probes(record.get("step"), record["probes"])
        evaluations = record.get("evaluations")
        for evaluation in evaluations.values() if isinstance(evaluations, dict) else []:
            self.add_scores(evaluation.get("scores") if isinstance(evaluation, dict) else None)

    def logged(self, row: dict[str, Any]) -> None:
        """Keeps a logged step's time, step and token count for the windowed pace and rate."""
        moment, step = row.get("time"), row.get("step")
        if isinstance(moment, int | float) and isinstance(step, int) and not isinstance(step, bool):
            tokens = row.get("num_tokens")
            self.recent.append((float(moment), step, tokens if isinstance(tokens, int | float) else None))

    def changed(self) -> None:
        for listener in list(self.listeners):
            listener(self)

    @property
    def elapsed(self) -> float:
        return (self.ended or time.time()) - self.started


@dataclass
class Control:
    """How the kernel steers a live run."""

    stop: threading.Event = field(default_factory=threading.Event)
    done: threading.Event = field(default_factory=threading.Event)
    on_stop: Callable[[], None] | None = None  # e.g. tells Ray workers


class Run:
    """A training run: ``.id``, ``.status``, ``.wait()``, ``.stop()``, ``.metrics``, ``.checkpoints``."""

    def __init__(self, db: DatabaseHandle, run_id: str, state: RunState | None = None, control: Control | None = None):
        self.db, self.id, self.state, self.control = db, run_id, state, control
        self.shown_in: int | None = None  # the cell whose output already holds this run's view
        self.followed = False  # its state follows the store (it trains in another process)
        if control is not None and not control.done.is_set():
            self.register()

    def register(self) -> None:
        """Lists the run among those live in this process (``%llm_stop`` finds it here)."""
        _active[self.id] = self

    def __repr__(self) -> str:
        steps = f"{self.step}/{self.total_steps}" if self.total_steps else str(self.step)
        return f"Run(id='{self.id}', model='{self.model}', status='{self.status}', step={steps})"

    def live(self) -> tuple[RunState, Control]:
        """The state and the controls of a run training in this process."""
        if self.state is None or self.control is None:
            raise RunError(f"run {self.id} is not training in this kernel (status: {self.status})")
        return self.state, self.control

    def stored_state(self) -> RunState:
        """The run's state rebuilt from its records (for a run that is not live here)."""
        record = self.record
        state = RunState(
            self.id,
            record["model"],
            record.get("backend", ""),
            status=record["status"],
            step=record.get("step", 0),
            total_steps=record.get("total_steps"),
            epoch=record.get("epoch") or 0.0,
            loss=record.get("last_loss"),
            eval_loss=record.get("last_eval_loss"),
            error=record.get("error"),
            log=logs.of_run(record),
            reason=record.get("reason"),
            config=record["config"] if isinstance(record.get("config"), dict) else {},
        )
        set_keys = record.get("config_set")
        state.config_set = [key for key in set_keys if isinstance(key, str)] if isinstance(set_keys, list) else []
        started, duration = record.get("started"), record.get("duration")
        if isinstance(started, dt.datetime):
            state.started = started.replace(tzinfo=dt.UTC).timestamp()
        if isinstance(record.get("train_started"), dt.datetime):
            state.train_started = record["train_started"].replace(tzinfo=dt.UTC).timestamp()
            state.first_step = record.get("first_step") or 0
        if isinstance(duration, int | float) and not isinstance(duration, bool):
            state.ended = state.started + duration
        for row in self.db.store.run_metrics(self.id):  # as they were logged: the same chart and metrics
            state.take(row)
        for checkpoint in self.checkpoints:
            state.add_checkpoint(checkpoint)
        for row in self.db.store.run_completions(self.id, newest=state.completions.maxlen):
            state.completions.append(row)
        return state

    @property
    def record(self) -> dict[str, Any]:
        """The run's record in the database."""
        return self.db.store.run(self.id)

    @property
    def model(self) -> str:
        return self.state.model if self.state else self.record["model"]

    @property
    def status(self) -> str:
        return self.state.status if self.state else self.record["status"]

    @property
    def step(self) -> int:
        return self.state.step if self.state else self.record.get("step", 0)

    @property
    def total_steps(self) -> int | None:
        return self.state.total_steps if self.state else self.record.get("total_steps")

    @property
    def error(self) -> str | None:
        return self.state.error if self.state else self.record.get("error")

    def wait(self, timeout: float | None = None, poll: float = 0.5) -> Run:
        """Blocks until the run ends (or ``timeout`` seconds pass); returns the run. A run trained
        elsewhere (a detached process, another kernel) is followed through the store."""
        if self.control is not None:
            if not self.control.done.wait(timeout):
                raise TimeoutError(f"run {self.id} is still {self.status} after {timeout} s")
            return self
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.record["status"] not in FINAL:  # each look notices a process that died
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"run {self.id} is still {self.status} after {timeout} s")
            time.sleep(poll)
        return self

    def stop(self) -> Run:
        """Asks the run to save a checkpoint and stop; returns at once (``wait()`` to block).
        A detached run is asked through the store, from any kernel."""
        if self.control is not None and not self.control.done.is_set() and not self.followed:
            self.control.stop.set()
            if self.control.on_stop is not None:
                self.control.on_stop()
            return self
        record = self.record
        if record["status"] in FINAL and record.get("reaped") != "silent":  # silent: it may be alive
            raise RunError(f"run {self.id} is not training (status: {record['status']})")
        if record.get("backend") not in DETACHED:
            owner = record.get("owner") or {}
            raise RunError(
                f"run {self.id} trains in another kernel (process {owner.get('pid')} on {owner.get('host')}): "
                "stop it there; only detached runs stop from any kernel"
            )
        self.db.store.request_stop(self.id)
        if self.control is not None:
            self.control.stop.set()
        return self

    @property
    def metrics(self) -> Any:
        """The logged steps as a pandas DataFrame (one row per logged step)."""
        import pandas as pd

        rows = self.db.store.run_metrics(self.id)
        frame = pd.DataFrame(rows).drop(columns=["run", "model"], errors="ignore")
        if "time" in frame:  # when the step was logged, as a date (UTC), not epoch seconds
            frame["time"] = pd.to_datetime(frame["time"], unit="s", utc=True)
        for column in [c for c in frame.columns if c.endswith("num_tokens")]:
            frame[column] = frame[column].astype("Int64")  # counts are whole numbers (empty where not logged)
        return frame

    def completions(self) -> Any:
        """A reward method's sampled completions as a pandas DataFrame: one row per completion, with
        its step, prompt, completion and each reward function's value (a column per function)."""
        import pandas as pd

        rows = []
        for row in self.db.store.run_completions(self.id):
            scores = row.get("rewards")
            rows.append(
                {
                    "step": row.get("step"),
                    "prompt": row.get("prompt"),
                    "completion": row.get("completion"),
                    **(scores if isinstance(scores, dict) else {}),
                }
            )
        return pd.DataFrame(rows, columns=None if rows else ["step", "prompt", "completion"])

    def evaluations(self) -> Any:
        """The scored examples of every evaluation by generation of this run's checkpoints, as a
        pandas DataFrame: its step, prompt, reference, prediction and a column per metric."""
        import pandas as pd

        rows = []
        for checkpoint in self.checkpoints:
            for row in self.db.store.checkpoint_evaluations(checkpoint["_id"]):
                scores = row.get("scores")
                shown = {
                    k: row.get(k) for k in ("step", "checkpoint", "key", "index", "prompt", "reference", "prediction")
                }
                rows.append({**shown, **(scores if isinstance(scores, dict) else {})})
        columns = ["step", "checkpoint", "key", "index", "prompt", "reference", "prediction"]
        return pd.DataFrame(rows, columns=None if rows else columns)

    @property
    def checkpoints(self) -> list[dict[str, Any]]:
        """This run's checkpoint records, by step."""
        return [c for c in self.db.store.list_checkpoints(self.model) if c["run"] == self.id]

    def finished(self) -> None:
        """Called by the runner when the run has ended."""
        _active.pop(self.id, None)
        if self.control is not None:
            self.control.done.set()


def active_run(run_id: str) -> Run | None:
    """The run with this id if it is training in this process."""
    return _active.get(run_id)
