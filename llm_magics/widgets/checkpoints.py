"""The checkpoint browser: a model's checkpoints from the database, kept current.

Two tables (``widgets.table``): the checkpoints and the runs of the chosen model. Click a row to
select it (Ctrl/⌘ or Shift for several), a header to sort. *Use* makes the selected checkpoint the
one ``%llm_predict NAME`` uses (stored in the database); *Generate* answers the prompt with it;
select two and *Compare* answers with both side by side; *Delete* removes files and records, once
confirmed; *Export* writes the selected checkpoint (else the one in use) as a checked GGUF or a
merged model (``widgets.export``), GGUF disabled where that checkpoint's tokenizer cannot become
one. Select two or more runs and *Compare runs* overlays their curves of any metric they logged,
chosen in the view; the comparison then follows the selection. Everything shown from data, prompts
or answers is escaped.
"""

from __future__ import annotations

import html
import threading
from typing import TYPE_CHECKING, Any

from llm_magics.api.database import load_llm
from llm_magics.core.errors import ConfigError, LLMMagicsError
from llm_magics.core.theme import ink
from llm_magics.export.gguf_tokenizer import gguf_refusal
from llm_magics.widgets.compare import runs_comparison_html
from llm_magics.widgets.display import RUN_COLUMNS, Comparison, is_number, run_row, shown, shown_time, text_table
from llm_magics.widgets.evaluation import examples_html, score_names
from llm_magics.widgets.export import ExportPanel
from llm_magics.widgets.probes import probes_html
from llm_magics.widgets.table import Table

if TYPE_CHECKING:
    from llm_magics.store.database import DatabaseHandle

COLUMNS = ["run", "step", "epoch", "train loss", "eval loss", "created (UTC)", "size", "flags"]
_NUMERIC = {"step", "epoch", "train loss", "eval loss", "size", "last loss", "duration"}
_RUN_COLUMNS = RUN_COLUMNS[1:]  # the model is the one chosen above the tables
_MARKS = {"selected": "in use", "best": "best", "latest": "latest"}  # record flag: the row's badge


def _number(value: Any) -> str:
    return "" if value is None else shown(value, ".4g")


def _size(size: Any) -> str:
    if not is_number(size):
        return shown(size)
    return f"{size / 1024**2:.1f} MiB" if size >= 1024**2 else f"{size / 1024:.0f} KiB"


def marks(record: dict[str, Any]) -> list[str]:
    """A checkpoint's badges: the one ``%llm_predict NAME`` uses, the best, the latest."""
    return [mark for flag, mark in _MARKS.items() if record.get(flag)]


def run_cell(record: dict[str, Any]) -> str:
    """A checkpoint's run as its row shows it: the run's number among the model's runs (1 for its
    first) and its id, so that a model trained twice shows which run is the later one."""
    number = record.get("run_number")
    return f"{number} · {shown(record.get('run'))}" if is_number(number) else shown(record.get("run"))


def checkpoint_row(record: dict[str, Any]) -> list[str]:
    """A checkpoint's row as text, under ``COLUMNS``."""
    metrics: dict[str, Any] = record["metrics"] if isinstance(record.get("metrics"), dict) else {}
    return [
        run_cell(record),
        shown(record.get("step")),
        shown(record.get("epoch") or 0, ".2f"),
        _number(metrics.get("loss")),
        _number(metrics.get("eval_loss")),
        shown_time(record.get("created")),
        _size(record.get("size", 0)),
        ", ".join(marks(record)),
    ]


def _sorts_by(value: Any) -> Any:
    """What a cell sorts by: a number as itself, a time as ISO text, anything else not at all."""
    if is_number(value):
        return value
    return value.isoformat() if hasattr(value, "isoformat") else None


def checkpoint_table_row(record: dict[str, Any], scores: list[str] | None = None) -> dict[str, Any]:
    """A checkpoint as a row of the table widget: its text cells, the values its columns sort by
    and its badges (shown in the flags column); ``scores``: the generation metrics, a column each."""
    metrics: dict[str, Any] = record["metrics"] if isinstance(record.get("metrics"), dict) else {}
    raw = [record.get("run_number"), record.get("step"), record.get("epoch") or 0, metrics.get("loss")]
    raw += [metrics.get("eval_loss"), record.get("created"), record.get("size", 0)]
    cells = dict(zip(COLUMNS, checkpoint_row(record)[:-1], strict=False))
    sort = {column: _sorts_by(value) for column, value in zip(COLUMNS, raw, strict=False)}
    for name in scores or []:
        value = metrics.get(f"eval_{name}")
        cells[name], sort[name] = _number(value), value if is_number(value) else None
    return {"id": str(record["_id"]), "cells": {**cells, "flags": ""}, "sort": sort, "marks": marks(record)}


