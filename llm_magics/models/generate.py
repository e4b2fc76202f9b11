"""Generation from a loaded model, in the prompt format the checkpoint was trained with."""

from __future__ import annotations

from typing import Any

from llm_magics.core.errors import ModelError
from llm_magics.data.training_set import render_prompt

DEFAULT_MAX_NEW_TOKENS = 64


def format_prompt(prompt: str | list[dict[str, Any]], template: dict[str, Any] | None, tokenizer: Any) -> str:
    """Writes ``prompt`` (text, or a chat's turns so far) the way the model saw prompts in training."""
    template = template or {}
    kind = template.get("kind")
    if isinstance(prompt, list):  # a held-out chat, up to the turn the model answers
        return tokenizer.apply_chat_template(
            prompt, chat_template=template.get("chat_template"), add_generation_prompt=True, tokenize=False
        )
    if kind == "messages" or template.get("chat_template"):  # SFT's chats, a preference or reward method's
        return tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt}],
            chat_template=template.get("chat_template"),
            add_generation_prompt=True,
            tokenize=False,
        )
    # a prompt/response pair's template, and a preference or reward method's (their prompts are
    # written the same way); text and classification have none
    return render_prompt(template.get("prompt_template"), prompt)


def generate(
    model: Any, tokenizer: Any, prompts: list[Any], template: dict[str, Any] | None = None, **kwargs: Any
) -> list[str]:
    """Generates one answer per prompt (batched, left-padded); returns only the new text."""
    import torch

    kwargs.setdefault("max_new_tokens", DEFAULT_MAX_NEW_TOKENS)
    kwargs.setdefault("pad_token_id", tokenizer.pad_token_id)
    texts = [format_prompt(p, template, tokenizer) for p in prompts]
    ids = [prompt_ids(tokenizer, text) for text in texts]
    width = max(len(row) for row in ids)
    pad = tokenizer.pad_token_id
    input_ids = torch.tensor([[pad] * (width - len(row)) + row for row in ids], device=model.device)
    attention = torch.tensor([[0] * (width - len(row)) + [1] * len(row) for row in ids], device=model.device)
    if model.training:  # eval() walks every module
        model.eval()
    try:
        with torch.inference_mode():
            output = model.generate(input_ids=input_ids, attention_mask=attention, **kwargs)
    except (TypeError, ValueError) as error:
        raise ModelError(f"generation: {error}") from None
    return tokenizer.batch_decode(output[:, width:], skip_special_tokens=True)


def prompt_ids(tokenizer: Any, text: str) -> list[int]:
    """A formatted prompt's token ids as generation feeds them (no EOS at its end)."""
    ids = tokenizer(text, add_special_tokens=True)["input_ids"]
    # tokenizers that end every text with EOS (ByT5, T5) would tell the model the prompt is over
    if ids and tokenizer.eos_token_id is not None and ids[-1] == tokenizer.eos_token_id:
        ids = ids[:-1]
    return ids or [tokenizer.pad_token_id]
