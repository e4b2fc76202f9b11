"""``%llm_ingest``'s progress: documents written, megabytes read and the rate."""

from __future__ import annotations

from typing import Any


class IngestProgress:
    """A progress bar for ``%llm_ingest``: documents written and MB/s (a file's size is not known
    in rows, so the bar pulses until the end)."""

    def __init__(self) -> None:
        import ipywidgets as w

        self.bar = w.IntProgress(value=0, min=0, max=1, description="ingesting", bar_style="info")
        self.label = w.HTML()
        self.widget = w.HBox([self.bar, self.label])
        self.widget.add_class("llm-ingest-progress")

    def __call__(self, written: int, read: int, seconds: float) -> None:
        rate = read / 1e6 / seconds if seconds else 0.0
        self.label.value = f"{written:,} documents · {read / 1e6:.1f} MB · {rate:.1f} MB/s"

    def finish(self) -> None:
        self.bar.value, self.bar.bar_style = 1, "success"

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)
