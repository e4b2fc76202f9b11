"""Data in (SPEC §13): files, a folder of text, a saved dataset and DataFrames into the store, a
malformed row named by file and line (nothing written), --skip-bad, --dedupe on a rerun; the format
found and the keys that train on it."""

from __future__ import annotations

import json

import pytest

from llm_magics.core.errors import DataError
from llm_magics.data.formats import detect
from llm_magics.data.ingest import ingest


def test_a_jsonl_file_with_a_bad_line_writes_nothing_unless_told_to_skip_it(db, tmp_path):
    path = tmp_path / "chats.jsonl"
    rows = [json.dumps({"prompt": f"q{i}", "response": f"a{i}"}) for i in range(10)]
    rows.insert(4, '{"prompt": "broken", ')
    path.write_text("\n".join(rows) + "\n")
    with pytest.raises(DataError, match=r"chats.jsonl:5: not JSON \(.*\) — fix it, or pass --skip-bad"):
        ingest(db.mongo_db, str(path), "qa")
    assert "qa" not in db.list_collection_names()
    done = ingest(db.mongo_db, str(path), "qa", skip_bad=True)
    assert (done.written, done.bad) == (10, 1) and done.bad_examples[0].startswith("chats.jsonl:5: not JSON")
    assert db["qa"].count_documents({}) == 10 and db["qa"].find_one({"prompt": "q3"})["response"] == "a3"


