"""A corpus of cells a user gets wrong: each fails with one short message that names the key or
value, and leaves the database and the file system as they were."""

from __future__ import annotations

import re

import pytest
import torch
from IPython.core.error import UsageError

VALID = "model: {{ base_path }}\ndata: docs\nmax_steps: 2\nlora_r: 4\n"

CASES = [
    ("%%llm_finetune m\n" + VALID + "learning_rat: 1e-4", "unknown key 'learning_rat' — did you mean 'learning_rate'?"),
    ("%%llm_finetune m\n" + VALID.replace("lora_r: 4", "lora_r: eight"), "lora_r: expected an integer, got 'eight'"),
    ("%%llm_finetune m\n" + VALID + "lora_dropout: 1.5", "lora_dropout: must be at least 0 and below 1, got 1.5"),
    ("%%llm_finetune m\n" + VALID.replace("max_steps: 2", "max_steps: 0"), "max_steps: must be a positive number"),
    ("%%llm_finetune m\n" + VALID + "eval_strategy: sometimes", "eval_strategy: expected 'no', 'steps' or 'epoch'"),
    ("%%llm_finetune m\n" + VALID + "bits: 3", "bits: expected 4 or 8 or null, got 3"),
    (
        "%%llm_finetune m\n" + VALID.replace("data: docs", "data: dox"),
        "data: no collection 'dox' — did you mean 'docs'?",
    ),
    ("%%llm_finetune m\n" + VALID + "X: body", "body: missing in 20 of 20 documents of collection 'docs'"),
    (
        "%%llm_finetune m\n" + VALID.replace("{{ base_path }}", "./no-such-model"),
        "model: no directory './no-such-model'",
    ),
    (
        "%%llm_finetune m\n" + VALID + "select: {collection: docs",
        "YAML syntax error at line 7 of the cell, column 1: expected ',' or '}', but got '<stream end>' "
        "(while parsing a flow mapping on line 6)",
    ),
    ("%%llm_finetune m\n- model\n- data", "the cell body must be a YAML mapping"),
    ("%%llm_finetune m\nmodel: !!python/object/apply:os.system ['touch pwned']", "YAML tags that build objects"),
    ("%%llm_finetune m\n" + VALID.replace("{{ base_path }}", "{{ no_such_name }}"), "'no_such_name' is not defined"),
    ("%%llm_finetune m\nmodel: {{ __import__('os').system('touch pwned') }}", "interpolation takes one variable name"),
    ("%%llm_finetune m --epochs 3\n" + VALID, "unrecognized arguments: --epochs 3"),
    ("%%llm_finetune m --dry-run --dry-run\n" + VALID, "--dry-run is given twice"),
    ("%%llm_finetune ../escape\n" + VALID, "model name '../escape': use letters, digits"),
    ("%%llm_finetune a/b\n" + VALID, "model name 'a/b': use letters, digits"),
    (
        "%%llm_finetune m\n" + VALID.replace("data: docs", "select: {collection: docs, filter: {lang: xx}}"),
        "collection 'docs' with filter {'lang': 'xx'} has no documents that match",
    ),
    ("%%llm_finetune m\n" + VALID + "lora_r: 8", "line 6 of the cell: 'lora_r' is given twice"),
    ("%%llm_finetune m\n" + VALID + "prompt: question", "prompt and response: give both field names"),
    (
        "%%llm_finetune m\n" + VALID + "lora_target_modules: [q_prj]",
        "lora_target_modules: the model has no module 'q_prj' — did you mean 'q_proj'?",
    ),
    ("%%llm_finetune m --dry\n" + VALID, "unrecognized arguments: --dry — did you mean '--dry-run'?"),
    ("%%llm_finetune m -o 'my run'\n" + VALID, "-o 'my run': give a Python variable name"),
    ("%%llm_finetune m\n" + VALID + "select: docs", "data and select: give one"),
    ("%%llm_finetune m\n" + VALID + "bits: 4\nuse_lora: false", "bits: a quantized model trains only through LoRA"),
    ("%llm_finetune m", "the configuration is missing: put YAML lines such as 'model: "),
    (
        "%llm_export m",
        "the following arguments are required: directory — usage: %llm_export [--gguf [QUANT]] target directory",
    ),
    ("%llm_finetune m --config missing.yaml", "--config: no file 'missing.yaml'"),
    ("%%llm_finetune m\n" + VALID.replace("data: docs", "data: empty"), "collection 'empty' has no documents"),
    ("%%llm_finetune m\n" + VALID + "messages: text", "text: must be a list of {role, content} messages"),
    (
        "%%llm_finetune m\n" + VALID + "per_device_train_batch_size: 0",
        "per_device_train_batch_size: must be at least 1",
    ),
    ("%%llm_finetune m --resume\n" + VALID, "no model named 'm'"),
    pytest.param(
        "%%llm_finetune m\n" + VALID + "fp16: true",
        "fp16: mixed precision in float16 needs a CUDA GPU",
        marks=pytest.mark.skipif(torch.cuda.is_available(), reason="fp16 works with a GPU"),
    ),
]


