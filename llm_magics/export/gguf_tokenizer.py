"""Whether a base model's tokenizer can become a GGUF, told from its files before anything loads.

llama.cpp's converter writes the tokenizer's vocabulary into the GGUF. It reads a SentencePiece
model (``tokenizer.model``) or a fast tokenizer's ``tokenizer.json`` (BPE, WordPiece, Unigram),
which transformers also writes for a tokenizer it builds from ``vocab.json`` or ``vocab.txt``. A
tokenizer with none of these files has no vocabulary to write: ByT5's byte-level one (the tiny
demo model's) turns bytes into ids by arithmetic, and the converter fails deep inside, after the
merge (``ByT5Tokenizer has no attribute vocab``). Told from the files, the checkpoint browser
disables GGUF before a click and the API refuses before it merges, in the same words.
"""

from __future__ import annotations

import json
from pathlib import Path

from llm_magics.models.hub import local_file

VOCABULARIES = ("tokenizer.model", "tokenizer.json", "vocab.json", "vocab.txt")


def gguf_refusal(base: str) -> str | None:
    """Why the tokenizer of base model ``base`` (a directory, or a Hub name in the local cache)
    cannot become a GGUF, in one line that says what to do; None when it can, and when its files
    are not on this machine to tell (loading the model then says what is missing)."""
    config = local_file(base, "tokenizer_config.json")
    if config is None or any(local_file(base, name) for name in VOCABULARIES):
        return None
    name = Path(base).name if Path(base).expanduser().is_dir() else base
    return (
        f"gguf: the tokenizer of '{name}' ({_tokenizer_class(config)}) has no vocabulary file that "
        "llama.cpp's converter reads (tokenizer.model or tokenizer.json) — export the merged model instead"
    )


def _tokenizer_class(config: Path) -> str:
    try:
        found = json.loads(config.read_text())
    except (OSError, ValueError):  # an unreadable config: the reason holds without the class's name
        return "unknown class"
    named = found.get("tokenizer_class") if isinstance(found, dict) else None
    return named if isinstance(named, str) and named else "unknown class"
