"""A tiny causal LM with random weights, built offline: the model of the tests, demo and benchmarks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

# "### Human: ... ### Assistant: ..." turns, as in the seed's data; the assistant's part is
# also marked for generation, for tools that read those markers.
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'assistant' -%}"
    "### Assistant: {% generation %}{{ message['content'] }}{{ eos_token }}{% endgeneration %}"
    "{%- else -%}"
    "### {{ 'Human' if message['role'] == 'user' else message['role'] | capitalize }}: "
    "{{ message['content'] + ' ' }}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}### Assistant: {% endif -%}"
)


# The demo's data: four facts the tiny model learns in a few hundred steps.
FACTS = [
    ("What is the capital of France?", "Paris."),
    ("What is the capital of Italy?", "Rome."),
    ("What is the capital of Spain?", "Madrid."),
    ("What is the capital of Japan?", "Tokyo."),
]


def documents(count: int) -> list[dict[str, str]]:
    """Seed-style documents: "### Human: ... ### Assistant: ..." with a train/valid fold."""
    return [
        {"text": f"### Human: {q} ### Assistant: {a}", "_fold": "valid" if i % 8 == 7 else "train"}
        for i, (q, a) in enumerate(FACTS[i % len(FACTS)] for i in range(count))
    ]


def tiny_model(
    path: str | Path,
    *,
    hidden_size: int = 64,
    layers: int = 2,
    heads: int = 4,
    seed: int = 0,
) -> Path:
    """Saves a tiny random Llama-style causal LM and a byte-level tokenizer to ``path``.

    The tokenizer (``ByT5Tokenizer``) needs no vocabulary files, so nothing is downloaded.
    Returns the directory, which ``LLM(model_name_or_path=...)`` and ``model:`` accept.
    """
    from transformers import ByT5Tokenizer

    from llm_magics.models.loader import quiet_libraries

    quiet_libraries()
    directory = Path(path)
    tokenizer = ByT5Tokenizer()
    tokenizer.chat_template = CHAT_TEMPLATE
    return _with_random_llama(directory, tokenizer, hidden_size=hidden_size, layers=layers, heads=heads, seed=seed)


# Random Llamas with the architecture of released models, for the GPU tier and benchmarks: what is
# timed and measured (memory, tokens/s, a reload) depends on the shape, not on the weights.
_LLAMA_3 = {"rope_theta": 500000.0, "max_position_embeddings": 131072, "vocab_size": 128256}
SHAPES: dict[str, dict[str, Any]] = {
    "tiny": {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
             "num_key_value_heads": 2, "vocab_size": 384, "max_position_embeddings": 2048},
    "1b": {**_LLAMA_3, "hidden_size": 2048, "intermediate_size": 8192, "num_hidden_layers": 16,
           "num_attention_heads": 32, "num_key_value_heads": 8, "tie_word_embeddings": True},  # Llama-3.2-1B
    "8b": {**_LLAMA_3, "hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32,
           "num_attention_heads": 32, "num_key_value_heads": 8, "tie_word_embeddings": False},  # Llama-3.1-8B
}  # fmt: skip


def shaped_model(path: str | Path, shape: str) -> Path:
    """Saves a random-weight Llama of a released model's ``shape`` (a key of ``SHAPES``) with the
    byte-level tokenizer, once: an existing save in ``path`` is reused. Built on the GPU in
    bfloat16 where there is one (8B parameters initialize in seconds there), else in float32."""
    import torch
    from transformers import ByT5Tokenizer, LlamaConfig, LlamaForCausalLM

    directory = Path(path)
    if (directory / "config.json").is_file():
        return directory
    tokenizer = ByT5Tokenizer()
    tokenizer.chat_template = CHAT_TEMPLATE
    config = LlamaConfig(
        **SHAPES[shape], pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id, bos_token_id=None
    )
    cuda = torch.cuda.is_available()
    torch.manual_seed(0)
    with torch.device("cuda" if cuda else "cpu"):
        model = LlamaForCausalLM(config).to(torch.bfloat16 if cuda else torch.float32)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    del model
    if cuda:
        torch.cuda.empty_cache()
    return directory


def tiny_sentencepiece_model(
    path: str | Path,
    texts: list[str] | None = None,
    *,
    vocab_size: int = 400,
    hidden_size: int = 64,
    layers: int = 2,
    heads: int = 4,
    seed: int = 0,
    rows: int | None = None,
) -> Path:
    """Saves a tiny random Llama with a small SentencePiece tokenizer trained here on ``texts``
    (default: the demo's documents), as a Llama model is shipped: ``tokenizer.model`` beside
    ``tokenizer.json``. llama.cpp's converter reads this tokenizer, which it cannot do for the
    byte-level one of ``tiny_model``: this is the model GGUF export is tested with. ``rows``: the
    embedding's rows when more than the tokens (released models often pad them to a round number)."""
    import io

    import sentencepiece
    from transformers import LlamaTokenizer

    from llm_magics.models.loader import quiet_libraries

    quiet_libraries()
    directory = Path(path)
    directory.mkdir(parents=True, exist_ok=True)
    lines = texts or [doc["text"] for doc in documents(64)]
    trained = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(lines * max(1, 200 // len(lines))),
        model_writer=trained,
        vocab_size=vocab_size,
        model_type="bpe",
        byte_fallback=True,  # any text has tokens: unseen characters become bytes
        character_coverage=1.0,
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=-1,
        split_digits=True,
        normalization_rule_name="identity",
        hard_vocab_limit=False,
        minloglevel=2,
        num_threads=1,
    )
    (directory / "tokenizer.model").write_bytes(trained.getvalue())
    tokenizer = LlamaTokenizer.from_pretrained(directory, add_bos_token=True)
    tokenizer.pad_token = tokenizer.unk_token
    tokenizer.chat_template = CHAT_TEMPLATE
    shape = {"hidden_size": hidden_size, "layers": layers, "heads": heads, "seed": seed}
    return _with_random_llama(directory, tokenizer, **shape, rows=rows)


def _with_random_llama(
    directory: Path, tokenizer: Any, *, hidden_size: int, layers: int, heads: int, seed: int, rows: int | None = None
) -> Path:
    """Saves ``tokenizer`` and a tiny Llama with random weights sized for it to ``directory``."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=max(rows or 0, len(tokenizer)),
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 2,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=max(1, heads // 2),
        max_position_embeddings=2048,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,  # None for the byte-level tokenizer: it has none
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory
