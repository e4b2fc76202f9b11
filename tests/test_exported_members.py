"""The public API is explicit, sorted and importable."""

from __future__ import annotations

import llm_magics


def test_all_is_pinned():
    # sorted as ruff's RUF022 sorts (isort style), which `ruff check` enforces
    assert llm_magics.__all__ == [
        "LLM",
        "Collection",
        "Database",
        "Document",
        "LLMTrainer",
        "LLMTrainingConfiguration",
        "Run",
        "TextClassification",
        "connect",
        "load_ipython_extension",
        "superduper",
        "tiny_model",
        "unload_ipython_extension",
    ]


def test_every_exported_name_resolves():
    for name in llm_magics.__all__:
        assert getattr(llm_magics, name) is not None
