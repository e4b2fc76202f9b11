"""The seed's training script runs as its users wrote it: only the imports change, and, with no
hub here, the model name and ``load_dataset`` point at local stand-ins."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.slow

IMPORTS = """\
from llm_magics import superduper, Collection, Document, LLM, LLMTrainer
from llm_magics import LLMTrainingConfiguration
from guanaco import load_dataset
"""

# the seed's script below its imports, as it is written
SCRIPT = """\
model = "mistralai/Mistral-7B-v0.1"
dataset_name = "timdettmers/openassistant-guanaco"

db = superduper("mongomock://test_llm")
dataset = load_dataset(dataset_name)
train_dataset = dataset["train"]
eval_dataset = dataset["test"]

train_documents = [
    Document({"text": example["text"], "_fold": "train"})
    for example in train_dataset
]
eval_documents = [
    Document({"text": example["text"], "_fold": "valid"})
    for example in eval_dataset
]

db.execute(Collection("datas").insert_many(train_documents))
db.execute(Collection("datas").insert_many(eval_documents))

trainer = LLMTrainer(
    select=Collection("datas").find(),
    identifier="llm-finetune-training-config",
    output_dir="output/llm-finetune",
    overwrite_output_dir=True,
    num_train_epochs=1,
    save_total_limit=5,
    logging_steps=10,
    evaluation_strategy="steps",
    fp16=True,
    eval_steps=100,
    save_steps=100,
    per_device_train_batch_size=1,
    per_device_eval_batch_size=1,
    gradient_accumulation_steps=4,
    max_length=512,
    use_lora=True,
)

llm = LLM(
    identifier="llm-finetune",
    bits=4,
    model_name_or_path=model,
    trainer=trainer,
)

db.apply(llm)

prompt = "### Human: Who are you? ### Assistant: "

# Automatically load lora model for prediction, default use the latest checkpoint
print(llm.predict(prompt, max_new_tokens=100, do_sample=True))
"""

# a local stand-in for the hub dataset: the same {"train", "test"} splits of {"text"} rows
GUANACO = """\
def load_dataset(name):
    rows = [{"text": f"### Human: question {i}? ### Assistant: answer {i}."} for i in range(28)]
    return {"train": rows[:24], "test": rows[24:]}
"""


def run_seed(directory: Path, tiny_path: str, *, fp16: bool = True) -> subprocess.CompletedProcess:
    script = SCRIPT.replace('"mistralai/Mistral-7B-v0.1"', repr(tiny_path))
    if not fp16:
        script = script.replace("    fp16=True,\n", "")
    (directory / "guanaco.py").write_text(GUANACO)
    (directory / "llm_finetune.py").write_text(IMPORTS + script)
    env = {**os.environ, "PYTHONPATH": str(directory)}
    return subprocess.run(
        [sys.executable, "llm_finetune.py"], cwd=directory, env=env, capture_output=True, text=True, timeout=300
    )


@pytest.mark.skipif(torch.cuda.is_available(), reason="with a GPU, fp16 trains")
def test_the_seed_script_on_a_cpu_stops_at_fp16_with_a_clear_message(workdir, tiny_path):
    done = run_seed(workdir, tiny_path)
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("llm_magics.core.errors.ConfigError: fp16: mixed precision in float16 needs a CUDA GPU")
    assert not (workdir / "output").exists() and not (workdir / ".llm_magics").exists()


def test_the_seed_script_trains_and_predicts(workdir, tiny_path):
    done = run_seed(workdir, tiny_path, fp16=torch.cuda.is_available())
    assert done.returncode == 0, done.stderr[-2000:]
    answer = done.stdout.strip()
    assert answer and "Traceback" not in done.stderr
    checkpoints = sorted((workdir / "output" / "llm-finetune").rglob("adapter_model.safetensors"))
    assert checkpoints, "the run saved no checkpoint to predict with"


def test_queries_are_data_that_execute_runs(db):
    from llm_magics import Collection, Document

    db.execute(Collection("docs").insert_many([Document(text="a", lang="en"), Document(text="b", lang="fr")]))
    query = Collection("docs").find({"lang": "fr"}, ["text"])
    assert query == {"collection": "docs", "filter": {"lang": "fr"}, "projection": {"text": 1}}
    assert [doc["text"] for doc in db.execute(query)] == ["b"]
    assert db.execute(Collection("docs").count_documents({})) == 2
    with pytest.raises(Exception, match="a collection has no method 'drop_everything_now'"):
        db.execute(Collection("docs").drop_everything_now())


def test_a_find_query_selects_the_training_documents(db, tiny_path):
    from llm_magics import LLM, Collection, LLMTrainer

    db["docs"].insert_many([{"text": f"### Human: q{i} ### Assistant: a{i}", "lang": i % 2} for i in range(24)])
    trainer = LLMTrainer(
        select=Collection("docs").find({"lang": 1}), max_steps=2, lora_r=4, per_device_train_batch_size=2
    )
    llm = LLM(identifier="from-query", model_name_or_path=tiny_path, trainer=trainer)
    db.apply(llm)
    run = db.show("run", "from-query")[0]
    assert run["config"]["select"] == {"collection": "docs", "filter": {"lang": 1}}
    assert run["counts"]["train_docs"] + run["counts"]["valid_docs"] == 12
    assert isinstance(llm.predict_one("### Human: q1 ### Assistant: ", max_new_tokens=3), str)
