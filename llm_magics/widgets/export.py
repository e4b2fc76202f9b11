"""The checkpoint browser's *Export*: a directory, a format (a GGUF quantization or the merged
transformers model), a progress bar through the export's stages, and at the end the GGUF's
check against the trained model (``gguf_check``) or where the merged model went.

A checkpoint whose tokenizer cannot become a GGUF (``gguf_tokenizer``) is known before a click:
the GGUF types are disabled, the reason is shown under them and the merged model is the choice.
A failure ends as one line that says what failed and what to do, never a traceback; choosing
another checkpoint clears it.

The export runs in a thread of its own, so the kernel stays free; the button is off meanwhile.
"""

from __future__ import annotations

import html
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from llm_magics.core.errors import ConfigError, LLMMagicsError
from llm_magics.core.theme import MUTED, ink
from llm_magics.export.gguf import CONVERTED, QUANTIZED, stages
from llm_magics.widgets.choice import Choice

MERGED = "merged"  # the format that is not a GGUF: the merged model, as transformers saves it
_MERGING = ["merging the adapter into its base"]
DEFAULT = "q8_0"  # what ``--gguf`` writes by default
_RED = f"<span style='color:{ink('error')}'>{{}}</span>"
_LONGEST = 400  # characters of a message: an error quoted whole could fill the page


def formats(gguf: bool = True) -> list[dict[str, Any]]:
    """The format choices (``Choice`` options), q8_0 first; ``gguf=False``: the GGUF types disabled."""
    kinds = [DEFAULT, *(kind for kind in CONVERTED + QUANTIZED if kind != DEFAULT)]
    types = [{"value": kind, "label": f"GGUF {kind}", "disabled": not gguf} for kind in kinds]
    return [*types, {"value": MERGED, "label": "merged model (transformers)", "disabled": False}]


def one_line(error: Exception) -> str:
    """An error as the panel shows it: one line, a user's error in its own words, any other with
    its type (what failed), never a traceback."""
    told = str(error) if isinstance(error, LLMMagicsError) else f"export failed: {type(error).__name__}: {error}"
    told = " ".join(told.split())
    return told if len(told) <= _LONGEST else told[: _LONGEST - 1] + "…"


class ExportPanel:
    """Exports the checkpoint ``chosen()`` names, ``(model, ref)`` (it raises ``ConfigError``
    when there is none to export), with the model ``load(model, ref)`` gives."""

    def __init__(self, chosen: Callable[[], tuple[str, str | None]], load: Callable[[str, str | None], Any]):
        import ipywidgets as w

        self.chosen, self.load = chosen, load
        self.path = w.Text(placeholder="a new or empty directory", description="export to")
        self.path.add_class("llm-export-path")
        self.format = Choice(options=formats(), value=DEFAULT, description="as")
        self.format.add_class("llm-export-format")
        self.refusal: str | None = None  # why the checkpoint's tokenizer cannot become a GGUF
        self.why = w.HTML()  # that reason, under the choice (beside it, it squeezed the button)
        self.why.add_class("llm-export-why")
        self.button = w.Button(description="Export", tooltip="Export the selected checkpoint (else the one in use)")
        self.button.layout.flex = "0 0 auto"
        self.button.add_class("llm-export")
        self.progress = w.IntProgress(value=0, min=0, max=1, layout=w.Layout(display="none"))
        self.progress.add_class("llm-export-progress")
        self.status = w.HTML()
        self.status.add_class("llm-export-status")
        self.output = w.HTML()
        self.output.add_class("llm-export-output")
        self.button.on_click(lambda _: self.start())
        row = w.HBox([self.path, self.format, self.button], layout=w.Layout(align_items="center"))
        self.widget = w.VBox([row, self.why, self.progress, self.status, self.output])
        self._thread: threading.Thread | None = None

    def offer(self, refusal: str | None) -> None:
        """The choices for the checkpoint to export: every GGUF type (q8_0 chosen), or, with
        ``refusal`` (why its tokenizer cannot become a GGUF), the merged model, the reason under it."""
        if refusal == self.refusal:
            return  # the user's own choice stays
        self.refusal = refusal
        with self.format.hold_sync():
            if refusal:  # the value first: it must stay an enabled choice
                self.format.value = MERGED
                self.format.options = formats(gguf=False)
            else:
                self.format.options = formats()
                self.format.value = DEFAULT
        self.why.value = f"<span style='color:{MUTED}'>{html.escape(refusal)}</span>" if refusal else ""

    def clear(self) -> None:
        """Forgets the last export's message, bar and result (another checkpoint is chosen); not
        while an export runs: its stages are still coming."""
        if self._thread is not None and self._thread.is_alive():
            return
        self.status.value = self.output.value = ""
        self.progress.layout.display = "none"

    def start(self) -> threading.Thread | None:
        """Starts the export in a thread (returned, for tests and scripts to join)."""
        if self._thread is not None and self._thread.is_alive():
            return None
        self.button.disabled = True
        self._thread = threading.Thread(target=self.run, daemon=True, name="llm_magics-export")
        self._thread.start()
        return self._thread

    def run(self) -> None:
        """Exports, showing each stage as it starts; any error ends as a message."""
        try:
            directory = self.path.value.strip()
            if not directory:
                raise ConfigError("write the directory to export to first")
            model, ref = self.chosen()
            self._export(model, ref, Path(directory))
        except Exception as error:  # shown in the browser rather than lost in a thread
            self.progress.bar_style = "danger"
            self._say(_RED.format(html.escape(one_line(error))))
        finally:
            self.button.disabled = False

    def _export(self, model: str, ref: str | None, directory: Path) -> None:
        kind = self.format.value
        labels = _MERGING if kind == MERGED else stages(kind)
        self.output.value = ""
        self.progress.max, self.progress.value, self.progress.bar_style = len(labels), 0, ""
        self.progress.layout.display = "flex"
        name = f"{model}@{ref or 'default'}"
        started = time.monotonic()

        def step(stage: str) -> None:
            self.progress.value = labels.index(stage)
            self._say(f"{html.escape(name)}: {self.progress.value + 1}/{len(labels)} {html.escape(stage)}…")

        llm = self.load(model, ref)
        if kind == MERGED:
            step(_MERGING[0])
            written = llm.export(directory)
            result = f"saved as a standalone model in <code>{html.escape(str(written))}</code>"
        else:
            export = llm.export(directory, gguf=kind, progress=step)
            result, self.output.value = f"wrote <code>{html.escape(str(export.gguf))}</code>", export._repr_html_()
        self.progress.value, self.progress.bar_style = len(labels), "success"
        self._say(f"{html.escape(name)}: {result} in {time.monotonic() - started:.0f} s")

    def _say(self, text: str) -> None:
        """Shows a message; its parts that come from the user are escaped by the caller."""
        self.status.value = text
