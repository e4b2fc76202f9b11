"""TextClassification: labels from a collection, accuracy in evaluation, a label from predict."""

from __future__ import annotations

import random

import pytest
from helpers import small_config

from llm_magics import TextClassification
from llm_magics.core.errors import ConfigError

pytestmark = pytest.mark.slow
WORDS = {"positive": ["great", "lovely", "superb", "happy"], "negative": ["awful", "boring", "sad", "poor"]}


def reviews(count: int, seed: int = 0) -> list[dict]:
    """A separable toy set: each text repeats words of its label."""
    rng = random.Random(seed)
    docs = []
    for i in range(count):
        label = "positive" if i % 2 else "negative"
        words = " ".join(rng.choice(WORDS[label]) for _ in range(4))
        docs.append({"text": f"this film was {words}", "label": label, "_fold": "valid" if i % 5 == 0 else "train"})
    return docs


@pytest.fixture(scope="module")
def classifier(tiny_path):
    from llm_magics import connect

    db = connect("mongomock://classification")
    db["reviews"].insert_many(reviews(200))
    model = TextClassification("sentiment", tiny_path)
    config = small_config(
        max_steps=60, eval_steps=60, save_steps=60, learning_rate=3e-3, lora_r=8, per_device_train_batch_size=8
    )
    run = model.fit(X="text", y="label", select="reviews", configuration=config, db=db)
    return db, model, run


def test_a_classifier_trained_on_a_separable_set_beats_chance(classifier):
    db, model, run = classifier
    assert run.status == "completed"
    assert model.labels == ["negative", "positive"]
    assert run.metrics["eval_accuracy"].dropna().iloc[-1] >= 0.9  # chance is 0.5
    fresh = reviews(40, seed=1)
    answers = db.load("model", "sentiment").predict([doc["text"] for doc in fresh])
    assert sum(a == doc["label"] for a, doc in zip(answers, fresh, strict=True)) / len(fresh) >= 0.9


def test_predict_gives_a_label_or_every_labels_probability(classifier):
    db, _, _ = classifier
    loaded = db.load("model", "sentiment")
    assert isinstance(loaded, TextClassification)
    assert loaded.predict("this film was lovely superb great happy") == "positive"
    scores = loaded.predict("this film was awful sad poor boring", scores=True)
    assert set(scores) == {"negative", "positive"} and scores["negative"] > 0.5
    assert sum(scores.values()) == pytest.approx(1.0)


def test_generation_options_are_refused_by_name(classifier):
    db, _, _ = classifier
    with pytest.raises(ConfigError, match="max_new_tokens applies to text generation"):
        db.load("model", "sentiment").predict("fine", max_new_tokens=5)


def test_a_cell_trains_a_classifier_and_predict_returns_the_label(shell, db):
    db["reviews"].insert_many(reviews(200))
    shell.run(
        "%%llm_finetune cell-sentiment\n"
        "model: '{{ base_path }}'\ntask: text-classification\ndata: reviews\nX: text\ny: label\n"
        "max_steps: 60\nlearning_rate: 0.003\nlora_r: 8\nper_device_train_batch_size: 8\n"
        "eval_strategy: steps\neval_steps: 60\nsave_steps: 60\n"
    )
    result, _ = shell.run('%llm_predict cell-sentiment "this film was great lovely happy superb"')
    assert result == "positive"
    record = db.show("run", "cell-sentiment")[0]
    assert record["status"] == "completed" and record["config"]["task"] == "text-classification"


def test_labels_missing_from_documents_are_named(db, tiny_path):
    db["reviews"].insert_many([{"text": "a"}, {"text": "b", "label": "x"}])
    with pytest.raises(Exception, match="label"):
        TextClassification("c", tiny_path).fit(
            X="text", y="label", select="reviews", configuration=small_config(), db=db
        )
    assert db.show("model") == []


def test_the_browser_and_the_summary_show_a_classifiers_labels_and_accuracy(classifier):
    from llm_magics.widgets.checkpoints import CheckpointBrowser
    from llm_magics.widgets.progress import summary_html

    db, _, run = classifier
    accuracy = f"<th style='text-align:left'>eval accuracy</th><td>{run.state.eval_accuracy:.1%}</td>"
    assert accuracy in summary_html(run.state) and accuracy in summary_html(run.stored_state())
    browser = CheckpointBrowser(db, "sentiment")
    try:
        browser.table.value = tuple(browser.records)[:1]
        browser.prompt.value = "this film was awful sad poor boring"
        browser.generate()
        assert "negative" in browser.output.value
    finally:
        browser.close()
