"""Documents -> tokenized datasets: folds, formats, masking, and errors that say what to fix."""

from __future__ import annotations

import pytest
from helpers import qa_docs

from llm_magics import LLMTrainingConfiguration
from llm_magics.core.errors import DataError
from llm_magics.data.training_set import IGNORE, build
from llm_magics.models.loader import load_tokenizer


@pytest.fixture(scope="module")
def tokenizer(tiny_path):
    return load_tokenizer(tiny_path)


def config(**values):
    """The data keys of a configuration (what ``build`` takes), checked as a cell's would be."""
    return LLMTrainingConfiguration(**{"data": "docs", "max_length": 64, **values}).data_keys()


def test_folds_split_train_and_valid(db, tokenizer):
    db["docs"].insert_many(qa_docs(40, valid_every=10))
    data = build(db, config(), tokenizer)
    assert (data.counts["train_docs"], data.counts["valid_docs"]) == (36, 4)
    assert data.counts["trained_tokens"] == data.counts["train_tokens"] > 0
    first = data.train[0]
    assert first["labels"] == first["input_ids"] and first["input_ids"][-1] == tokenizer.eos_token_id


def test_without_folds_evaluation_holds_out_a_tenth(db, tokenizer):
    db["docs"].insert_many([{"text": f"doc {i}"} for i in range(200)])
    assert build(db, config(), tokenizer).valid is None
    held = build(db, config(eval_strategy="steps", eval_steps=1), tokenizer)
    assert held.counts["valid_docs"] == 20
    assert build(db, config(valid_fraction=0.5), tokenizer).counts["valid_docs"] == 100
    again = build(db, config(eval_strategy="steps", eval_steps=1), tokenizer)
    assert again.valid["input_ids"] == held.valid["input_ids"]  # the same documents each time


def test_select_filters_projects_and_limits(db, tokenizer):
    db["docs"].insert_many([{"text": f"doc {i}", "lang": "en" if i % 2 else "fr"} for i in range(50)])
    data = build(db, config(data=None, select={"collection": "docs", "filter": {"lang": "en"}, "limit": 7}), tokenizer)
    assert data.counts["train_docs"] == 7
    assert data.selection.to_dict()["filter"] == {"lang": "en"}


def test_prompt_tokens_are_masked_for_prompt_response_data(db, tokenizer):
    db["docs"].insert_many([{"q": "What is 2+2?", "a": "4"} for _ in range(3)])
    data = build(db, config(prompt="q", response="a", prompt_template="### Human: {prompt} ### Assistant: "), tokenizer)
    example = data.train[0]
    prompt_ids = tokenizer("### Human: What is 2+2? ### Assistant: ", add_special_tokens=False)["input_ids"]
    assert example["labels"][: len(prompt_ids)] == [IGNORE] * len(prompt_ids)
    trained = [t for t in example["labels"] if t != IGNORE]
    assert tokenizer.decode(trained, skip_special_tokens=True) == "4"
    assert data.counts["trained_tokens"] < data.counts["train_tokens"]


def test_a_run_that_would_train_no_token_is_refused(db, tokenizer):
    db["docs"].insert_many([{"q": "x" * 100, "a": "y"} for _ in range(3)])
    with pytest.raises(DataError, match="no token would be trained"):
        build(db, config(prompt="q", response="a", max_length=16), tokenizer)


def test_a_missing_collection_suggests_a_close_name(db, tokenizer):
    db["datas"].insert_one({"text": "a"})
    with pytest.raises(DataError, match="no collection 'data' — did you mean 'datas'"):
        build(db, config(data="data"), tokenizer)


def test_an_empty_collection_or_filter_is_named(db, tokenizer):
    db["docs"].insert_one({"text": "a"})
    with pytest.raises(DataError, match=r"collection 'docs' with filter .* has no documents that match"):
        build(db, config(data=None, select={"collection": "docs", "filter": {"lang": "xx"}}), tokenizer)


def test_a_missing_field_is_counted_and_named(db, tokenizer):
    db["docs"].insert_many([{"body": "a"} for _ in range(3)] + [{"text": "b"}])
    with pytest.raises(DataError, match="text: missing in 3 of 4 documents of collection 'docs' — set X"):
        build(db, config(), tokenizer)


def test_text_of_the_wrong_type_is_named(db, tokenizer):
    db["docs"].insert_one({"text": 42})
    with pytest.raises(DataError, match="text: must be text, got int"):
        build(db, config(), tokenizer)


def test_unknown_fold_values_are_named(db, tokenizer):
    db["docs"].insert_one({"text": "a", "_fold": "test"})
    with pytest.raises(DataError, match="_fold: must be 'train' or 'valid', got 'test'"):
        build(db, config(), tokenizer)


def test_a_transform_turns_documents_into_text(db, tokenizer):
    db["docs"].insert_many([{"title": "T", "body": "B"} for _ in range(2)])
    data = build(db, config(), tokenizer, transform=lambda doc: f"{doc['title']}: {doc['body']}")
    assert tokenizer.decode(data.train[0]["input_ids"], skip_special_tokens=True) == "T: B"


def test_a_transform_can_give_a_prompt_and_a_response(db, tokenizer):
    db["docs"].insert_many([{"question": "2+2?", "answer": "4"} for _ in range(2)])
    data = build(
        db,
        config(prompt="prompt", response="response"),
        tokenizer,
        transform=lambda doc: {"prompt": f"Q: {doc['question']} A: ", "response": doc["answer"]},
    )
    example = data.train[0]
    trained = [t for t in example["labels"] if t != IGNORE]
    assert tokenizer.decode(trained, skip_special_tokens=True) == "4"
    assert tokenizer.decode(example["input_ids"], skip_special_tokens=True) == "Q: 2+2? A: 4"


def test_long_texts_are_cut_to_max_length(db, tokenizer):
    db["docs"].insert_one({"text": "x" * 500})
    assert len(build(db, config(max_length=32), tokenizer).train[0]["input_ids"]) == 32


def test_evaluation_on_a_small_set_always_holds_out_a_document(db, tokenizer):
    # with 10% drawn by hash, 5 documents often give none: at least one is held out anyway
    for attempt in range(20):
        db[f"few{attempt}"].insert_many([{"text": f"doc {i}"} for i in range(5)])
        data = build(db, config(data=f"few{attempt}", eval_strategy="steps", eval_steps=1), tokenizer)
        assert data.counts["valid_docs"] >= 1 and data.counts["train_docs"] >= 1
