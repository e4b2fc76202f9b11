"""Tokenized data kept between runs (SPEC §13): a second run on the same documents does not
tokenize again and trains the same; a changed collection, tokenizer setting or transform does."""

from __future__ import annotations

from helpers import qa_docs, small_config

from llm_magics import LLM


def counting_encoder(monkeypatch):
    """Counts the tokenizer passes over the documents (the encoder of data.training_set)."""
    from llm_magics.data import training_set

    calls = []
    original = training_set.encoder

    def encoder(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(training_set, "encoder", encoder)
    return calls


def test_a_second_run_reuses_the_tokens_and_a_changed_collection_does_not(db, tiny_path, monkeypatch):
    calls = counting_encoder(monkeypatch)
    db["d"].insert_many(qa_docs(30))
    llm = LLM("cached", tiny_path)
    config = small_config(max_steps=4, eval_strategy="no")
    first = llm.fit(select="d", db=db, configuration=config)
    assert len(calls) == 1 and "from_cache" not in first.record["counts"]
    second = llm.fit(select="d", db=db, configuration=config)
    assert len(calls) == 1 and second.record["counts"]["from_cache"] == 1
    assert second.metrics["loss"].tolist() == first.metrics["loss"].tolist()  # the same data, the same run
    assert second.record["counts"]["train_docs"] == first.record["counts"]["train_docs"]
    db["d"].insert_one({"text": "### Human: one more? ### Assistant: yes", "_fold": "train"})
    third = llm.fit(select="d", db=db, configuration=config)
    assert len(calls) == 2 and third.record["counts"]["train_docs"] == first.record["counts"]["train_docs"] + 1
    longer = llm.fit(select="d", db=db, configuration=small_config(max_steps=4, eval_strategy="no", max_length=32))
    assert len(calls) == 3 and "from_cache" not in longer.record["counts"]  # max_length decides the tokens


def test_a_transform_is_never_taken_from_the_cache(db, tiny_path, monkeypatch):
    calls = counting_encoder(monkeypatch)
    db["d"].insert_many(qa_docs(20))
    llm = LLM("transformed", tiny_path)
    config = small_config(max_steps=2, eval_strategy="no")
    for _ in range(2):
        llm.fit(select="d", db=db, configuration=config, transform=lambda doc: doc["text"].upper())
    assert len(calls) == 2


def test_a_dry_run_keeps_nothing_and_the_run_after_it_tokenizes(shell, db, monkeypatch):
    calls = counting_encoder(monkeypatch)
    db["d"].insert_many(qa_docs(20))
    cell = "%%llm_finetune dry{}\nmodel: {{{{ base_path }}}}\ndata: d\nmax_steps: 2\nlora_r: 4\neval_strategy: 'no'"
    shell.run(cell.format(" --dry-run"))
    dry = len(calls)  # the run's sets and the data report's lengths
    assert dry >= 1 and not (db.artifacts.parent / "cache").exists()
    shell.run(cell.format(" -o run"))
    assert len(calls) == dry + 1 and "from_cache" not in shell.ns["run"].record["counts"]
    shell.run(cell.format(" -o again"))
    assert len(calls) == dry + 1 and shell.ns["again"].record["counts"]["from_cache"] == 1