def test_dedupe_adds_nothing_twice_and_replace_starts_again(db, tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text("\n".join(json.dumps({"text": f"t{i % 6}"}) for i in range(9)))  # 3 duplicates inside
    first = ingest(db.mongo_db, str(path), "docs", dedupe=True)
    assert (first.written, first.duplicates) == (6, 3)
    again = ingest(db.mongo_db, str(path), "docs", dedupe=True)
    assert (again.written, again.duplicates) == (0, 9) and db["docs"].count_documents({}) == 6
    replaced = ingest(db.mongo_db, [{"text": "only"}], "docs", replace=True)
    assert replaced.written == 1 and [d["text"] for d in db["docs"].find()] == ["only"]


def test_csv_with_quoting_and_a_bom_tsv_parquet_and_a_glob(db, tmp_path):
    import pandas as pd

    (tmp_path / "a.csv").write_bytes('\ufeffprompt,response\n"say ""hi""","hi, there"\nq2,"two\nlines"\n'.encode())
    (tmp_path / "b.tsv").write_text("prompt\tresponse\nq3\ta3\n")
    pd.DataFrame({"prompt": ["q4", "q5"], "response": ["a4", "a5"], "n": [1, 2]}).to_parquet(tmp_path / "c.parquet")
    done = ingest(db.mongo_db, str(tmp_path / "a.csv"), "mixed")
    assert done.written == 2
    first = db["mixed"].find_one({"prompt": 'say "hi"'})
    assert first is not None and first["response"] == "hi, there"  # the BOM is not part of the first name
    assert db["mixed"].find_one({"prompt": "q2"})["response"] == "two\nlines"
    ingest(db.mongo_db, str(tmp_path / "b.tsv"), "mixed")
    ingest(db.mongo_db, str(tmp_path / "*.parquet"), "mixed")
    parquet = db["mixed"].find_one({"prompt": "q5"})
    assert parquet["n"] == 2 and isinstance(parquet["n"], int)
    assert db["mixed"].count_documents({}) == 5
    (tmp_path / "bad.csv").write_text("prompt,response\nq,a,extra\n")
    with pytest.raises(DataError, match=r"bad.csv:2: 3 fields, the header has 2"):
        ingest(db.mongo_db, str(tmp_path / "bad.csv"), "mixed")


def test_a_markdown_folder_a_saved_dataset_and_a_dataframe(db, tmp_path):
    import datasets
    import pandas as pd

    folder = tmp_path / "notes"
    (folder / "sub").mkdir(parents=True)
    (folder / "one.md").write_text("# One\nfirst note")
    (folder / "sub" / "two.txt").write_text("second note")
    (folder / "skip.png").write_bytes(b"\x89PNG")
    assert ingest(db.mongo_db, str(folder), "notes").written == 2
    assert {d["path"] for d in db["notes"].find()} == {"one.md", "sub/two.txt"}
    saved = tmp_path / "saved"
    datasets.DatasetDict(
        {
            "train": datasets.Dataset.from_dict({"text": ["a", "b", "c"], "label": [0, 1, 0]}),
            "validation": datasets.Dataset.from_dict({"text": ["d"], "label": [1]}),
        }
    ).save_to_disk(str(saved))
    assert ingest(db.mongo_db, str(saved), "saved").written == 4
    assert db["saved"].find_one({"text": "d"})["_fold"] == "valid" and db["saved"].find_one({"text": "a"})["label"] == 0
    frame = pd.DataFrame({"text": ["x", "y"], "score": [0.5, float("nan")]})
    assert ingest(db.mongo_db, frame, "frame").written == 2
    assert db["frame"].find_one({"text": "y"})["score"] is None  # NaN is a missing value


def test_the_magic_ingests_a_notebook_dataframe_and_suggests_the_keys(shell, db):
    import pandas as pd

    shell.ns["df"] = pd.DataFrame({"instruction": ["Add", "Name"], "input": ["2 and 2", ""], "output": ["4", "Paris"]})
    _, captured = shell.run("%llm_ingest {{ df }} alpaca --dedupe")
    assert db["alpaca"].count_documents({}) == 2
    printed = captured.stdout
    assert "alpaca" in printed and "prompt: [instruction, input]" in printed and "response: output" in printed


@pytest.mark.parametrize(
    ("docs", "name", "keys"),
    [
        ([{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}], "OpenAI chat",
         {"messages": "messages"}),
        ([{"conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "yo"}]}], "ShareGPT",
         {"messages": "conversations"}),
        ([{"prompt": "p", "chosen": "c", "rejected": "r"}], "preference pairs",
         {"method": "dpo", "prompt": "prompt", "chosen": "chosen", "rejected": "rejected"}),
        ([{"prompt": "p", "completion": "c", "label": True}], "KTO",
         {"method": "kto", "prompt": "prompt", "completion": "completion", "label": "label"}),
        ([{"instruction": "i", "input": "x", "output": "o"}], "alpaca",
         {"prompt": ["instruction", "input"], "response": "output"}),
        ([{"prompt": "p", "response": "r"}], "prompt / response", {"prompt": "prompt", "response": "response"}),
        ([{"text": "t", "label": "pos"}], "text with a label",
         {"task": "text-classification", "X": "text", "y": "label"}),
        ([{"body": "t"}], "text", {"X": "body"}),
    ],
)  # fmt: skip
def test_the_format_is_found_with_the_keys_that_train_on_it(docs, name, keys):
    found = detect(docs)
    assert found is not None and (found.name, found.keys) == (name, keys)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["sharegpt", "alpaca"])
def test_training_on_the_suggested_keys_works_without_converting(db, tiny_path, kind):
    from llm_magics import LLM, LLMTrainingConfiguration

    if kind == "sharegpt":
        rows = [{"conversations": [{"from": "human", "value": f"hi {i}"}, {"from": "gpt", "value": "hello"}]}
                for i in range(16)]  # fmt: skip
    else:
        rows = [{"instruction": "Add", "input": f"{i} and 1", "output": str(i + 1)} for i in range(16)]
    db["rows"].insert_many(rows)
    found = detect(list(db["rows"].find()))
    config = LLMTrainingConfiguration(data="rows", **found.keys, max_steps=4, save_steps=4, lora_r=4, max_length=64)
    run = LLM(f"{kind}-model", tiny_path).fit(configuration=config, db=db)
    assert run.status == "completed", run.error
    assert run.record["counts"]["trained_tokens"] > 0
    if kind == "alpaca":  # instruction and input, a blank line between, are the prompt
        from llm_magics.data.training_set import joined_prompt

        assert joined_prompt(("Add", "3 and 1", "4")) == ("Add\n\n3 and 1", "4")
        assert joined_prompt(("Add", "", "4")) == ("Add", "4")
