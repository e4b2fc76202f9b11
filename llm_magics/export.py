"""Standalone model directories from checkpoints: a LoRA adapter merged into its base."""

from __future__ import annotations

import dataclasses
import json
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llm_magics.errors import ConfigError

if TYPE_CHECKING:
    from llm_magics.model import LLM

INFO = "llm_magics.json"  # where the checkpoint came from, and the prompt format it was trained with


def export(llm: LLM, directory: str | Path, checkpoint: str | int | None = None) -> Path:
    """Saves the checkpoint as a model that plain transformers loads (``from_pretrained``).

    An adapter is merged into the base loaded in full precision, whatever ``bits`` it trained
    with. The directory is written whole or not at all; an existing, non-empty one is refused.
    """
    from llm_magics.artifacts import is_adapter
    from llm_magics.loader import load_model, load_tokenizer

    target = Path(directory).expanduser().resolve()
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise ConfigError(f"export: '{directory}' exists and is not empty — give a new directory")
    record = llm.checkpoint_record(checkpoint)
    if record is None:
        raise ConfigError(f"export: model '{llm.identifier}' has no checkpoints in a database — fit it first")
    source = llm._verified(record)
    base = llm.base()
    full = dataclasses.replace(base, bits=None)
    if is_adapter(source):
        from peft import PeftModel

        model = PeftModel.from_pretrained(load_model(full), str(source)).merge_and_unload()
    else:
        model = load_model(dataclasses.replace(full, path=str(source)))
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=f".{target.name}.partial-", dir=target.parent))
    try:
        model.save_pretrained(partial, safe_serialization=True)
        load_tokenizer(base.path, base.tokenizer_kwargs).save_pretrained(partial)
        (partial / INFO).write_text(json.dumps(_info(llm, record), indent=2) + "\n")
        if target.exists():
            target.rmdir()
        partial.rename(target)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return target


def _info(llm: LLM, record: dict[str, Any]) -> dict[str, Any]:
    return {
        "model": llm.identifier,
        "checkpoint": record["_id"],
        "step": record["step"],
        "base_model": llm.model_name_or_path,
        "template": record.get("template"),
    }
