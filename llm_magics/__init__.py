"""llm_magics: fine-tune LLMs with LoRA / QLoRA from a Jupyter notebook.

``%load_ext llm_magics`` registers the magics and imports nothing heavy; the public API below is
imported on first use.
"""

from __future__ import annotations

import importlib
import logging
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from llm_magics.runs.run import Run

# bitsandbytes logs a warning at import on CPUs with AVX512-BF16 when an optional kernel cannot
# be downloaded; it says nothing a notebook user can act on
logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)


def _not_an_offline_trust_notice(record: logging.LogRecord) -> bool:
    """Drops the one notice of ``kernels`` that, with the Hub offline, it skips the publisher check
    of a kernel the libraries fetch for themselves (bitsandbytes' CPU 4-bit matmul, when peft first
    imports it): it says nothing to the user. Set here, on import, because that import comes with
    trl's SFTConfig, before any model loads, in the kernel and in every training process."""
    return not record.getMessage().startswith("Skipping publisher trust check for 'kernels-community/")


logging.getLogger("kernels._internals.hf_hub").addFilter(_not_an_offline_trust_notice)

__version__ = "0.1.0"
__all__ = [
    "LLM",
    "Collection",
    "Database",
    "Document",
    "LLMTrainer",
    "LLMTrainingConfiguration",
    "Run",
    "TextClassification",
    "connect",
    "load_ipython_extension",
    "superduper",
    "tiny_model",
    "unload_ipython_extension",
]

_LAZY = {
    "LLM": "llm_magics.api.llm",
    "Collection": "llm_magics.store.query",
    "Database": "llm_magics.api.database",
    "Document": "llm_magics.store.query",
    "LLMTrainer": "llm_magics.config.configuration",
    "LLMTrainingConfiguration": "llm_magics.config.configuration",
    "Run": "llm_magics.runs.run",
    "TextClassification": "llm_magics.api.classification",
    "connect": "llm_magics.api.database",
    "superduper": "llm_magics.api.database",
    "tiny_model": "llm_magics.models.tiny",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'llm_magics' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext llm_magics``: registers the magics, and the input transformer that leaves a
    prompt ending in ``?`` to ``%llm_predict`` (IPython would take it for help)."""
    from llm_magics.core.magic_line import question_lines
    from llm_magics.magics import LLMMagics

    ipython.register_magics(LLMMagics(shell=ipython))
    if question_lines not in ipython.input_transformers_cleanup:
        ipython.input_transformers_cleanup.append(question_lines)
    _register_displays(ipython)
    _say_data_warnings_plainly()


def _say_data_warnings_plainly() -> None:
    """A DataWarning shows in a cell as its one line: the file and line of ours that raised it,
    and that line's code, mean nothing to the person reading it. Other warnings are as they were."""
    import warnings

    from llm_magics.core.errors import DataWarning

    shown = warnings.formatwarning
    if getattr(shown, "said_plainly", False):
        return

    def formatted(message: Any, category: type[Warning], filename: str, lineno: int, line: str | None = None) -> str:
        if issubclass(category, DataWarning):
            return f"{category.__name__}: {message}\n"
        return shown(message, category, filename, lineno, line)

    formatted.said_plainly = True  # type: ignore[attr-defined]
    warnings.formatwarning = formatted


def _show_run(run: Run) -> None:
    from llm_magics.widgets.progress import show_run  # ipywidgets: only once a run is shown

    show_run(run)


def _register_displays(shell: Any) -> None:
    """Tells IPython how a Run displays itself (its live view or summary), without importing it."""
    formatter = shell.display_formatter.ipython_display_formatter
    formatter.for_type_by_name("llm_magics.runs.run", "Run", _show_run)


def _register_with_the_running_shell() -> None:
    """``from llm_magics import ...`` in a notebook without ``%load_ext``: runs display there too."""
    if "IPython" not in sys.modules:
        return  # no IPython, no shell to show anything in
    from IPython import get_ipython

    shell = get_ipython()
    if shell is not None:
        _register_displays(shell)


_register_with_the_running_shell()


def unload_ipython_extension(ipython: Any) -> None:
    """``%unload_ext llm_magics``: removes the magics and the input transformer."""
    from llm_magics.core.magic_line import question_lines
    from llm_magics.magics import LLMMagics

    if question_lines in ipython.input_transformers_cleanup:
        ipython.input_transformers_cleanup.remove(question_lines)

    for table in ipython.magics_manager.magics.values():
        ours = [name for name, method in table.items() if isinstance(getattr(method, "__self__", None), LLMMagics)]
        for name in ours:
            del table[name]
    ipython.magics_manager.registry.pop("LLMMagics", None)
