"""Early stopping (SPEC §10): transformers' own callback ends a run whose evaluation metric stops
improving; the run is completed, says why, and @best names its best checkpoint."""

from __future__ import annotations

import re

import pytest
from helpers import qa_docs, small_config

from llm_magics import LLM
from llm_magics.core.errors import ConfigError

pytestmark = pytest.mark.slow


def test_a_run_whose_eval_loss_stops_improving_ends_early_with_the_reason(db, tiny_path):
    from llm_magics.widgets.progress import summary_html

    db["d"].insert_many(qa_docs(40))
    # a learning rate this large stops improving the evaluation loss within a few evaluations
    config = small_config(max_steps=200, save_steps=2, eval_steps=2, learning_rate=0.5, early_stopping_patience=2)
    run = LLM("early", tiny_path).fit(select="d", db=db, configuration=config)
    record = run.record
    assert run.status == "completed" and record["step"] < 200
    found = re.fullmatch(r"no improvement in eval_loss for 2 evaluations; best at step (\d+)", record["reason"])
    assert found, record["reason"]
    best = db.store.checkpoint("early", "best")
    assert best["step"] == int(found.group(1)) and best["run"] == run.id
    later = [c["metrics"]["eval_loss"] for c in run.checkpoints if c["step"] > best["step"]]
    assert len(later) == 2 and min(later) >= best["metrics"]["eval_loss"]  # two evaluations without improvement
    assert record["reason"] in summary_html(run.stored_state())


def test_the_cell_takes_early_stopping_and_the_view_says_why(shell, db):
    db["docs"].insert_many(qa_docs(40))
    body = (
        "model: {{ base_path }}\ndata: docs\nlora_r: 4\nmax_length: 64\nper_device_train_batch_size: 2\n"
        "max_steps: 200\neval_strategy: steps\neval_steps: 2\nsave_steps: 2\nlearning_rate: 0.5\n"
        "early_stopping_patience: 2\nearly_stopping_threshold: 0.001\n"
    )
    shell.run("%%llm_finetune early -o run\n" + body)
    run = shell.ns["run"]
    assert run.status == "completed" and run.record["step"] < 200
    assert "no improvement in eval_loss" in run.state.reason


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"eval_strategy": "no"}, "early_stopping_patience: needs evaluation — set eval_strategy: steps"),
        ({"save_strategy": "epoch"}, "early_stopping_patience: save where it evaluates — set save_strategy: steps"),
        (
            {"save_steps": 4, "eval_steps": 2},
            "save at every evaluation, so that @best names a checkpoint — save_steps: 2",
        ),
        ({"max_steps": 6, "eval_steps": 2, "save_steps": 2, "early_stopping_patience": 3}, "3 can never stop this run"),
        ({"early_stopping_patience": 0}, "early_stopping_patience: must be at least 1, got 0"),
        ({"early_stopping_threshold": -0.1}, "early_stopping_threshold: must be at least 0"),
    ],
)
def test_early_stopping_that_could_never_work_is_a_short_error(changes, message):
    values = {"max_steps": 100, "save_steps": 2, "eval_steps": 2, "early_stopping_patience": 2, **changes}
    with pytest.raises(ConfigError, match=re.escape(message)):
        small_config(**values)
