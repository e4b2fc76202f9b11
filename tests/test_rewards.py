"""GRPO with reward functions written in Python (SPEC §11): it learns, its functions are checked
before anything is written, travel by value to a detached process, and a record's copy of them
is text that never runs."""

from __future__ import annotations

import re
import threading
from pathlib import Path

import pytest

from llm_magics import LLM, LLMTrainingConfiguration
from llm_magics.core.errors import ConfigError, RunError

PROMPTS = [{"q": f"say a {i}", "answer": "a"} for i in range(32)]


def share_of_a(completions, **kwargs):
    """The share of 'a' in each completion: a reward a random model starts near 0 on."""
    return [c.count("a") / max(1, len(c)) for c in completions]


def names_the_answer(completions, answer, **kwargs):
    """1 when the completion holds the document's own ``answer`` field."""
    return [1.0 if a in c else 0.0 for c, a in zip(completions, answer, strict=True)]


def grpo_config(**changes):
    # On the random tiny model no logit can exceed about 1.3 (its output layer's weights are small
    # and the final norm fixes the hidden state's length), so an adapter on the layers below cannot
    # make 'a' likely: the output layer trains in full beside the adapter (lora_modules_to_save).
    values = {
        "method": "grpo",
        "data": "prompts",
        "prompt": "q",
        "reward_funcs": [share_of_a, names_the_answer],
        "num_generations": 4,
        "max_completion_length": 12,
        "per_device_train_batch_size": 8,
        "learning_rate": 5e-3,
        "lora_r": 8,
        "lora_modules_to_save": ["lm_head"],
        "max_steps": 60,
        "save_steps": 20,
        "logging_steps": 5,
    }
    return LLMTrainingConfiguration(**{**values, **changes})


def test_grpo_with_lora_learns_from_two_reward_functions_and_records_their_completions(db, tiny_path):
    db["prompts"].insert_many(PROMPTS)
    llm = LLM("grpo-model", tiny_path)
    run = llm.fit(configuration=grpo_config(), db=db)
    assert run.status == "completed", run.error
    metrics = run.metrics
    reward = metrics["reward"].tolist()
    assert reward[-1] > reward[0] + 1.0 and metrics["rewards/share_of_a/mean"].iloc[-1] > 0.5, reward
    assert {"rewards/names_the_answer/mean", "completions/mean_length", "entropy"} <= set(metrics.columns)
    completions = run.completions()
    assert {"step", "prompt", "completion", "share_of_a", "names_the_answer"} <= set(completions.columns)
    assert len(completions) == 12 * 8  # 8 kept at each of the 12 logging steps
    last = completions[completions["step"] == 60]
    assert last["share_of_a"].mean() > 0.5 and last["completion"].str.count("a").sum() > 20
    assert [c["step"] for c in run.checkpoints] == [20, 40, 60]
    # no evaluation: @best is the checkpoint with the highest mean reward
    best = db.store.checkpoint("grpo-model", "best")
    assert best["metrics"]["reward"] == max(c["metrics"]["reward"] for c in run.checkpoints)
    record = run.record
    assert [r["name"] for r in record["rewards"]] == ["share_of_a", "names_the_answer"]
    assert 'c.count("a")' in record["rewards"][0]["source"]
    assert record["config"]["reward_funcs"] == ["share_of_a", "names_the_answer"]
    assert "a" in llm.predict("say a 3", checkpoint="best", max_new_tokens=8)


def _nothing_written(db) -> None:
    assert not db.store.list_runs() and not db.store.model_names()
    assert not any(Path(".llm_magics").glob("artifacts/*/*"))


def test_a_reward_function_that_raises_is_refused_by_name_before_anything_is_written(db, tiny_path):
    db["prompts"].insert_many(PROMPTS)

    def broken(completions, **kwargs):
        raise KeyError("score")

    with pytest.raises(ConfigError, match=r"reward function 'broken' raised KeyError: 'score' \(tried on a completion"):
        LLM("refused", tiny_path).fit(configuration=grpo_config(reward_funcs=[share_of_a, broken]), db=db)
    _nothing_written(db)


@pytest.mark.parametrize(
    ("function", "message"),
    [
        (lambda completions, **kw: [1.0, 2.0], r"returned \[1.0, 2.0\]; it must return a list with one number"),
        (lambda completions, **kw: 0.5, "returned 0.5; it must return a list"),
        (lambda completions, **kw: ["high"], r"returned \['high'\]: each value must be a finite number or None"),
        (lambda completions: [1.0], "unexpected keyword argument .* a reward function takes \\*\\*kwargs"),
    ],
)
def test_a_reward_function_that_answers_wrong_is_refused_with_what_it_returned(db, tiny_path, function, message):
    db["prompts"].insert_many(PROMPTS)
    with pytest.raises(ConfigError, match=message):
        LLM("refused", tiny_path).fit(configuration=grpo_config(reward_funcs=[function]), db=db)
    _nothing_written(db)


