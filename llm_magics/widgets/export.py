"""The checkpoint browser's *Export*: a directory, a format (a GGUF quantization or the merged
transformers model), a progress bar through the export's stages, and at the end the GGUF's
check against the trained model (``gguf_check``) or where the merged model went.

The export runs in a thread of its own, so the kernel stays free; the button is off meanwhile.
"""

from __future__ import annotations

import html
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from llm_magics.core.errors import ConfigError
from llm_magics.export.gguf import CONVERTED, QUANTIZED, stages

MERGED = "merged"  # the format that is not a GGUF: the merged model, as transformers saves it
_MERGING = ["merging the adapter into its base"]
_RED = "<span style='color:#c62828'>{}</span>"


def formats() -> list[tuple[str, str]]:
    """The dropdown's choices: (label, value), q8_0 first (what ``--gguf`` writes by default)."""
    kinds = ["q8_0", *(kind for kind in CONVERTED + QUANTIZED if kind != "q8_0")]
    return [(f"GGUF {kind}", kind) for kind in kinds] + [("merged model (transformers)", MERGED)]


class ExportPanel:
    """Exports the checkpoint ``chosen()`` names, ``(model, ref)`` (it raises ``ConfigError``
    when there is none to export), with the model ``load(model, ref)`` gives."""

    def __init__(self, chosen: Callable[[], tuple[str, str | None]], load: Callable[[str, str | None], Any]):
        import ipywidgets as w

        self.chosen, self.load = chosen, load
        self.path = w.Text(placeholder="a new or empty directory", description="export to")
        self.path.add_class("llm-export-path")
        self.format = w.Dropdown(options=formats(), value="q8_0", description="as")
        self.format.add_class("llm-export-format")
        self.button = w.Button(description="Export", tooltip="Export the selected checkpoint (else the one in use)")
        self.button.add_class("llm-export")
        self.progress = w.IntProgress(value=0, min=0, max=1, layout=w.Layout(display="none"))
        self.progress.add_class("llm-export-progress")
        self.status = w.HTML()
        self.status.add_class("llm-export-status")
        self.output = w.HTML()
        self.output.add_class("llm-export-output")
        self.button.on_click(lambda _: self.start())
        self.widget = w.VBox([w.HBox([self.path, self.format, self.button]), self.progress, self.status, self.output])
        self._thread: threading.Thread | None = None

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
            told = str(error) if isinstance(error, ConfigError) else f"export failed: {error}"
            self._say(_RED.format(html.escape(told)))
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
