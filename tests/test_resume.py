"""Resume: a run continued from a checkpoint trains exactly as if it had never stopped."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import qa_docs, small_config

from llm_magics import LLM

pytestmark = pytest.mark.slow


def test_resuming_continues_steps_optimizer_scheduler_and_data_order(db, tiny_path):
    db["d"].insert_many(qa_docs(40))
    config = small_config(max_steps=6, save_steps=2, eval_strategy="no", learning_rate=5e-3)
    llm = LLM("resumable", tiny_path)  # full precision: the continuation is exact, dropout included
    whole = llm.fit(select="d", db=db, configuration=config)
    resumed = llm.fit(select="d", db=db, configuration=config, resume_from_checkpoint=f"{whole.id}:4")
    first, second = whole.metrics.set_index("step"), resumed.metrics.set_index("step")
    assert second.index.tolist() == [5, 6]
    assert second["learning_rate"].tolist() == first.loc[[5, 6], "learning_rate"].tolist()
    assert second["loss"].tolist() == first.loc[[5, 6], "loss"].tolist()
    assert resumed.record["resumed_from"] == f"{whole.id}-4"
    steps = [(c["run"], c["step"]) for c in db.show("checkpoint", "resumable")]
    assert steps == [(whole.id, 2), (whole.id, 4), (whole.id, 6), (resumed.id, 6)]


def test_resume_from_the_magic_latest_or_a_step(shell, db):
    db["docs"].insert_many(qa_docs(30))
    body = "model: {{ base_path }}\ndata: docs\nlora_r: 4\nmax_steps: 6\nsave_steps: 2\n"
    shell.run("%%llm_finetune m -o first\n" + body.replace("max_steps: 6", "max_steps: 4"))
    shell.run("%%llm_finetune m --resume -o latest\n" + body)
    shell.run("%%llm_finetune m --resume 2 -o early\n" + body)
    assert shell.ns["latest"].metrics["step"].tolist() == [5, 6]
    assert shell.ns["early"].metrics["step"].tolist() == [3, 4, 5, 6]
    assert shell.ns["early"].record["resumed_from"].endswith("-2")


def test_a_checkpoint_whose_files_changed_is_not_resumed(db, tiny_path):
    from pathlib import Path

    from llm_magics.core.errors import ModelError

    db["d"].insert_many(qa_docs(20))
    llm = LLM("tampered", tiny_path)
    run = llm.fit(select="d", db=db, configuration=small_config(max_steps=2, eval_strategy="no"))
    weights = Path(run.checkpoints[-1]["path"]) / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-8] + b"\0" * 8)
    with pytest.raises(ModelError, match="file\\(s\\) missing or changed since it was recorded"):
        llm.fit(select="d", db=db, configuration=small_config(max_steps=4), resume_from_checkpoint=True)
    with pytest.raises(ModelError, match="missing or changed"):
        llm.predict("hi")


def test_resume_from_checkpoint_true_or_false_in_the_cell_as_in_python(shell, db):
    """``resume_from_checkpoint: true`` is the Trainer's way to say "the latest"; false starts fresh."""
    db["docs"].insert_many(qa_docs(30))
    body = "model: {{ base_path }}\ndata: docs\nlora_r: 4\nmax_steps: 6\nsave_steps: 2\n"
    shell.run("%%llm_finetune m -o first\n" + body.replace("max_steps: 6", "max_steps: 4"))
    shell.run("%%llm_finetune m -o latest\nresume_from_checkpoint: true\n" + body)
    shell.run("%%llm_finetune m -o fresh\nresume_from_checkpoint: false\n" + body)
    assert shell.ns["latest"].metrics["step"].tolist() == [5, 6]
    assert shell.ns["latest"].record["resumed_from"] == f"{shell.ns['first'].id}-4"
    assert shell.ns["fresh"].metrics["step"].tolist() == [1, 2, 3, 4, 5, 6]
    assert shell.ns["fresh"].record["resumed_from"] is None


def test_the_same_configuration_trains_the_same_whatever_ran_before_in_the_kernel(tiny_path, workdir):
    """The run is seeded from the configuration's ``seed`` before the model is built, so weights
    the base does not have (a classifier's new head) start the same whatever the kernel drew
    before. Before, a kernel that had drawn one random number trained another classifier."""
    import subprocess
    import sys

    script = (
        "import sys, torch\n"
        "sys.path.insert(0, {tests!r})\n"
        "from helpers import small_config\n"
        "from test_classification import reviews\n"
        "from llm_magics import TextClassification, connect\n"
        "db = connect('mongomock://seeded'); db['r'].insert_many(reviews(20))\n"
        "{before}\n"
        "run = TextClassification('seeded', {path!r}).fit(X='text', y='label', select='r', db=db, "
        "configuration=small_config(max_steps=3, eval_strategy='no'))\n"
        "print(run.metrics['loss'].tolist())"
    )
    tests = str(Path(__file__).parent)

    def losses(before: str) -> str:
        code = script.format(tests=tests, path=tiny_path, before=before)
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True)
        return done.stdout.strip().splitlines()[-1]

    assert losses("torch.rand(7)") == losses("pass")