def test_grpo_needs_a_reward_function_and_a_stored_name_is_not_one(db, tiny_path):
    db["prompts"].insert_many(PROMPTS)
    with pytest.raises(ConfigError, match="reward_funcs: grpo learns from reward functions"):
        LLM("refused", tiny_path).fit(configuration=grpo_config(reward_funcs=None), db=db)
    with pytest.raises(ConfigError, match=r"'share_of_a' is a name, not a function — pass the function"):
        LLM("refused", tiny_path).fit(configuration=grpo_config(reward_funcs=["share_of_a"]), db=db)
    with pytest.raises(ConfigError, match=r"cannot import 'nowhere\.at_all:score'"):
        LLM("refused", tiny_path).fit(configuration=grpo_config(reward_funcs=["nowhere.at_all:score"]), db=db)
    _nothing_written(db)


def test_a_function_that_cannot_travel_to_a_detached_process_is_refused_before_it_starts(tiny_path):
    from llm_magics import connect

    db = connect()  # the embedded store, which a detached process can open
    db["prompts"].insert_many(PROMPTS)
    lock = threading.Lock()

    def guarded(completions, **kwargs):
        with lock:
            return [1.0 for _ in completions]

    with pytest.raises(ConfigError, match=r"reward function 'guarded' cannot travel to the training process: .*lock"):
        LLM("refused", tiny_path).fit(configuration=grpo_config(reward_funcs=[guarded]), db=db, detach=True)
    _nothing_written(db)


def test_a_function_that_raises_while_training_fails_the_run_by_name_and_keeps_its_checkpoints(db, tiny_path):
    db["prompts"].insert_many(PROMPTS)

    def tires(completions, trainer_state=None, **kwargs):
        if trainer_state is not None and trainer_state.global_step >= 5:
            raise ValueError("no more")
        return [0.0 for _ in completions]

    config = grpo_config(reward_funcs=[tires], max_steps=20, save_steps=2)
    with pytest.raises(RunError, match="reward function 'tires' raised ValueError: no more"):
        LLM("tires", tiny_path).fit(configuration=config, db=db)
    (record,) = db.store.list_runs("tires")
    assert record["status"] == "failed" and "reward function 'tires' raised ValueError: no more" in record["error"]
    assert [c["step"] for c in db.store.list_checkpoints("tires")] == [2, 4]


def test_a_tampered_reward_source_in_a_record_never_runs(db, tiny_path, tmp_path):
    """A record keeps each function's source as text: edit it into code that writes a file, and
    showing the run, resuming it (with the functions given again) and reading it run nothing."""
    from llm_magics.widgets.progress import summary_html

    db["prompts"].insert_many(PROMPTS)
    llm = LLM("tampered", tiny_path)
    run = llm.fit(configuration=grpo_config(max_steps=4, save_steps=2), db=db)
    marker = tmp_path / "ran"
    planted = f"open({str(marker)!r}, 'w').write('x')"
    db.store.runs.update_one(
        {"_id": run.id},
        {
            "$set": {
                "rewards": [{"name": "share_of_a", "source": planted}, {"name": "names_the_answer", "source": planted}]
            }
        },
    )
    summary_html(db.run(run.id).stored_state())  # the run shown from its record
    resumed = llm.fit(configuration=grpo_config(max_steps=6, save_steps=2), db=db, resume_from_checkpoint=True)
    assert resumed.status == "completed", resumed.error
    assert not marker.exists()
    with pytest.raises(ConfigError, match=r"resume: run .* trained with reward functions share_of_a, names_the_answer"):
        llm.fit(configuration=grpo_config(reward_funcs=[share_of_a], max_steps=8), db=db, resume_from_checkpoint=True)
    assert not marker.exists()


