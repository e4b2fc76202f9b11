"""Standalone model directories from checkpoints: a LoRA adapter merged into its base."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path
from typing import Any

from llm_magics.core.errors import ConfigError
from llm_magics.models.hub import local_file
from llm_magics.models.loader import BaseModel, load_base_model, load_tokenizer
from llm_magics.store.artifacts import is_adapter, written_whole

INFO = "llm_magics.json"  # where the checkpoint came from, and the prompt format it was trained with
# The base's SentencePiece model: transformers 5 saves a tokenizer as tokenizer.json only, but
# llama.cpp's converter reads the vocabulary (and pads it to the model's vocab_size) from this file.
SENTENCEPIECE = "tokenizer.model"


def export_model(directory: str | Path, checkpoint: Path, base: BaseModel, info: dict[str, Any]) -> Path:
    """Saves the checkpoint in ``checkpoint`` (an adapter, or a whole model) as a model that plain
    transformers loads (``from_pretrained``), with ``info`` beside it; returns the directory.

    An adapter is merged into ``base`` loaded in full precision, whatever ``bits`` it trained
    with. The directory is written whole or not at all; an existing, non-empty one is refused.
    """
    target = Path(directory).expanduser().resolve()
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise ConfigError(f"export: '{directory}' exists and is not empty — give a new directory")
    full = dataclasses.replace(base, bits=None)
    if is_adapter(checkpoint):
        from peft import PeftModel

        model = PeftModel.from_pretrained(load_base_model(full), str(checkpoint)).merge_and_unload()
    else:
        model = load_base_model(dataclasses.replace(full, path=str(checkpoint)))
    with written_whole(target, replace=False) as partial:
        model.save_pretrained(partial, safe_serialization=True)
        load_tokenizer(base.path, base.tokenizer_kwargs).save_pretrained(partial)
        if not (partial / SENTENCEPIECE).exists() and (kept := local_file(base.path, SENTENCEPIECE)):
            shutil.copyfile(kept, partial / SENTENCEPIECE)
        (partial / INFO).write_text(json.dumps(info, indent=2) + "\n")
    return target
