"""A run's log as a training log: its events as lines, and the warnings raised while it trains.

The recorder writes a line per logged step (step, loss, learning rate, tokens/s: whatever the
trainer logs at ``logging_steps``, no more often), per checkpoint, per evaluation and per warning,
and the run's end, into the run's ``train.log`` (``runs.logs``), or into the output of a process
whose output is that log. The warnings are caught where the run trains (the kernel, a thread, a
Ray worker) and travel as events, like the rest.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO, TypeGuard

from llm_magics.runs import logs

if TYPE_CHECKING:
    from llm_magics.runs.run import RunState

# a logged row's numbers, in this order, as (label, format); the rest follow by name
_SHOWN = {
    "loss": ("loss", ".4g"),
    "eval_loss": ("eval_loss", ".4g"),
    "learning_rate": ("lr", ".3g"),
    "grad_norm": ("grad_norm", ".3g"),
    "tokens_per_s": ("tokens/s", ",.0f"),
    "samples_per_s": ("samples/s", ".3g"),
}
# numbers of a row that are not news at each step (a count that only grows) or are shown otherwise
_UNSHOWN: tuple[str, ...] = (
    "step",
    "time",
    "epoch",
    "num_tokens",
    "eval_num_tokens",
    "gpu_memory_reserved",
    "gpu_memory_peak",
)
_UNSHOWN += ("cpu_percent", "ram_rss", "ram_peak")  # shown as "cpu" and "ram" at the end
_UNSUMMED = ("epoch", "total_flos")  # of the trainer's summary
_GIB = 1 << 30
# the loggers whose handlers show a warning: the root's (a notebook's logging.basicConfig), and the
# libraries' that keep their own and do not pass their records on
_SHOWN_BY = ("", "transformers", "datasets")


def _number(value: Any) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _pairs(values: dict[str, Any], skip: tuple[str, ...] = ()) -> list[str]:
    """``name value`` of each number, the known ones first and formatted for reading."""
    known = [(name, label, spec) for name, (label, spec) in _SHOWN.items() if _number(values.get(name))]
    shown = [f"{label} {format(values[name], spec)}" for name, label, spec in known]
    rest = [name for name, value in values.items() if name not in _SHOWN and name not in skip and _number(value)]
    rest.sort(key=lambda name: (name.startswith("eval_"), name))  # the step's training numbers, then its evaluation's
    shown += [f"{name} {format(values[name], '.4g')}" for name in rest if not name.startswith("gpu_memory")]
    memory, peak = values.get("gpu_memory_allocated"), values.get("gpu_memory_peak")
    if _number(memory):
        shown.append(f"gpu {memory / _GIB:.2f} GiB" + (f" (peak {peak / _GIB:.2f})" if _number(peak) else ""))
    if _number(values.get("cpu_percent")):
        shown.append(f"cpu {values['cpu_percent']:.0f}%")
    if _number(values.get("ram_rss")):
        shown.append(f"ram {values['ram_rss'] / _GIB:.2f} GiB")
    return shown


def _size(size: Any) -> str:
    return f"{size / (1 << 20):.1f} MiB" if _number(size) else "?"


def event_lines(event: dict[str, Any], total_steps: int | None) -> list[str]:
    """What the log says of a training event (none for the probes and sampled completions)."""
    kind, step = event["kind"], event.get("step")
    of = f"/{total_steps}" if total_steps else ""
    if kind == "begin":
        return [f"training: step {step} to {event['total_steps']}"]
    if kind == "log":
        epoch = f"epoch {event['epoch']:.2f}" if _number(event.get("epoch")) else ""
        return ["  ".join([f"step {step}{of}", *([epoch] if epoch else []), *_pairs(event, _UNSHOWN)])]
    if kind == "checkpoint":
        return [f"checkpoint {step} saved: {event['path']} ({_size(event.get('size'))})"]
    if kind == "evaluation":
        scores = event["record"].get("scores") or {}
        counted = f" over {len(event['rows'])} examples" if event.get("rows") else ""
        return [f"generation scores at step {step}{counted}: " + (", ".join(_pairs(scores)) or "none")]
    if kind == "summary":
        return ["trainer's summary: " + ", ".join(_pairs(event, _UNSUMMED))]
    if kind == "end":
        return [f"training ended at step {step}" + (f": {event['reason']}" if event.get("reason") else "")]
    if kind == "warning":
        return [f"{event.get('level', 'warning')}: {event['text']}"]
    return []


def end_line(state: RunState) -> str:
    """The run's last line of ours: how it ended, where and after how long."""
    of = f"/{state.total_steps}" if state.total_steps else ""
    why = state.error or state.reason
    return f"{state.status} at step {state.step}{of} after {state.elapsed:.1f} s" + (f": {why}" if why else "")