@pytest.mark.slow
def test_a_detached_grpo_run_gets_its_notebook_functions_by_value(tiny_path):
    from llm_magics import connect

    db_file = connect()  # the embedded store in the test's directory: the process records there too

    def share_of_b(completions, **kwargs):  # a local function: importable by no name, so sent by value
        return [c.count("b") / max(1, len(c)) for c in completions]

    db_file["prompts"].insert_many(PROMPTS)
    config = grpo_config(reward_funcs=[share_of_b], max_steps=60, save_steps=30)
    run = LLM("grpo-detached", tiny_path).fit(configuration=config, db=db_file, detach=True)
    assert run.record["backend"] == "process"
    assert run.wait(300).status == "completed", run.error
    reward = run.metrics["rewards/share_of_b/mean"].tolist()
    assert reward[-1] > reward[0] + 0.3, reward
    assert not run.completions().empty


def test_the_views_show_each_reward_curve_and_the_newest_completions(db, tiny_path):
    from llm_magics.widgets.progress import summary_html

    db["prompts"].insert_many(PROMPTS)
    run = LLM("grpo-views", tiny_path).fit(configuration=grpo_config(max_steps=10, save_steps=10), db=db)
    for state in (run.state, db.run(run.id).stored_state()):  # live, and rebuilt from the store
        page = summary_html(state)
        for series in ("reward", "rewards/share_of_a/mean", "rewards/names_the_answer/mean", "entropy"):
            assert f'data-series="{series}"' in page
        assert 'class="llm-completions"' in page and "Sampled completions</b> at step 10" in page
        assert page.count("<code>say a") >= 8  # the newest step's completions, with their prompts


GRPO_CELL = """%%llm_finetune {name} {flags} -o run
method: grpo
model: {{{{ base_path }}}}
data: prompts
prompt: q
reward_funcs: [{{{{ share_of_a }}}}, {{{{ names_the_answer }}}}]
num_generations: 4
max_completion_length: 12
per_device_train_batch_size: 8
learning_rate: 0.005
lora_modules_to_save: [lm_head]
max_steps: {steps}
save_steps: 20
logging_steps: 5"""
NOTEBOOK_FUNCTIONS = """def share_of_a(completions, **kwargs):
    return [c.count("a") / max(1, len(c)) for c in completions]

def names_the_answer(completions, answer, **kwargs):
    return [1.0 if a in c else 0.0 for c, a in zip(completions, answer)]"""


def test_the_dry_run_shows_the_prompt_a_completion_and_each_functions_value(shell, db):
    db["prompts"].insert_many(PROMPTS)
    shell.run(NOTEBOOK_FUNCTIONS)
    report, _ = shell.run(GRPO_CELL.format(name="dry", flags="--dry-run", steps=4).replace(" -o run", ""))
    text = repr(report)
    assert "method: grpo" in text and "reward functions: share_of_a, names_the_answer" in text
    assert "prompt as rendered · 7 tokens" in text and "say a 0" in text
    assert re.search(r"a completion of the starting model · rewards: share_of_a [\d.e-]+ · names_the_answer 0", text)
    assert not db.store.list_runs()


@pytest.mark.slow
def test_functions_written_in_notebook_cells_train_a_detached_run_that_a_new_kernel_attaches(workdir):
    """Kernel A defines the functions in cells and starts a detached GRPO run; it shuts down.
    Kernel B attaches and sees the reward curves rise and the sampled completions."""
    from test_notebook_kernel import executed

    started = executed(
        [
            "%load_ext llm_magics",
            "from llm_magics import tiny_model\nbase_path = str(tiny_model('tiny'))\ndb = %llm_db\n"
            "db['prompts'].insert_many([{'q': f'say a {i}', 'answer': 'a'} for i in range(32)]);",
            NOTEBOOK_FUNCTIONS,
            GRPO_CELL.format(name="cells", flags="--detach", steps=60),
            "print(run.id)",
        ],
        workdir,
    )
    assert not any(o.output_type == "error" for cell in started for o in cell), started
    run_id = started[4][0]["text"].strip()
    attached = executed(
        [
            "%load_ext llm_magics",
            f"%llm_attach {run_id}",
            f"db = %llm_db\nrun = db.run('{run_id}').wait(300)\nm = run.metrics\n"
            "print(run.status, round(m['reward'].iloc[0], 2), round(m['reward'].iloc[-1], 2), len(run.completions()))",
        ],
        workdir,
    )
    # the live view, replaced by the summary when the run ended; its note for a kernel gone, left empty
    (view,) = [o for o in attached[1] if o.output_type == "display_data" and o["data"]]
    page = view["data"]["text/html"]
    assert 'data-series="rewards/share_of_a/mean"' in page and 'class="llm-completions"' in page
    status, first, last, sampled = attached[2][0]["text"].split()
    assert status == "completed" and float(last) > float(first) + 1.0 and int(sampled) == 96
