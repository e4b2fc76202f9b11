"""GGUF export for llama.cpp, Ollama and LM Studio: merge, convert, quantize, Modelfile, check.

The checkpoint is merged into its base (``export.export_model``), converted by llama.cpp's own
converter (``convert_hf_to_gguf.py``, which writes f32 / f16 / bf16 / q8_0 itself), quantized by
llama.cpp for the other types, and checked against the merged transformers model
(``gguf_check``). Everything is written into a temporary sibling of the target and renamed, so
a target is complete or absent; a non-empty one is refused.

llama.cpp comes with the ``gguf`` extra (``pip install 'llm_magics[gguf]'``: llama-cpp-python,
compiled from source where no wheel fits). Its converter ships only in llama-cpp-python's source
release: ``python -m llm_magics.export.gguf setup`` takes it from there once (pip downloads the source
release of the installed version), or ``LLM_MAGICS_LLAMA_CPP`` names a llama.cpp checkout.
Nothing downloads during an export.
"""

from __future__ import annotations

import gc
import importlib.metadata
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llm_magics.core.errors import ConfigError
from llm_magics.export.gguf_tokenizer import gguf_refusal
from llm_magics.models.hub import local_file

if TYPE_CHECKING:
    from llm_magics.api.llm import LLM
    from llm_magics.export.gguf_check import GGUFExport

CONVERTED = ("f16", "q8_0", "bf16", "f32")  # the converter writes these itself
# llama.cpp's quantizer writes these (from an f16 GGUF)
QUANTIZED = ("q4_k_m", "q4_k_s", "q5_k_m", "q5_k_s", "q6_k", "q3_k_m", "q3_k_s", "q3_k_l", "q2_k", "q4_0", "q5_0")
CONVERTER = "convert_hf_to_gguf.py"
_PARTS = (CONVERTER, "conversion", "gguf-py")  # what the converter needs of llama.cpp's tree
INSTALL = "pip install 'llm_magics[gguf]'"
# The converter's imports that name another package than their own (the rest are their own names).
_PACKAGES = {"google": "protobuf", "yaml": "pyyaml", "sklearn": "scikit-learn"}


def quantization(name: str) -> str:
    """A quantization type's name, checked: one the converter or llama.cpp writes."""
    kind = str(name).lower()
    if kind not in CONVERTED + QUANTIZED:
        raise ConfigError(f"gguf: unknown quantization '{name}' — valid: {', '.join(CONVERTED + QUANTIZED)}")
    return kind


def stages(kind: str) -> list[str]:
    """What an export of type ``kind`` does, in order: the stages it reports to ``progress``."""
    converted = kind if kind in CONVERTED else "f16"
    quantize = [] if kind in CONVERTED else [f"quantizing to {kind} with llama.cpp"]
    return [
        "merging the adapter into its base",
        f"converting to {converted} with llama.cpp's converter",
        *quantize,
        "checking the GGUF's answers against the trained model",
    ]


def llama_cpp_version() -> str:
    """The installed llama-cpp-python's version; a short error naming the install if it is not."""
    if importlib.util.find_spec("llama_cpp") is None:
        raise ConfigError(
            f"gguf: export to GGUF needs llama.cpp — {INSTALL} (it compiles from source where "
            "no wheel fits your machine: minutes, once)"
        )
    return importlib.metadata.version("llama-cpp-python")


def converter_home() -> Path:
    """Where llama.cpp's converter is kept: ``LLM_MAGICS_LLAMA_CPP``, else the cache for the
    installed llama-cpp-python."""
    if os.environ.get("LLM_MAGICS_LLAMA_CPP"):
        return Path(os.environ["LLM_MAGICS_LLAMA_CPP"]).expanduser()
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "llm_magics" / f"llama.cpp-{llama_cpp_version()}"


def converter() -> Path:
    """llama.cpp's converter script; a short error saying how to set it up if it is missing."""
    script = converter_home() / CONVERTER
    if not script.is_file():
        raise ConfigError(
            f"gguf: llama.cpp's converter is missing ({script}) — run: python -m llm_magics.export.gguf setup"
        )
    return script


def setup(source: str | Path | None = None) -> Path:
    """Takes the converter from the source release of the installed llama-cpp-python: the file
    ``source``, else one pip downloads (the one step that needs the network); returns where it is."""
    home, version = converter_home(), llama_cpp_version()
    if (home / CONVERTER).is_file():
        return home
    with tempfile.TemporaryDirectory() as download:
        if source is None:
            command = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "--quiet"]
            subprocess.run([*command, f"llama-cpp-python=={version}", "-d", download], check=True)
            (source,) = Path(download).glob("llama_cpp_python-*.tar.gz")
        unpacked = Path(tempfile.mkdtemp(prefix=".llama.cpp-", dir=_made(home.parent)))
        with tarfile.open(source) as archive:
            root = f"{archive.getnames()[0].split('/')[0]}/vendor/llama.cpp/"
            wanted = [m for m in archive.getmembers() if m.name.startswith(root) and _wanted(m.name[len(root) :])]
            for member in wanted:
                member.name = member.name[len(root) :]
            archive.extractall(unpacked, members=wanted, filter="data")
        unpacked.rename(home)
    return home


