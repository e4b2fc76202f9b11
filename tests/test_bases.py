"""Each run keeps the base it trained on: training a name again on another base never changes what
an earlier checkpoint of that name loads, answers, compares or exports."""

from __future__ import annotations

import json

import pytest
from helpers import qa_docs, small_config

from llm_magics import LLM, TextClassification, tiny_model
from llm_magics.core.errors import ConfigError

pytestmark = pytest.mark.slow
PROMPT = "### Human: what is 3? ### Assistant:"


@pytest.fixture
def other_base(workdir):
    """A second tiny model: the same shapes, other random weights."""
    return str(tiny_model(workdir / "other-base", seed=1))


@pytest.fixture
def two_runs(db, tiny_path, other_base):
    """Model 'm' trained on the tiny base, then trained again under the same name on another base."""
    db["docs"].insert_many(qa_docs(20))
    config = small_config(max_steps=2, save_steps=2, eval_strategy="no", learning_rate=5e-3)
    first = LLM("m", tiny_path).fit(select="docs", db=db, configuration=config)
    answer = db.load("model", "m").predict(PROMPT, max_new_tokens=8)
    second = LLM("m", other_base).fit(select="docs", db=db, configuration=config)
    return first, answer, second


def test_an_earlier_checkpoint_answers_on_its_own_base_after_a_run_on_another(db, two_runs, tiny_path):
    first, answer, _ = two_runs
    again = db.load("model", "m", checkpoint=f"{first.id}:2")
    assert again.model_name_or_path == tiny_path
    assert again.predict(PROMPT, max_new_tokens=8) == answer
    latest = db.load("model", "m")
    assert latest.predict(PROMPT, max_new_tokens=8, checkpoint=f"{first.id}:2") == answer
    assert db.show("run", "m")[0]["base"]["model"] == tiny_path


def test_compare_and_export_use_each_checkpoints_own_base(shell, db, two_runs, tiny_path, other_base, workdir):
    first, answer, second = two_runs
    comparison, _ = shell.run(f'%llm_predict m "{PROMPT}" --max-new-tokens 8 --compare @{first.id}:2 @{second.id}:2')
    assert comparison.answers[f"{first.id}:2"] == [answer]
    shell.run(f"%llm_export m@{first.id}:2 {workdir / 'exported'}")
    assert json.loads((workdir / "exported" / "llm_magics.json").read_text())["base_model"] == tiny_path


def test_the_model_record_holds_defaults_and_the_runs_hold_their_bases(db, two_runs, other_base):
    first, _, second = two_runs
    record = db.store.model("m")
    assert record["defaults"]["model"] == other_base and "base_model" not in record
    bases = {run["_id"]: run["base"]["model"] for run in db.show("run", "m")}
    assert bases[second.id] == other_base and bases[first.id] != other_base


def test_a_store_from_before_per_run_bases_keeps_its_base_once(db, tiny_path, other_base):
    """A run recorded by an older version has no base: it takes its model record's, before the
    next run of that name replaces the record's."""
    db["docs"].insert_many(qa_docs(20))
    config = small_config(max_steps=2, save_steps=2, eval_strategy="no", learning_rate=5e-3)
    old = LLM("m", tiny_path).fit(select="docs", db=db, configuration=config)
    answer = db.load("model", "m").predict(PROMPT, max_new_tokens=8)
    db.store.runs.update_one({"_id": old.id}, {"$unset": {"base": ""}})  # as an older version wrote it
    db.store.models.update_one(
        {"_id": "m"}, {"$set": {"base_model": tiny_path, "bits": None, "task": "causal-lm"}, "$unset": {"defaults": ""}}
    )
    LLM("m", other_base).fit(select="docs", db=db, configuration=config)
    assert db.store.runs.find_one({"_id": old.id})["base"]["model"] == tiny_path
    assert db.load("model", "m", checkpoint=f"{old.id}:2").predict(PROMPT, max_new_tokens=8) == answer


def test_resuming_on_another_base_is_refused_before_anything_is_written(db, two_runs, tiny_path):
    _, _, second = two_runs
    runs = len(db.show("run", "m"))
    with pytest.raises(ConfigError, match=rf"resume: checkpoint {second.id}:2 trained on '.*other-base', not on"):
        LLM("m", tiny_path).fit(
            select="docs", db=db, configuration=small_config(max_steps=4), resume_from_checkpoint=f"{second.id}:2"
        )
    assert len(db.show("run", "m")) == runs


def test_a_classifiers_earlier_checkpoint_keeps_its_labels(db, tiny_path):
    db["animals"].insert_many([{"text": f"a cat {i}", "label": "cat"} for i in range(8)])
    db["animals"].insert_many([{"text": f"a dog {i}", "label": "dog"} for i in range(8)])
    db["colours"].insert_many([{"text": f"red {i}", "label": c} for i, c in enumerate(["red", "green", "blue"] * 4)])
    config = small_config(max_steps=2, save_steps=2, eval_strategy="no", task="text-classification", y="label")
    first = TextClassification("c", tiny_path).fit(select="animals", db=db, configuration=config)
    TextClassification("c", tiny_path).fit(select="colours", db=db, configuration=config)
    earlier = db.load("model", "c", checkpoint=f"{first.id}:2")
    assert set(earlier.predict("a cat", scores=True)) == {"cat", "dog"}
    assert set(db.load("model", "c").predict("red", scores=True)) == {"blue", "green", "red"}