def snapshot(db, workdir):
    user = {name: sorted(map(str, db[name].find())) for name in db.list_collection_names()}
    return user, sorted(str(p.relative_to(workdir)) for p in workdir.rglob("*"))


@pytest.mark.parametrize(("cell", "wording"), CASES)
def test_a_bad_cell_fails_short_and_writes_nothing(shell, db, workdir, cell, wording):
    db["docs"].insert_many([{"text": f"doc {i}"} for i in range(20)])
    db.create_collection("empty")
    before = snapshot(db, workdir)
    with pytest.raises(UsageError, match=re.escape(wording)) as raised:
        shell.run(cell)
    assert type(raised.value) is UsageError  # shown by IPython as one line, no traceback
    assert "\n" not in str(raised.value).strip() or str(raised.value).startswith(tuple("0123456789"))
    assert snapshot(db, workdir) == before
    assert not (workdir / "pwned").exists()


def test_a_hub_model_without_the_hub_is_one_line_in_seconds(shell, monkeypatch):
    """No network: one line within seconds, not transformers' minute of retries (issue #18)."""
    import time

    from IPython.core.error import UsageError

    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens there
    started = time.monotonic()
    with pytest.raises(
        UsageError, match=r"^model 'some-org/some-model': not a local directory, not in the Hugging Face"
    ):
        shell.run("%%llm_finetune m\nmodel: some-org/some-model\ndata: docs")
    assert time.monotonic() - started < 10
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(UsageError, match="HF_HUB_OFFLINE is set"):
        shell.run("%%llm_finetune m\nmodel: some-org/some-model\ndata: docs")


@pytest.mark.parametrize(
    "line",
    [
        '%llm_predict m "x',
        "%llm_predict m 'x",
        '%llm_db "mongomock://x',
        '%llm_runs "m',
        '%llm_stop "abc',
        '%llm_attach "abc',
        '%llm_logs "abc',
        '%llm_export m "out',
        '%llm_checkpoints "m',
        '%%llm_finetune m "x\nmodel: m\ndata: docs',
    ],
)
def test_an_unclosed_quote_on_a_magic_line_is_one_line(shell, line):
    with pytest.raises(UsageError, match="no closing quotation in the line: close the quote") as raised:
        shell.run(line)
    assert type(raised.value) is UsageError


def test_a_config_files_error_names_the_file_and_its_line(shell, workdir):
    (workdir / "run.yaml").write_text("data: docs\nlora_r: 4\nlora_r: 8\n")
    with pytest.raises(UsageError, match=r"^line 3 of run\.yaml: 'lora_r' is given twice$"):
        shell.run("%llm_finetune m --config run.yaml")
