"""The TrainerCallback that turns the trainer's hooks into events for the store and the view.

Events are plain dicts, so the same callback works in the kernel and in a Ray worker (where the
sink forwards them to the kernel). Only the main process emits; every process obeys a stop.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from llm_magics.store.artifacts import file_digests
from llm_magics.training.host import HostUsage

Sink = Callable[[dict[str, Any]], None]
# numbers from the trainer's logs that are not metrics of the model
_NOT_METRICS = {
    "total_flos",
    "train_runtime",
    "train_samples_per_second",
    "train_steps_per_second",
    "eval_runtime",
    "eval_samples_per_second",
    "eval_steps_per_second",
}


_CHECKPOINT_METRICS = ("loss", "learning_rate", "reward")  # and every evaluation's (eval_*)


class StopSignal(Protocol):
    def is_set(self) -> bool: ...


class ProgressCallback(TrainerCallback):
    """Emits begin / log / checkpoint / end events and stops the run when asked.

    Args:
        sink: receives each event (on the main process only).
        stop: when set, the trainer saves a checkpoint and stops after the current step.
        probe: answers the probe prompts with the model in training; its answers travel with
            the checkpoint event.
    """

    def __init__(
        self,
        sink: Sink,
        stop: StopSignal | None = None,
        probe: Callable[[Any], list[dict[str, str]]] | None = None,
        probe_steps: int | None = None,
        early: Any = None,
    ):
        self.sink, self.stop, self.probe, self.probe_steps = sink, stop, probe, probe_steps
        self.early = early  # transformers' EarlyStoppingCallback, when the run has one
        self._row: dict[str, Any] | None = None
        self._last: dict[str, Any] = {}
        self._counts: dict[str, tuple[float, float]] = {}  # (time, tokens or samples seen) at the last log
        self._cuda = False  # whether the logged rows carry the GPU's memory
        self._host: HostUsage | None = None  # without a GPU, the rows carry the process's CPU and memory
        self.stopped = False
        # a reward method's newest sampled completions with their rewards (set once its trainer exists)
        self.samples: Callable[[], list[dict[str, Any]]] | None = None
        # eval_generate: scores the model on held-out examples ({key, record, rows}), at each save or the end
        self.scorer: Callable[[Any], dict[str, Any]] | None = None
        self.score_at, self.score_names = "save", ()
        self._scored: dict[str, Any] | None = None  # the newest evaluation, for the checkpoint saved after it

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        self._cuda = _cuda()
        self._host = None if self._cuda else HostUsage()
        if state.is_world_process_zero:
            self.sink(
                {
                    "kind": "begin",
                    "total_steps": state.max_steps,
                    "step": state.global_step,
                    "epochs": args.num_train_epochs,
                    "time": time.time(),
                }
            )

    def on_step_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        self._flush_row()

    def on_step_end(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        model: Any = None,
        **kwargs: Any,
    ) -> None:
        stopping = self.stop is not None and self.stop.is_set()
        if stopping:
            self.stopped = control.should_training_stop = True
        if stopping or state.global_step >= state.max_steps:
            # the end of a run is always kept, with its own evaluation
            control.should_save = True
            control.should_evaluate = args.eval_strategy != "no"
        due = self.probe_steps and state.global_step % self.probe_steps == 0 and not control.should_save
        if due and self.probe is not None and model is not None and state.is_world_process_zero:
            self.sink({"kind": "probe", "step": state.global_step, "probes": self.probe(model)})

    def on_log(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        logs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        if not state.is_world_process_zero or not logs:
            return
        numbers = {k: v for k, v in logs.items() if isinstance(v, int | float) and k not in _NOT_METRICS}
        if "train_runtime" in logs:
            self._flush_row()
            self.sink({"kind": "summary", **{k: v for k, v in logs.items() if isinstance(v, int | float)}})
            return
        if self._row is not None and self._row["step"] != state.global_step:
            self._flush_row()
        if self._row is None:
            self._row = {"step": state.global_step, "time": time.time()}
        self._row.update(numbers)
        self._row["epoch"] = state.epoch
        moment = time.perf_counter()
        if "num_tokens" in numbers:
            self._per_second(self._row, "tokens_per_s", numbers["num_tokens"], moment)
        if "loss" in numbers:  # a training log (an evaluation's comes at the same step, or after it)
            batch = args.train_batch_size * args.gradient_accumulation_steps * args.world_size
            self._per_second(self._row, "samples_per_s", state.global_step * batch, moment)
        if self._cuda:
            self._row.update(gpu_memory())
        elif self._host is not None and "loss" in numbers:
            self._row.update(self._host.read())
        self._last.update(numbers)
        if self.samples is not None and "loss" in numbers:
            rows = self.samples()
            if rows:
                self.sink({"kind": "completions", "step": state.global_step, "rows": rows})

    def on_evaluate(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        metrics: dict[str, Any] | None = None,
        model: Any = None,
        **kwargs: Any,
    ) -> None:
        """Scores generations where a checkpoint follows (or at the end); the scores join the
        evaluation's metrics before the trainer and early stopping read them (``eval_NAME``).
        Every process scores, so that each judges the same best metric."""
        if self.score_at == "save":  # and at every evaluation when the trainer picks its best by a score
            best = (args.metric_for_best_model or "").removeprefix("eval_")
            due = control.should_save or best in self.score_names
        else:
            due = state.global_step >= state.max_steps or self.stopped
        if self.scorer is None or model is None or metrics is None or not due:
            return
        scored = self.scorer(model)
        named = {f"eval_{k}": v for k, v in scored["record"]["scores"].items() if v is not None}
        metrics.update(named)
        if not state.is_world_process_zero:
            return
        self._last.update(named)
        if self._row is None:
            self._row = {"step": state.global_step, "time": time.time()}
        self._row.update(named)
        self._scored = {"step": state.global_step, **scored}
        self.sink({"kind": "evaluation", "step": state.global_step, **scored})

    def _per_second(self, row: dict[str, Any], name: str, seen: float, moment: float) -> None:
        """``row[name]``: how fast ``seen`` (a count that only grows) grew since the last log."""
        last = self._counts.get(name)
        if last is not None and moment > last[0] and seen > last[1]:
            row[name] = (seen - last[1]) / (moment - last[0])
        self._counts[name] = (moment, seen)

    def on_save(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        model: Any = None,
        **kwargs: Any,
    ) -> None:
        if not state.is_world_process_zero:
            return
        self._flush_row()
        directory = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        files = file_digests(directory)
        event = {
            "kind": "checkpoint",
            "step": state.global_step,
            "epoch": state.epoch,
            "path": str(directory),
            "files": files,
            "size": sum(f["size"] for f in files),
            "metrics": {k: v for k, v in self._last.items() if k in _CHECKPOINT_METRICS or k.startswith("eval_")},
        }
        if self._scored is not None and self._scored["step"] == state.global_step:
            event["evaluation"] = {"key": self._scored["key"], **self._scored["record"]}
        if self.probe is not None and model is not None:
            event["probes"] = self.probe(model)
        self.sink(event)

    def on_train_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        if state.is_world_process_zero:
            self._flush_row()
            event = {"kind": "end", "step": state.global_step, "stopped": self.stopped}
            reason = self._stopped_early(args, state)
            if reason:
                event["reason"] = reason
            self.sink(event)

    def _stopped_early(self, args: TrainingArguments, state: TrainerState) -> str | None:
        """Why early stopping ended the run, in words; None if it did not."""
        early = self.early
        if early is None or self.stopped or early.early_stopping_patience_counter < early.early_stopping_patience:
            return None
        metric = args.metric_for_best_model or "eval_loss"
        metric = metric if metric.startswith("eval_") else f"eval_{metric}"
        best = f"; best at step {state.best_global_step}" if state.best_global_step else ""
        return f"no improvement in {metric} for {early.early_stopping_patience} evaluations{best}"

    def _flush_row(self) -> None:
        if self._row is not None:
            self.sink({"kind": "log", **self._row})
            self._row = None


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def gpu_memory() -> dict[str, int]:
    """This process's GPU memory, in bytes, over its devices: allocated to tensors, reserved by
    torch's caching allocator, and the peak allocated. These read the allocator's counters: no
    synchronization with the device, so a logging step costs nothing more."""
    import torch

    devices = range(torch.cuda.device_count())
    return {
        "gpu_memory_allocated": sum(torch.cuda.memory_allocated(d) for d in devices),
        "gpu_memory_reserved": sum(torch.cuda.memory_reserved(d) for d in devices),
        "gpu_memory_peak": sum(torch.cuda.max_memory_allocated(d) for d in devices),
    }
