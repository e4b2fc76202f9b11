"""The keys of a configuration that decide what the data floor builds: which documents, which of
their fields, and how they split and cut. The data floor takes this, not the whole configuration:
it is what a data report is asked with, and what a cache of tokenized data is keyed by."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class DataKeys:
    collection: str | None
    select: dict[str, Any] | None = None
    task: str = "causal-lm"
    X: str = "text"
    y: str | None = None
    prompt: str | list[str] | None = None  # a list: the fields joined (alpaca's instruction and input)
    response: str | None = None
    prompt_template: str | None = None
    messages: str | None = None
    method: str = "sft"  # preference and reward methods read their own fields (below) untokenized
    chosen: str | None = None
    rejected: str | None = None
    completion: str | None = None
    label: str | None = None
    max_length: int | None = None
    seed: int = 42
    valid_fraction: float | None = None
    evaluate: bool = False  # an evaluation is asked for: a held-out share is taken if none is marked

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
