"""TextClassification: a sequence-classification model trained on a collection's text and labels."""

from __future__ import annotations

from typing import Any

from llm_magics.api.llm import LLM
from llm_magics.core.errors import ConfigError


class TextClassification(LLM):
    """A text classifier (``AutoModelForSequenceClassification``) with LoRA or full fine-tuning.

    ``fit(X="text", y="label", ...)`` trains on the collection; labels are read as text, mapped to
    ids and stored with the model. ``predict(text)`` returns the label; ``scores=True`` returns
    each label's probability instead.
    """

    task = "text-classification"

    def predict(self, prompt: str | list[str], *, scores: bool = False, **kwargs: Any) -> Any:
        """The label of a text (or of each text in a list); with ``scores``, every label's probability."""
        unknown = sorted(set(kwargs) - {"checkpoint", "adapter"})
        if unknown:
            raise ConfigError(f"predict: {', '.join(unknown)} applies to text generation, not to a classifier")
        return super().predict(prompt, scores=scores, **kwargs)

    def _answer(
        self, model: Any, tokenizer: Any, prompts: list[str], template: dict | None, *, scores: bool = False, **_: Any
    ) -> list:
        import torch

        inputs = tokenizer(prompts, padding=True, truncation=True, return_tensors="pt").to(model.device)
        if model.training:
            model.eval()
        with torch.inference_mode():
            probabilities = model(**inputs).logits.float().softmax(-1).tolist()
        names = model.config.id2label
        if scores:
            return [{names[i]: p for i, p in enumerate(row)} for row in probabilities]
        return [names[max(range(len(row)), key=row.__getitem__)] for row in probabilities]