def table_columns(scores: list[str]) -> list[dict[str, Any]]:
    """The checkpoint table's columns: a sortable one per generation metric before the flags."""
    return _columns(COLUMNS[:-1]) + [{"key": n, "label": n, "numeric": True} for n in scores] + _columns(COLUMNS[-1:])


def run_table_row(run: dict[str, Any]) -> dict[str, Any]:
    """A run as a row of the table widget (its status as a badge when it failed or runs)."""
    pairs = dict(zip(RUN_COLUMNS, run_row(run), strict=True))
    status = run.get("status")
    return {
        "id": str(run["_id"]),
        "cells": {column: pairs[column][0] for column in _RUN_COLUMNS},
        "sort": {column: pairs[column][1] for column in _RUN_COLUMNS if pairs[column][1] is not None},
        "marks": ["running"] if status in ("starting", "running") else ["failed"] if status == "failed" else [],
    }


def _columns(labels: list[str]) -> list[dict[str, Any]]:
    return [{"key": label, "label": label, "numeric": label in _NUMERIC} for label in labels]


class CheckpointBrowser:
    """The checkpoints of one model (choose it in the dropdown), refreshed every ``refresh_interval`` s."""

    def __init__(
        self,
        db: DatabaseHandle,
        model: str | None = None,
        refresh_interval: float = 1.0,
        *,
        trust_remote_code: bool = False,
    ):
        import ipywidgets as w

        self.db, self.refresh_interval, self.trust_remote_code = db, refresh_interval, trust_remote_code
        self.records: dict[str, dict[str, Any]] = {}
        self._refreshing = False
        self._signature: Any = None
        self._stopped = threading.Event()
        self._lock = threading.RLock()
        names = db.store.model_names()
        self.model = w.Dropdown(
            options=names, value=model if model in names else (names[0] if names else None), description="model"
        )
        if model is not None and model not in names:
            db.store.model(model)  # raises "no model named ..." with the close names
        self.table = Table(columns=table_columns([]), marks_column="flags", empty="no checkpoints yet")
        self.table.layout = w.Layout(max_height="18em", overflow="auto", width="100%")
        self.table.add_class("llm-checkpoints")
        self.use_button = self._button("Use", "Make the selected checkpoint the one %llm_predict uses", "llm-use")
        self.delete_button = self._button("Delete", "Delete the selected checkpoints (files and records)", "llm-delete")
        self.compare_button = self._button("Compare", "Answer the prompt with two selected checkpoints", "llm-compare")
        self.examples_button = self._button(
            "Examples",
            "The held-out examples one or two selected checkpoints were scored on, worst first",
            "llm-examples-button",
        )
        self.confirm = w.HBox(
            [
                w.HTML(),
                self._button("Yes, delete", "", "llm-confirm-delete"),
                self._button("Cancel", "", "llm-cancel-delete"),
            ]
        )
        self.confirm.layout.display = "none"
        self.prompt = w.Textarea(placeholder="A prompt for the selected checkpoint", layout=w.Layout(width="100%"))
        self.prompt.add_class("llm-prompt")
        self.max_new_tokens = w.BoundedIntText(value=32, min=1, max=4096, description="new tokens")
        self.generate_button = self._button(
            "Generate", "Answer the prompt with the selected checkpoint", "llm-generate"
        )
        self.output = w.HTML()
        self.output.add_class("llm-output")
        self.message = w.HTML()
        self.message.add_class("llm-message")
        self.runs = Table(columns=_columns(_RUN_COLUMNS), marks_column="status", empty="no runs yet")
        self.runs.layout = w.Layout(max_height="12em", overflow="auto", width="100%")
        self.runs.add_class("llm-runs-select")
        self.compare_runs_button = self._button(
            "Compare runs", "Overlay the runs' curves of any metric and diff their configurations", "llm-compare-runs"
        )
        self.runs_output = w.HTML()
        self.exporter = ExportPanel(self._to_export, self._load)
        self._wire()
        self.widget = w.VBox(
            [
                self.model,
                self.table,
                w.HBox([self.use_button, self.delete_button, self.compare_button, self.examples_button]),
                self.confirm,
                self.message,
                self.prompt,
                w.HBox([self.generate_button, self.max_new_tokens]),
                self.output,
                self.exporter.widget,
                w.HTML("<b>Runs</b>"),
                self.runs,
                self.compare_runs_button,
                self.runs_output,
            ]
        )
        self.widget.add_class("llm-checkpoint-browser")
        self.refresh()
        self._poller = threading.Thread(target=self._poll, daemon=True, name="llm_magics-checkpoint-browser")
        self._poller.start()

    def _button(self, description: str, tooltip: str, css: str) -> Any:
        import ipywidgets as w

        button = w.Button(description=description, tooltip=tooltip)
        button.add_class(css)
        return button

    def _wire(self) -> None:
        self.use_button.on_click(lambda _: self.use())
        self.delete_button.on_click(lambda _: self.delete())
        self.compare_button.on_click(lambda _: self._in_background(self.compare))
        self.examples_button.on_click(lambda _: self.examples())
        self.generate_button.on_click(lambda _: self._in_background(self.generate))
        self.confirm.children[1].on_click(lambda _: self.delete(confirmed=True))
        self.confirm.children[2].on_click(lambda _: self._hide_confirm())
        self.compare_runs_button.on_click(lambda _: self.compare_runs())
        self.runs.observe(lambda _: self._runs_changed(), names="value")
        self.model.observe(lambda _: self.refresh(), names="value")
        self.table.observe(lambda _: self._selection_changed(), names="value")

    # --- display ---

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        bundle = self.widget._repr_mimebundle_(**kwargs)
        rows = [checkpoint_row(r) for r in self.records.values()]
        bundle["text/plain"] = f"checkpoints of {self.model.value}\n" + (
            text_table(COLUMNS, rows) if rows else "(none)"
        )
        return bundle

    def close(self) -> None:
        self._stopped.set()
        self.widget.close()

    # --- reading the store ---

    def refresh(self) -> None:
        """Reads the model's checkpoints and runs again; keeps the selection where it still exists."""
        with self._lock:
            name = self.model.value
            records = self.db.store.list_checkpoints(name) if name else []
            self.records = {str(r["_id"]): r for r in records}
            before = list(self.table.value)
            selected = [v for v in before if v in self.records]
            scores = score_names(records)
            self._refreshing = True  # new rows may drop a selected one: not the user's doing
            try:
                with self.table.hold_sync():
                    if self.table.columns != (columns := table_columns(scores)):
                        self.table.columns = columns
                    self.table.rows = [checkpoint_table_row(r, scores) for r in records]
                    self.table.value = selected
            finally:
                self._refreshing = False
            if selected != before:  # a selected checkpoint is gone: what was shown of it goes too
                self._selection_changed()
            self.exporter.offer(self._gguf_refusal())  # the checkpoint in use may be another now
            runs = self.db.store.list_runs(name) if name else []
            with self.runs.hold_sync():
                self.runs.rows = [run_table_row(run) for run in runs]
                self.runs.value = [v for v in self.runs.value if v in {str(run["_id"]) for run in runs}]
            self._signature = self._current_signature()

    def _current_signature(self) -> tuple:
        name = self.model.value
        if not name:
            return (tuple(self.db.store.model_names()),)
        model = self.db.store.models.find_one({"_id": name}) or {}
        found = self.db.store.checkpoints.find({"model": name}, {"_id": 1, "evaluations": 1})
        ids = tuple((doc["_id"], len(doc.get("evaluations") or {})) for doc in found)  # and when one is scored
        fields = {"status": 1, "step": 1}  # the runs table shows a run's step as it trains
        runs = tuple((r["_id"], r["status"], r.get("step")) for r in self.db.store.runs.find({"model": name}, fields))
        return ids, runs, model.get("selected")

    def _poll(self) -> None:
        while not self._stopped.wait(self.refresh_interval):
            try:
                if not self.model.value:
                    names = self.db.store.model_names()
                    if names:
                        self.model.options, self.model.value = names, names[0]
                if self._current_signature() != self._signature:
                    self.refresh()
            except Exception as error:  # a passing database error must not end the polling
                self.message.value = (
                    f"<span style='color:{ink('error')}'>refresh failed: {html.escape(str(error))}</span>"
                )

    # --- actions ---

    def _selection(self, count: int) -> list[dict[str, Any]] | None:
        chosen = [self.records[i] for i in self.table.value if i in self.records]
        if len(chosen) != count:
            self._say(f"select {'one checkpoint' if count == 1 else f'{count} checkpoints'} first")
            return None
        return chosen

    def _ref(self, record: dict[str, Any]) -> str:
        return f"{record['run']}:{record['step']}"

    def use(self) -> None:
        """Makes the selected checkpoint the one ``%llm_predict NAME`` uses."""
        chosen = self._selection(1)
        if chosen:
            self.db.store.select_checkpoint(self.model.value, chosen[0]["_id"])
            self.refresh()  # a new list (and selection) first: the message is about it
            self._say(
                f"%llm_predict {html.escape(self.model.value)} now uses step {html.escape(shown(chosen[0]['step']))} "
                f"of run {html.escape(shown(chosen[0]['run']))}"
            )

    def delete(self, confirmed: bool = False) -> None:
        """Deletes the selected checkpoints, files and records, once confirmed."""
        chosen = [self.records[i] for i in self.table.value if i in self.records]
        if not chosen:
            self._say("select the checkpoints to delete first")
            return
        if not confirmed:
            steps = html.escape(", ".join(shown(r.get("step")) for r in chosen))
            in_use = " One of them is the checkpoint %llm_predict uses." if any(r["selected"] for r in chosen) else ""
            self.confirm.children[
                0
            ].value = f"Delete {len(chosen)} checkpoint(s), steps {steps}: their files and records?{in_use}"
            self.confirm.layout.display = "flex"
            return
        for record in chosen:
            if record["selected"]:
                self.db.store.select_checkpoint(self.model.value, None)
            self.db.store.remove_checkpoint(record)
        self._hide_confirm()
        steps = html.escape(", ".join(shown(r.get("step")) for r in chosen))
        self.refresh()  # a new list (and selection) first: the message is about it
        self._say(f"deleted {len(chosen)} checkpoint(s): steps {steps}")

    def _hide_confirm(self) -> None:
        self.confirm.layout.display = "none"

    def generate(self) -> None:
        """Answers the prompt with the selected checkpoint (or the model's default one)."""
        prompt = self.prompt.value
        if not prompt.strip():
            self._say("write a prompt first")
            return
        chosen = [self.records[i] for i in self.table.value if i in self.records]
        if not self._still_there(chosen):
            return
        ref = self._ref(chosen[0]) if len(chosen) == 1 else None
        self._say("generating…")
        answer = self._answer(ref, prompt)
        self.output.value = f'<pre class="llm-answer" style="white-space:pre-wrap">{html.escape(answer)}</pre>'
        self._say(f"answer of {html.escape(self.model.value)}@{html.escape(ref or 'default')}")

    def compare(self) -> None:
        """Answers the prompt with two selected checkpoints, side by side."""
        chosen = self._selection(2)
        prompt = self.prompt.value
        if not chosen or not self._still_there(chosen):
            return
        if not prompt.strip():
            self._say("write a prompt first")
            return
        self._say("generating…")
        answers = {self._ref(r): [self._answer(self._ref(r), prompt)] for r in chosen}
        self.output.value = Comparison(self.model.value, [prompt], answers)._repr_html_()
        self._say("compared")

    def examples(self) -> None:
        """The examples view: the held-out examples the selected checkpoint (or two, side by side)
        was last scored on, worst first."""
        chosen = [self.records[i] for i in self.table.value if i in self.records]
        if len(chosen) not in (1, 2):
            self._say("select one checkpoint (or two, to compare) first")
            return
        columns = {}
        for record in chosen:
            evaluations: dict[str, Any] = record["evaluations"] if isinstance(record.get("evaluations"), dict) else {}
            key = next(reversed(evaluations), None)  # the newest settings it was scored with
            rows = self.db.store.checkpoint_evaluations(record["_id"], key) if key is not None else []
            if not rows:
                self._say(f"{html.escape(self._ref(record))} has no scored examples yet: %llm_eval it")
                return
            columns[self._ref(record)] = rows
        self.output.value = examples_html(columns)
        self._say(f"held-out examples of {html.escape(', '.join(columns))}")

    def _still_there(self, chosen: list[dict[str, Any]]) -> bool:
        """Whether the selected checkpoints still exist; if one was pruned or deleted since the list
        was read, says so and reads the list again."""
        ids = [record["_id"] for record in chosen]
        found = {doc["_id"] for doc in self.db.store.checkpoints.find({"_id": {"$in": ids}}, {"_id": 1})}
        gone = [record for record in chosen if record["_id"] not in found]
        if gone:
            self.refresh()
            names = ", ".join(html.escape(self._ref(record)) for record in gone)
            self._say(f"checkpoint {names} is gone (pruned or deleted since the list was read); the list is refreshed")
        return not gone

    def _load(self, name: str, ref: str | None) -> Any:
        return load_llm(self.db, name, ref, trust_remote_code=self.trust_remote_code)

    def _to_export(self) -> tuple[str, str | None]:
        """The checkpoint *Export* writes: the selected one, else the one ``%llm_predict`` uses."""
        chosen = [self.records[i] for i in self.table.value if i in self.records]
        if not self.model.value or not self.records:
            raise ConfigError("no checkpoints to export yet")
        if len(chosen) > 1:
            raise ConfigError("select one checkpoint to export (none: the one %llm_predict uses)")
        if not self._still_there(chosen):
            raise ConfigError("the selected checkpoint is gone: select another")
        return self.model.value, self._ref(chosen[0]) if chosen else None

    def _gguf_refusal(self) -> str | None:
        """Why the checkpoint *Export* would write cannot become a GGUF (its base's tokenizer), or None."""
        chosen = [self.records[i] for i in self.table.value if i in self.records]
        if not self.records or len(chosen) > 1:
            return None
        try:
            record = chosen[0] if chosen else self.db.store.checkpoint(self.model.value)
            base = self.db.store.run_base(record["run"])
        except LLMMagicsError:  # no recorded base: the export itself says so
            return None
        return gguf_refusal(str(base.get("model")))

    def _answer(self, ref: str | None, prompt: str) -> str:
        """The checkpoint's answer: generated text, or a classifier's label."""
        model = self._load(self.model.value, ref)
        if model.task == "text-classification":
            return model.predict([prompt])[0]
        return model.predict([prompt], max_new_tokens=self.max_new_tokens.value)[0]

    def compare_runs(self) -> None:
        """Overlays the selected runs' curves of a metric chosen in the view and shows where their
        settings differ."""
        if len(self.runs.value) < 2:
            self.runs_output.value = '<p class="llm-note"><i>select two or more runs to compare</i></p>'
            return
        self.runs_output.value = runs_comparison_html(self.db.store, list(self.runs.value))

    def _runs_changed(self) -> None:
        """Once runs are compared, the comparison follows the selection."""
        if self.runs_output.value:
            self.compare_runs()

    def _selection_changed(self) -> None:
        """A new selection: a pending question, an old message or answer no longer apply to it."""
        if self._refreshing:
            return
        self._hide_confirm()
        self._say("")
        self.output.value = ""
        self.exporter.clear()
        self.exporter.offer(self._gguf_refusal())
        self._show_probes()

    def _show_probes(self) -> None:
        chosen = [self.records[i] for i in self.table.value if i in self.records]
        if len(chosen) == 1 and chosen[0].get("probes"):
            probes = [{"step": chosen[0]["step"], **p} for p in chosen[0]["probes"]]
            self.output.value = probes_html(probes)

    def _in_background(self, action: Any) -> None:
        """Generation can take a while: run it off the kernel's main thread."""

        def run() -> None:
            try:
                action()
            except Exception as error:  # shown in the browser rather than lost in a thread
                self._say(f"<span style='color:{ink('error')}'>{html.escape(str(error))}</span>")

        threading.Thread(target=run, daemon=True).start()

    def _say(self, text: str) -> None:
        """Shows a message; its parts that come from the user are escaped by the caller."""
        self.message.value = text
