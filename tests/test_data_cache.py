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
    kept = db.artifacts.parent / "cache" / "tokenized"
    assert calls and not kept.parent.exists()
    shell.run(cell.format(" -o run"))  # keeps the sets it trains on (built now, or by the dry run)
    assert len(list(kept.iterdir())) == 1  # one whole entry, no partial one
    tokenized = len(calls)
    shell.run(cell.format(" -o again"))
    assert len(calls) == tokenized and shell.ns["again"].record["counts"]["from_cache"] == 1


def test_a_sweeps_trials_planned_together_tokenize_once_and_keep_one_entry(db, tiny_path, monkeypatch, tmp_path):
    """A sweep plans every trial before any starts: the first trial's sets serve the others."""
    from llm_magics.config.data_keys import DataKeys
    from llm_magics.data.cache import cached_build
    from llm_magics.models.loader import load_tokenizer

    calls = counting_encoder(monkeypatch)
    db["d"].insert_many(qa_docs(20))
    keys, tokenizer = DataKeys(collection="d", max_length=64), load_tokenizer(tiny_path)
    plans = [cached_build(db.mongo_db, keys, tokenizer, None, tmp_path) for _ in range(3)]
    assert len(calls) == 1 and [data.counts.get("from_cache") for data, _ in plans] == [None, 1, 1]
    assert not list(tmp_path.iterdir())  # nothing kept before a trial starts
    for _, keep in plans:
        keep()
    assert len(list(tmp_path.iterdir())) == 1
    assert plans[1][0].train["input_ids"] == plans[0][0].train["input_ids"]
