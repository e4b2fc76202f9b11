"""A tiny causal LM with random weights, built offline: the model of the tests, demo and benchmarks."""

from __future__ import annotations

from pathlib import Path

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
    import torch
    from transformers import ByT5Tokenizer, LlamaConfig, LlamaForCausalLM

    from llm_magics.loader import quiet_libraries

    quiet_libraries()
    directory = Path(path)
    tokenizer = ByT5Tokenizer()
    tokenizer.chat_template = CHAT_TEMPLATE
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 2,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=max(1, heads // 2),
        max_position_embeddings=2048,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory
