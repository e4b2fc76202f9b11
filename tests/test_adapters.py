"""Adapters: one loaded base shared by several adapters, adapters from our checkpoints or a
directory, and training that continues from an adapter."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import qa_docs, small_config
from safetensors.torch import load_file

from llm_magics import LLM

pytestmark = pytest.mark.slow
PROMPT = "### Human: what is 7? ### Assistant: "


@pytest.fixture(scope="module")
def two_models(tiny_path):
    """Model 'first' (checkpoints 2 and 4) and 'second', which trained on from first@2."""
    from llm_magics import connect

    db = connect("mongomock://adapters")
    db["docs"].insert_many(qa_docs(40))
    LLM("first", tiny_path).fit(configuration=small_config(data="docs", max_steps=4, learning_rate=5e-3), db=db)
    LLM("second", tiny_path, adapter_id="checkpoint://first/2").fit(
        configuration=small_config(data="docs", max_steps=2, learning_rate=5e-3, adapter_id="checkpoint://first/2"),
        db=db,
    )
    return db


def weights(db, name, step):
    record = next(c for c in db.show("checkpoint", name) if c["step"] == step)
    return load_file(Path(record["path"]) / "adapter_model.safetensors")


def test_training_continues_from_an_adapter_of_another_model(two_models):
    db = two_models
    start, after = weights(db, "first", 2), weights(db, "second", 2)
    assert set(start) == set(after)  # the same adapter, trained further
    lora_b = [name for name in start if "lora_B" in name]
    assert all(start[name].abs().sum() > 0 for name in lora_b)  # not a fresh (zero) LoRA B
    assert any(not start[name].equal(after[name]) for name in lora_b)
    assert db.show("run", "second")[0]["config"]["adapter_id"] == "checkpoint://first/2"


def test_adapters_of_one_base_switch_without_reloading_it(two_models, tiny_path):
    db = two_models
    models = db.model_cache
    before = models.loads
    answers = {}
    for _ in range(2):
        for name, step in (("first", 2), ("first", 4), ("second", 2)):
            answers[name, step] = db.load("model", name, checkpoint=step).predict(PROMPT, max_new_tokens=8)
        answers["base"] = db.load("model", "first").predict(PROMPT, max_new_tokens=8, adapter=None)
    assert models.loads - before <= 1  # one base in memory, three adapters switched on it
    (loaded,) = models._loaded.values()
    assert not any(module.training for module in loaded.model.modules())  # no dropout while predicting
    assert len(set(answers.values())) > 1  # and the adapters really differ
    plain = LLM(model_name_or_path=tiny_path).predict(PROMPT, max_new_tokens=8)
    assert answers["base"] == plain


def test_an_adapter_directory_predicts_like_its_checkpoint(two_models, tiny_path):
    db = two_models
    record = next(c for c in db.show("checkpoint", "first") if c["step"] == 4)
    from_directory = LLM("outside", tiny_path, adapter_id=record["path"]).predict(PROMPT, max_new_tokens=8)
    assert from_directory == db.load("model", "first", checkpoint=4).predict(PROMPT, max_new_tokens=8)


def test_the_base_flag_generates_without_any_adapter(shell, db, tiny_path):
    db["docs"].insert_many(qa_docs(20))
    shell.run(f"%%llm_finetune m\nmodel: '{tiny_path}'\ndata: docs\nmax_steps: 2\nlearning_rate: 0.01\n")
    base, _ = shell.run(f'%llm_predict m --base --max-new-tokens 8 "{PROMPT}"')
    tuned, _ = shell.run(f'%llm_predict m --max-new-tokens 8 "{PROMPT}"')
    assert base == LLM(model_name_or_path=tiny_path).predict(PROMPT, max_new_tokens=8)
    assert tuned != base


def test_a_missing_adapter_is_refused_before_anything_is_written(db, tiny_path, tmp_path):
    db["docs"].insert_many(qa_docs(20))
    with pytest.raises(Exception, match=r"adapter_config\.json"):
        LLM("x", tiny_path).fit(configuration=small_config(data="docs", adapter_id=str(tmp_path)), db=db)
    with pytest.raises(Exception, match=r"no checkpoints|not found|no model"):
        LLM("x", tiny_path).fit(configuration=small_config(data="docs", adapter_id="checkpoint://nope/2"), db=db)
    assert db.show("run") == []


def test_browsing_many_checkpoints_keeps_only_the_recent_adapters_loaded(db, tiny_path):
    from llm_magics.models.loader import MAX_ADAPTERS

    db["docs"].insert_many(qa_docs(40))
    LLM("many", tiny_path).fit(
        configuration=small_config(data="docs", max_steps=MAX_ADAPTERS + 2, save_steps=1, learning_rate=5e-3), db=db
    )
    first = db.load("model", "many", checkpoint=1).predict(PROMPT, max_new_tokens=8)
    for step in range(2, MAX_ADAPTERS + 3):
        db.load("model", "many", checkpoint=step).predict(PROMPT, max_new_tokens=2)
    (loaded,) = db.model_cache._loaded.values()
    assert len(loaded.adapters) == MAX_ADAPTERS
    assert db.load("model", "many", checkpoint=1).predict(PROMPT, max_new_tokens=8) == first  # loaded again
    assert db.model_cache.loads == 1
