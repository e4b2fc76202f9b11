"""lm-evaluation-harness on stored checkpoints (``%llm_eval NAME --harness TASKS``): a task of the
user's own over a local JSONL file (the harness's own tasks fetch their data from the Hub, which
this machine cannot reach), its scores recorded like eval_generate's and reused."""

from __future__ import annotations

import json

import pytest
from helpers import FACTS

from llm_magics.core.errors import ConfigError

pytest.importorskip("lm_eval")
pytestmark = pytest.mark.slow

TASK = """task: facts_choice
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: multiple_choice
doc_to_text: "Q: {{{{q}}}}\\nA:"
doc_to_choice: "{{{{choices}}}}"
doc_to_target: "{{{{answer}}}}"
metric_list:
  - metric: acc
"""


@pytest.fixture
def tasks_dir(tmp_path):
    data = tmp_path / "facts.jsonl"
    data.write_text("\n".join(json.dumps({"q": q, "choices": [good, bad], "answer": 0}) for q, good, bad in FACTS))
    directory = tmp_path / "tasks"
    directory.mkdir()
    (directory / "facts_choice.yaml").write_text(TASK.format(data=data))
    return str(directory)


def test_a_local_harness_task_scores_each_checkpoint_and_is_recorded_and_reused(shell, db, tasks_dir, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    db["facts"].insert_many([{"q": q, "a": good} for _ in range(8) for q, good, _ in FACTS])
    shell.run(
        "%%llm_finetune judged -o run\nmodel: {{ base_path }}\ndata: facts\nprompt: q\nresponse: a\n"
        "prompt_template: 'Q: {prompt}\\nA:'\nmax_steps: 40\nsave_steps: 20\nlearning_rate: 1.0e-2\nlora_r: 8\n"
        "per_device_train_batch_size: 8\nmax_length: 64"
    )
    shell.run(f"scores = %llm_eval judged --all --harness facts_choice --tasks-dir {tasks_dir}")
    results = shell.ns["scores"].results
    assert [r["step"] for r in results] == [20, 40] and not any(r["reused"] for r in results)
    first, last = (r["scores"]["facts_choice/acc"] for r in results)
    assert 0.5 < last >= first  # trained on the right answers: it prefers most of them
    record = db.store.list_checkpoints("judged")[1]
    assert record["metrics"]["eval_facts_choice/acc"] == last
    examples = db.store.checkpoint_evaluations(record["_id"])
    assert [e["reference"].strip() for e in examples] == [good.strip() for _, good, _ in FACTS]
    right = [e["prediction"] == e["reference"] for e in examples]
    assert [e["scores"]["facts_choice/acc"] for e in examples] == [float(r) for r in right]
    assert sum(right) / len(right) == last
    shell.run(f"again = %llm_eval judged@40 --harness facts_choice --tasks-dir {tasks_dir}")
    assert shell.ns["again"].results[0]["reused"]


def test_an_unknown_task_is_named_before_any_model_loads(db, tasks_dir):
    from llm_magics.eval.harness import harness_tasks

    with pytest.raises(ConfigError, match=r"no task 'facts_choise' in .* — did you mean 'facts_choice'"):
        harness_tasks(["facts_choise"], tasks_dir)