class RunLog:
    """Where a run's lines go: appended to its log file (a path), or written to a stream that
    is the log (a detached run's own output)."""

    def __init__(self, target: str | Path | TextIO):
        self.target = target

    def write(self, lines: list[str]) -> None:
        if not lines:
            return
        moment = time.strftime("%Y-%m-%d %H:%M:%S")
        text = "".join(f"{moment} {line}\n" for line in lines)
        if isinstance(self.target, str | Path):
            logs.append(self.target, text)
        else:
            self.target.write(text)
            self.target.flush()


@contextlib.contextmanager
def warnings_as_events(sink: Callable[[dict[str, Any]], None], *, echo: bool = True) -> Iterator[None]:
    """While a run trains, what its thread warns of becomes a ``warning`` event for the log:
    Python warnings, and log records at WARNING or above, whether a handler shows them (the
    root's, or a library's own: transformers, datasets) or none does. Other threads' are left alone.

    Args:
        sink: receives the events.
        echo: also shows them where they showed before (the cell); off where that is the log.
    """
    capture = _Capture(sink, echo)
    capture.install()
    try:
        yield
    finally:
        capture.uninstall()


class _Capture(logging.Filter):
    """The hooks of ``warnings_as_events``: ``warnings.showwarning``, logging's last resort and a
    filter on the handlers that show warnings. Each passes on what is not its thread's; once ended it
    passes everything on, so that hooks installed after it may stay."""

    def __init__(self, sink: Callable[[dict[str, Any]], None], echo: bool):
        super().__init__()
        self.sink, self.echo, self.thread, self.active = sink, echo, threading.get_ident(), True
        self._shown_before = warnings.showwarning
        self._last_resort = _LastResort(self, logging.lastResort)
        self._handlers = [h for name in _SHOWN_BY for h in logging.getLogger(name).handlers]
        self._last: logging.LogRecord | None = None  # a record is taken once, however many handlers see it
        self._sending = False  # a warning while one is sent (the log cannot be written) is not sent again

    def install(self) -> None:
        warnings.showwarning = self._show
        logging.lastResort = self._last_resort
        for handler in self._handlers:
            handler.addFilter(self)

    def uninstall(self) -> None:
        self.active = False
        if warnings.showwarning == self._show:
            warnings.showwarning = self._shown_before
        if logging.lastResort is self._last_resort:
            logging.lastResort = self._last_resort.previous
        for handler in self._handlers:
            handler.removeFilter(self)

    def _mine(self) -> bool:
        return self.active and not self._sending and threading.get_ident() == self.thread

    def _send(self, event: dict[str, Any]) -> None:
        self._sending = True
        try:
            self.sink(event)
        finally:
            self._sending = False

    def _show(
        self, message: Any, category: type, filename: str, lineno: int, file: Any = None, line: Any = None
    ) -> None:
        if file is None and self._mine():  # a warning written to a file of its caller's is its caller's
            self._send({"kind": "warning", "text": f"{category.__name__}: {message} ({Path(filename).name}:{lineno})"})
            if not self.echo:
                return
        self._shown_before(message, category, filename, lineno, file, line)

    def take(self, record: logging.LogRecord) -> bool:
        """Sends the record as an event if it is this run's; whether it is still shown."""
        if record.levelno < logging.WARNING or not self._mine():
            return True
        if record is not self._last:
            self._last = record
            text = f"{record.name}: {record.getMessage()}"
            self._send({"kind": "warning", "level": record.levelname.lower(), "text": text})
        return self.echo

    def filter(self, record: logging.LogRecord) -> bool:
        return self.take(record)


class _LastResort(logging.Handler):
    """Logging's handler of the records that reach no other: the run's go to its log."""

    def __init__(self, capture: _Capture, previous: logging.Handler | None):
        super().__init__(logging.WARNING)
        self.capture, self.previous = capture, previous

    def handle(self, record: logging.LogRecord) -> bool:
        if self.capture.take(record) and self.previous is not None and record.levelno >= self.previous.level:
            self.previous.handle(record)
        return True

    def emit(self, record: logging.LogRecord) -> None:  # handle() does it all
        pass
