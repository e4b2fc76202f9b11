"""What a preference or reward method's run will train on, for ``--dry-run`` (SPEC §11): a pair's
prompt (not trained) with its chosen and its rejected answer, a KTO example with its label, or
GRPO's prompt as rendered, one completion of the starting model and each reward function's value.

Each section is (title, pieces); a piece is (text, trained). Texts are as the trainer gets them;
each section's title counts its tokens.
"""

from __future__ import annotations

from typing import Any

Pieces = list[tuple[str, bool]]


def sections(method: str, row: dict[str, Any], tokenizer: Any, tried: Any = None) -> list[tuple[str, Pieces]]:
    prompt = _text(row["prompt"], tokenizer, prompt=True)
    if method == "kto":
        label = "desirable" if row["label"] else "undesirable"
        return [_section(f"example ({label})", prompt, _text(row["completion"], tokenizer), tokenizer)]
    if method == "grpo":
        shown = [(f"prompt as rendered · {_count(tokenizer, prompt)} tokens", [(prompt, False)])]
        if tried is not None:
            completion = _text(tried.completion, tokenizer)
            values = " · ".join(f"{name} {_value(value)}" for name, value in tried.values.items())
            shown.append((f"a completion of the starting model · rewards: {values}", [(completion, True)]))
        return shown
    return [
        _section("chosen", prompt, _text(row["chosen"], tokenizer), tokenizer),
        _section("rejected", prompt, _text(row["rejected"], tokenizer), tokenizer),
    ]


def _section(title: str, prompt: str, answer: str, tokenizer: Any) -> tuple[str, Pieces]:
    counts = f"{_count(tokenizer, prompt)} prompt tokens (not trained) + {_count(tokenizer, answer)} trained"
    return f"{title} · {counts}", [(prompt, False), (answer, True)]


def _text(value: Any, tokenizer: Any, prompt: bool = False) -> str:
    """A column as the trainer writes it: text as it is, a chat through the chat template."""
    if isinstance(value, list):
        return tokenizer.apply_chat_template(value, tokenize=False, add_generation_prompt=prompt)
    return str(value)


def _count(tokenizer: Any, text: str) -> int:
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


def _value(value: float | None) -> str:
    return "None" if value is None else f"{value:.4g}"


def longest(method: str, rows: Any, tokenizer: Any, completion_tokens: int, limit: int = 1000) -> int:
    """The longest sequence training will see (of the first ``limit`` rows), for the memory estimate."""
    best = 1
    for i, row in enumerate(rows):
        if i == limit:
            break
        prompt = _count(tokenizer, _text(row["prompt"], tokenizer, prompt=True))
        if method == "grpo":
            answers = [completion_tokens]
        else:
            names = ("completion",) if method == "kto" else ("chosen", "rejected")
            answers = [_count(tokenizer, _text(row[name], tokenizer)) for name in names]
        best = max(best, prompt + max(answers))
    return best
