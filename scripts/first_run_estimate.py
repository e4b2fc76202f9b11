"""What ``--dry-run`` prints for the README's first real run, without downloading the model.

    .venv/bin/python scripts/first_run_estimate.py

TinyLlama/TinyLlama-1.1B-Chat-v1.0's architecture (its published config: hidden 2048, 22 layers,
intermediate 5632, 32 heads, 4 KV heads, vocabulary 32000, 2048 positions) is saved as a
``LlamaConfig`` next to a byte-level tokenizer (a token a byte), and documents of 720 bytes fill
the 512 tokens of ``max_length``. The README's cell (``CELL``) then runs through the function that
``%%llm_finetune tinyllama --dry-run`` calls (``commands.finetune(..., dry_run=True)``: the model
on PyTorch's meta device, no weights), and its parameters and memory lines are printed.
tests/test_readme_blocks.py checks that the README quotes them and that its cell is ``CELL``.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

TINYLLAMA = {
    "hidden_size": 2048,
    "num_hidden_layers": 22,
    "intermediate_size": 5632,
    "num_attention_heads": 32,
    "num_key_value_heads": 4,
    "vocab_size": 32000,
    "max_position_embeddings": 2048,
    "tie_word_embeddings": False,
}
CELL = {"data": "docs", "bits": 4, "lora_r": 16, "per_device_train_batch_size": 4, "max_length": 512}


def dry_run_lines() -> list[str]:
    """The dry run's parameters and memory lines for the README's cell on TinyLlama's architecture."""
    from transformers import ByT5Tokenizer, LlamaConfig

    from llm_magics import connect
    from llm_magics.commands import finetune

    with tempfile.TemporaryDirectory() as directory:
        model = Path(directory) / "tinyllama"
        LlamaConfig(**TINYLLAMA).save_pretrained(model)
        ByT5Tokenizer().save_pretrained(model)
        db = connect("mongomock://first-run-estimate")
        db["docs"].delete_many({})
        db["docs"].insert_many([{"text": "the model learns from the documents " * 20} for _ in range(16)])
        report = finetune(db, "tinyllama", {"model": str(model), **CELL}, dry_run=True)
        return [f"{key}: {value}" for key, value in report.facts() if key in ("parameters", "memory (estimate)")]


if __name__ == "__main__":
    print("\n".join(dry_run_lines()))