def _made(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def _wanted(name: str) -> bool:
    return any(name == part or name.startswith(part + "/") for part in _PARTS)


def export_gguf(
    llm: LLM,
    directory: str | Path,
    checkpoint: Any = None,
    quant: str = "q8_0",
    *,
    template: str | None = None,
    prompts: list[str] | None = None,
    max_new_tokens: int = 16,
    progress: Callable[[str], None] | None = None,
) -> GGUFExport:
    """Writes ``model-QUANT.gguf`` and its ``Modelfile`` into ``directory`` and checks the GGUF
    against the merged model (the table is also written there, as ``gguf-check.json``).
    ``template`` replaces the Modelfile's prompt template (Go syntax); the check says whether it
    writes prompts as training did. ``progress`` is called with each of ``stages(quant)`` as it
    starts."""
    from llm_magics.export.gguf_check import GGUFExport, check, check_prompts, plan_modelfile
    from llm_magics.store.artifacts import written_whole

    kind = quantization(quant)
    target = Path(directory).expanduser().resolve()
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise ConfigError(f"gguf: '{directory}' exists and is not empty — give a new directory")
    record = llm.checkpoint_record(checkpoint)
    if record is None:
        raise ConfigError(f"gguf: model '{llm.identifier}' has no checkpoints in a database — fit it first")
    base = llm.trained_base(record).path
    if refusal := gguf_refusal(base):  # before llama.cpp's install: installing it would not help
        raise ConfigError(refusal)
    llama_cpp_version()  # a short error naming the install, even where LLM_MAGICS_LLAMA_CPP has the converter
    script = converter()
    _sentencepiece_for(base)
    asked = check_prompts(llm, record, prompts)
    gguf_name = f"model-{kind}.gguf"
    text, written = plan_modelfile(gguf_name, llm.tokenizer_of(record), record, llm.identifier, template)
    seconds: dict[str, float] = {}
    clock = _Stages(stages(kind), seconds, progress)
    with written_whole(target, replace=False) as partial:
        clock.next("merge")
        merged = llm.export(partial / ".merged", checkpoint)
        gc.collect()  # the merge's copy of the model: the converter reads its own from disk
        gguf = partial / gguf_name
        first = gguf if kind in CONVERTED else gguf.with_name("model-f16.gguf")
        clock.next("convert")
        command = [sys.executable, str(script), str(merged), "--outfile", str(first), "--outtype"]
        _run(
            [*command, kind if kind in CONVERTED else "f16"], "llama.cpp's converter", "export the merged model instead"
        )
        if kind not in CONVERTED:
            clock.next("quantize")
            quantize = [sys.executable, "-m", "llm_magics.export.gguf_runner", "quantize", str(first), str(gguf), kind]
            _run(quantize, f"quantizing to {kind}", f"choose another type ({', '.join(CONVERTED)} need no quantizing)")
            first.unlink()
        (partial / "Modelfile").write_text(text)
        clock.next("check")
        result = check(merged, gguf, kind, kind in CONVERTED, written, asked, max_new_tokens)
        clock.next(None)
        shutil.rmtree(merged)  # the GGUF is what was asked for
        result.write(partial)
    export = GGUFExport(target, target / gguf.name, kind, result, seconds)
    if llm.db is not None:
        llm.db.store.exports.insert_one(export.record(llm.identifier, record))
    return export


class _Stages:
    """Times an export's stages into ``seconds`` and tells ``progress`` as each one starts."""

    def __init__(self, labels: list[str], seconds: dict[str, float], progress: Callable[[str], None] | None):
        self.labels, self.seconds, self.progress = iter(labels), seconds, progress
        self.current: str | None = None
        self.started = time.perf_counter()

    def next(self, name: str | None) -> None:
        now = time.perf_counter()
        if self.current is not None:
            self.seconds[self.current] = now - self.started
        self.current, self.started = name, now
        if name is not None and self.progress is not None:
            self.progress(next(self.labels))


def _sentencepiece_for(base: str) -> None:
    """A short error before the merge when the converter would need sentencepiece and lacks it:
    it reads a SentencePiece ``tokenizer.model`` with it."""
    if local_file(base, "tokenizer.model") is not None and importlib.util.find_spec("sentencepiece") is None:
        raise ConfigError(
            "gguf: llama.cpp's converter reads this model's tokenizer.model with sentencepiece, which is not "
            f"installed — {INSTALL} (or scripts/setup_gguf.sh), then export again"
        )


def _run(command: list[str], what: str, fix: str) -> None:
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise ConfigError(failure(what, done.returncode, done.stderr or done.stdout, fix))


def failure(what: str, code: int, output: str, fix: str) -> str:
    """A failed step as one line: what failed, the last line of its output (a Python traceback's
    exception, llama.cpp's last word), and ``fix``; a missing Python package named with its install."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    last = lines[-1] if lines else "no output"
    if missing := re.fullmatch(r"(?:ModuleNotFoundError|ImportError): No module named '(\w+)[\w.]*'", last):
        package = _PACKAGES.get(missing[1], missing[1])
        return (
            f"gguf: {what} needs the Python package {package}, not installed — pip install {package}, then export again"
        )
    return f"gguf: {what} failed (exit {code}): {last} — {fix}"


def main() -> None:
    if sys.argv[1:2] != ["setup"] or len(sys.argv) > 3:
        sys.exit("usage: python -m llm_magics.export.gguf setup [LLAMA_CPP_PYTHON_SOURCE.tar.gz]")
    print(f"llama.cpp's converter: {setup(sys.argv[2] if len(sys.argv) == 3 else None)}")


if __name__ == "__main__":
    main()
