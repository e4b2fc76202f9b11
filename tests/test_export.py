"""Export: a LoRA checkpoint merged into its base, saved as a model plain transformers loads."""

from __future__ import annotations

import json

import pytest
import torch
from helpers import qa_docs, small_config
from IPython.core.error import UsageError

from llm_magics import LLM

pytestmark = pytest.mark.slow


@pytest.fixture
def trained(db, tiny_path):
    db["docs"].insert_many(qa_docs(40))
    LLM("exp", tiny_path, bits=4).fit(configuration=small_config(data="docs", max_steps=4, learning_rate=5e-3), db=db)
    return db


def logits(model, tokenizer_path):
    from llm_magics.models.loader import load_tokenizer

    ids = load_tokenizer(str(tokenizer_path))("### Human: what is 7? ### Assistant: it is", return_tensors="pt")
    with torch.inference_mode():
        return model.eval()(**ids).logits


def test_a_merged_export_gives_the_logits_of_base_plus_adapter(trained, tiny_path, workdir):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    db = trained
    record = next(c for c in db.show("checkpoint", "exp") if c["step"] == 2)
    directory = db.load("model", "exp").export(workdir / "merged", checkpoint=2)
    merged = AutoModelForCausalLM.from_pretrained(directory)
    assert not any("lora" in name for name, _ in merged.named_parameters())
    reference = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_path), record["path"])
    assert torch.allclose(logits(merged, directory), logits(reference, tiny_path), atol=1e-5)
    info = json.loads((directory / "llm_magics.json").read_text())
    assert info["step"] == 2 and info["checkpoint"] == record["_id"]


def test_the_export_magic_writes_a_directory_and_refuses_a_full_one(shell, trained, workdir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    shell.run("%llm_export exp@best exported")
    assert AutoModelForCausalLM.from_pretrained(workdir / "exported") is not None
    assert AutoTokenizer.from_pretrained(workdir / "exported").chat_template
    with pytest.raises(UsageError, match="exists and is not empty"):
        shell.run("%llm_export exp exported")
    with pytest.raises(UsageError, match=r"no checkpoint|step"):
        shell.run("%llm_export exp@99 other")
    assert not (workdir / "other").exists()


def test_gguf_of_a_byte_level_model_is_refused_up_front_by_the_api_and_the_magic(shell, trained, workdir, monkeypatch):
    """The tiny model's ByT5Tokenizer cannot become a GGUF: the API and the magic say so in one
    line, the reason the checkpoint browser shows, before anything merges or is written (and before
    llama.cpp is looked for: installing it would not help)."""
    import importlib.util

    from llm_magics.api import llm as api_llm
    from llm_magics.export.gguf_tokenizer import gguf_refusal

    def not_merged(*args, **kwargs):
        raise AssertionError("merged before the refusal")

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "llama_cpp" else find_spec(name, *a)
    )
    monkeypatch.setattr(api_llm, "export_model", not_merged)
    reason = gguf_refusal(trained.load("model", "exp").trained_base(trained.store.checkpoint("exp")).path)
    assert reason is not None and "(ByT5Tokenizer) has no vocabulary file" in reason and "\n" not in reason
    with pytest.raises(UsageError) as refused:
        trained.load("model", "exp").export(workdir / "by-api", gguf="q8_0")
    assert str(refused.value) == reason
    with pytest.raises(UsageError) as refused:
        shell.run("%llm_export exp@2 by-magic --gguf q4_k_m")
    assert str(refused.value) == reason
    assert sorted(p.name for p in workdir.iterdir() if p.name.startswith(("by-", ".partial"))) == []
