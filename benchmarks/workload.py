"""What the benchmarks share: a working directory, the tiny model, its documents, interleaved rounds.

It measures nothing itself. The scripts beside it import it: ``python benchmarks/NAME.py`` puts
this directory on ``sys.path``.
"""

from __future__ import annotations

import atexit
import json
import os
import random
import re
import shutil
import statistics
import tempfile
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

_WORDS = ["the", "model", "learns", "from", "documents", "kept", "in", "the", "store", "and", "answers", "questions",
          "about", "what", "it", "read", "with", "short", "sentences", "that", "end", "when", "the", "answer", "is",
          "complete"]  # fmt: skip


def workdir(name: str) -> Path:
    """A fresh temporary directory, made the current one, so that no ``.llm_magics/`` lands in
    the repository; removed when the process ends (models, stores and checkpoints: up to some
    hundreds of MB), unless LLM_BENCH_KEEP is set."""
    path = Path(tempfile.mkdtemp(prefix=f"llm-bench-{name}-"))
    os.chdir(path)
    if not os.environ.get("LLM_BENCH_KEEP"):
        atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


def quiet() -> None:
    """Progress bars and warnings would add noise, and time, to what is measured."""
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    warnings.filterwarnings("ignore")
    import datasets
    import transformers

    datasets.disable_progress_bars()
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


def tiny(directory: Path, **shape: Any) -> str:
    """The tiny random model of the tests (``llm_magics.tiny_model``), built in ``directory``."""
    from llm_magics import tiny_model

    return str(tiny_model(directory / "tiny", **shape))


def texts(count: int, words: tuple[int, int] = (8, 40), seed: int = 0) -> list[str]:
    """Seed-style question/answer texts of varied length (about 180 characters on average)."""
    rng = random.Random(seed)
    return [
        f"### Human: {' '.join(rng.choices(_WORDS, k=rng.randint(*words)))}? ### Assistant: it is {i}"
        for i in range(count)
    ]


def documents(count: int, **kwargs: Any) -> list[dict[str, str]]:
    return [{"text": text} for text in texts(count, **kwargs)]


def interleaved(arms: dict[str, Callable[[], Any]], rounds: int) -> dict[str, list[Any]]:
    """Runs every arm once per round, rotating the order each round, so that a change in the
    machine's load (other processes) falls on every arm alike."""
    names = list(arms)
    results: dict[str, list[Any]] = {name: [] for name in names}
    for round_ in range(rounds):
        shift = round_ % len(names)
        for name in names[shift:] + names[:shift]:
            results[name].append(arms[name]())
    return results


def median(values: Iterable[float]) -> float:
    return statistics.median(values)


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or not denominator:
        return None
    return numerator / denominator


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        return int(re.search(rf"^{field}:\s+(\d+) kB", status.read(), re.M).group(1))


def reset_peak_rss() -> float:
    """Makes the peak resident memory (VmHWM) start again from now (Linux); returns the current
    resident memory in MiB.

    Memory freed earlier is handed back to the system first (Arrow's pool, then malloc's), so that
    what is measured next shows up as new resident memory instead of reusing freed pages.
    """
    import ctypes
    import gc
    import sys

    gc.collect()
    if "pyarrow" in sys.modules:
        sys.modules["pyarrow"].default_memory_pool().release_unused()
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")
    return _status_kib("VmRSS") / 1024


def peak_rss() -> float:
    """The peak resident memory since the last ``reset_peak_rss``, in MiB."""
    return _status_kib("VmHWM") / 1024


def emit(result: dict[str, Any], as_json: bool, show: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    """Prints a benchmark's result: JSON for run.py, else its table."""
    if as_json:
        print(json.dumps(result))
    else:
        show(result)
    return result


def common_options(parser: Any, threads_help: str = "torch threads (default: torch's own choice)") -> None:
    """``--threads`` and ``--json``, which every benchmark script takes."""
    parser.add_argument("--threads", type=int, default=None, help=threads_help)
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def use_threads(threads: int | None) -> None:
    """Sets torch's CPU threads when asked (``--threads``)."""
    if threads:
        import torch

        torch.set_num_threads(threads)
