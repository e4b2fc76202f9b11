"""A judge: another model asked to score an answer on a scale, its reply parsed for a number.

The judge is a stored checkpoint (``NAME@REF``) or a base model. Its prompt is a template with
``{prompt}``, ``{prediction}`` and ``{reference}`` put in by plain replacement (text, not code).
A reply without a number on the scale counts as missing, is counted, and never fails a run.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from llm_magics.models.generate import generate

if TYPE_CHECKING:
    from llm_magics.config.eval_generate import Judge
    from llm_magics.models.checkpoint import StoredModel

_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


def judge_prompt(template: str, prompt: Any, prediction: str, reference: str) -> str:
    shown = prompt if isinstance(prompt, str) else _chat_text(prompt)
    values = {"{prompt}": shown, "{prediction}": prediction, "{reference}": reference}
    return re.sub(r"\{prompt\}|\{prediction\}|\{reference\}", lambda m: values[m.group(0)], template)


def _chat_text(chat: list[dict[str, Any]]) -> str:
    return "\n".join(f"{m.get('role')}: {m.get('content')}" for m in chat if isinstance(m, dict))


def parse_score(reply: str, scale: tuple[float, float]) -> float | None:
    """The first number in ``reply``, if it lies on ``scale``; else None (missing)."""
    found = _NUMBER.search(reply)
    if found is None:
        return None
    number = float(found.group(0))
    return number if scale[0] <= number <= scale[1] else None


class JudgeModel:
    """A judge's model, loaded on first use and kept for the evaluation's every batch."""

    def __init__(self, judge: Judge, model: StoredModel):
        self.judge, self.stored = judge, model
        self._loaded: tuple[Any, Any] | None = None

    def scores(self, prompts: list[Any], predictions: list[str], references: list[str]) -> list[float | None]:
        model, tokenizer = self._load()
        texts = [
            judge_prompt(self.judge.prompt, p, a, r) for p, a, r in zip(prompts, predictions, references, strict=True)
        ]
        replies = generate(
            model, tokenizer, texts, self.stored.template, max_new_tokens=self.judge.max_new_tokens, do_sample=False
        )
        return [parse_score(reply, self.judge.scale) for reply in replies]

    def _load(self) -> tuple[Any, Any]:
        if self._loaded is None:
            from llm_magics.models.loader import load_base_model, load_tokenizer

            stored = self.stored
            model = load_base_model(stored.base)
            if stored.adapter is not None:
                from peft import PeftModel

                model = PeftModel.from_pretrained(model, stored.adapter, is_trainable=False)
            model.eval()
            self._loaded = (model, load_tokenizer(stored.base.path, stored.base.tokenizer_kwargs))
        return self._loaded
