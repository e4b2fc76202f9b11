"""Training methods (SPEC §11): DPO, KTO, ORPO and SimPO on preferences, through ``llm.fit`` on the
tiny model, and the configuration's checks of each method's settings and fields."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import FACTS, kto_docs, preference_docs

from llm_magics import LLM, LLMTrainingConfiguration
from llm_magics.core.errors import ConfigError, DataError

TEMPLATE = "Q: {prompt}\nA:"
PAIRS = {"data": "prefs", "prompt": "q", "chosen": "good", "rejected": "bad"}
# ORPO's beta weighs its odds-ratio term against the chosen answer's likelihood, which also lifts
# the rejected answers that are another fact's chosen one ("hot", "cold"): a larger beta, longer
ORPO = {"beta": 1.0, "max_steps": 80, "save_steps": 40}


def preferred(base_path: str, adapter: str | None) -> list[float]:
    """Per fact: log p(chosen) - log p(rejected) of the answer tokens, after the prompt as trained."""
    import torch
    from transformers import AutoModelForCausalLM

    from llm_magics.models.loader import load_tokenizer

    tokenizer = load_tokenizer(base_path)
    model = AutoModelForCausalLM.from_pretrained(base_path)
    if adapter is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, adapter)
    model.eval()

    def logp(prompt: str, answer: str) -> float:
        head = tokenizer(TEMPLATE.replace("{prompt}", prompt), add_special_tokens=False)["input_ids"]
        tail = tokenizer(answer, add_special_tokens=False)["input_ids"]
        ids = torch.tensor([head + tail])
        with torch.no_grad():
            logits = model(ids).logits[0, :-1].log_softmax(-1)
        picked = logits[len(head) - 1 :].gather(1, ids[0, len(head) :, None])
        return float(picked.sum())

    return [logp(q, good) - logp(q, bad) for q, good, bad in FACTS]


def pairs_config(method: str, **changes):
    values = {
        "method": method,
        **PAIRS,
        "prompt_template": TEMPLATE,
        "max_steps": 40,
        "per_device_train_batch_size": 8,
        "learning_rate": 5e-3,
        "lora_r": 8,
        "max_length": 64,
        "save_steps": 20,
        "logging_steps": 5,
    }
    return LLMTrainingConfiguration(**{**values, **changes})


@pytest.mark.parametrize("method", ["dpo", "orpo", "simpo"])
def test_a_preference_method_learns_to_prefer_the_chosen_answer(db, tiny_path, method):
    db["prefs"].insert_many(preference_docs())
    before = preferred(tiny_path, None)
    llm = LLM(f"{method}-model", tiny_path)
    # ORPO's beta weighs its odds-ratio term against the answer's likelihood: 1 lets it show in 40 steps
    run = llm.fit(configuration=pairs_config(method, **(ORPO if method == "orpo" else {})), db=db)
    assert run.status == "completed", run.error
    metrics = run.metrics
    margins, accuracies = metrics["rewards/margins"].tolist(), metrics["rewards/accuracies"].tolist()
    assert margins[-1] > margins[0] + 0.02, margins
    assert min(accuracies[-2:]) > accuracies[0], accuracies
    after = preferred(tiny_path, run.checkpoints[-1]["path"])
    assert all(a > 0 for a in after), after  # every fact: the chosen answer is now the likelier
    assert sum(after) > sum(before)
    # a checkpoint of any method predicts like one of SFT, in the prompt format it trained on
    assert isinstance(llm.predict("capital of France?", max_new_tokens=4), str)
    assert run.record["config"]["method"] == method


def test_kto_learns_from_desirable_and_undesirable_answers(db, tiny_path):
    db["kto"].insert_many(kto_docs())
    before = preferred(tiny_path, None)
    config = LLMTrainingConfiguration(
        method="kto",
        data="kto",
        prompt="q",
        completion="answer",
        label="ok",
        prompt_template=TEMPLATE,
        max_steps=30,
        per_device_train_batch_size=8,
        learning_rate=5e-3,
        lora_r=8,
        max_length=64,
        logging_steps=5,
        save_steps=30,
    )
    run = LLM("kto-model", tiny_path).fit(configuration=config, db=db)
    assert run.status == "completed", run.error
    margins = run.metrics["rewards/margins"].dropna().tolist()
    assert margins[-1] > margins[0] + 0.2, margins
    # KTO judges each answer alone, against a reference point: the gap between the desirable and
    # the undesirable answers widens (its rewards), without every pair being ranked yet
    assert sum(preferred(tiny_path, run.checkpoints[-1]["path"])) > sum(before)


def test_a_preference_run_chains_after_sft_from_its_checkpoint(db, tiny_path):
    """SFT, then DPO from the SFT checkpoint (adapter_id: checkpoint://NAME/STEP)."""
    db["sft"].insert_many([{"q": q, "a": good} for _ in range(4) for q, good, _ in FACTS])
    db["prefs"].insert_many(preference_docs(4))
    sft = LLMTrainingConfiguration(
        data="sft", prompt="q", response="a", prompt_template=TEMPLATE, max_steps=10, save_steps=10, lora_r=8
    )
    LLM("chain-sft", tiny_path).fit(configuration=sft, db=db)
    dpo = pairs_config("dpo", adapter_id="checkpoint://chain-sft/10", max_steps=10, save_steps=10)
    run = LLM("chain-dpo", tiny_path).fit(configuration=dpo, db=db)
    assert run.status == "completed", run.error
    assert run.record["base"]["adapter_id"] == "checkpoint://chain-sft/10"


# --- the configuration's checks: nothing is trained or written --------------------------------


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"method": "sft", "beta": 0.2}, "beta: a setting of dpo, kto, orpo, simpo, grpo, not of method sft"),
        ({"method": "dpo", "betta": 0.2}, "did you mean 'beta'"),
        ({"method": "grpo", "num_generation": 4}, "did you mean 'num_generations'"),
        ({"method": "dpo", "num_generations": 4}, "num_generations: a setting of grpo, not of method dpo"),
        ({"method": "dpo", "packing": True}, "packing: a setting of sft, not of method dpo"),
        ({"method": "dpo", "beta": "high"}, "beta: expected a number, got 'high'"),
        ({"method": "dpo", "chosen": None}, "method dpo: name the document fields of chosen"),
        ({"method": "kto", "chosen": None, "rejected": None}, "method kto: name the document fields of completion"),
        ({"method": "dpo", "reward_funcs": [len]}, "reward_funcs: a setting of grpo, not of method dpo"),
        ({"method": "dpoo"}, "method: expected 'sft', 'dpo'"),
    ],
)
def test_a_method_setting_is_checked_against_that_method(changes, message):
    values = {**PAIRS, **changes}
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        LLMTrainingConfiguration(**{k: v for k, v in values.items() if v is not None})


def test_a_method_setting_reaches_its_trainer_and_sft_defaults_give_way():
    config = LLMTrainingConfiguration(method="simpo", **PAIRS, beta=2.0, simpo_gamma=0.7, output_dir="out")
    args = config.training_arguments(output_dir="out")
    assert type(args).__name__ == "CPOConfig"
    assert (args.loss_type, args.cpo_alpha, args.beta, args.simpo_gamma) == ("simpo", 0.0, 2.0, 0.7)
    assert args.learning_rate == 2e-4 and args.max_length == 512  # ours, not TRL's
    dpo = LLMTrainingConfiguration(method="dpo", **PAIRS).training_arguments(output_dir="out")
    assert dpo.loss_type == ["sigmoid"]  # DPO's own, not SFT's "nll"
    assert LLMTrainingConfiguration.from_yaml(
        "method: dpo\ndata: d\nprompt: p\nchosen: c\nrejected: r\nbeta: 0.3"
    ).method_args == {"beta": 0.3}


def test_a_document_without_a_named_field_is_named_before_anything_is_written(db, tiny_path):
    docs = preference_docs(2)
    del docs[5]["bad"]
    db["prefs"].insert_many(docs)
    with pytest.raises(DataError, match=r"bad: missing in 1 of 12 documents .*first: document"):
        LLM("dpo-missing", tiny_path).fit(configuration=pairs_config("dpo"), db=db)
    db["prefs"].update_one({"bad": {"$exists": False}}, {"$set": {"bad": 3}})
    with pytest.raises(DataError, match=r"bad: must be text, got int \(document "):
        LLM("dpo-missing", tiny_path).fit(configuration=pairs_config("dpo"), db=db)
    assert not db.store.list_runs() and not db.store.model_names()


@pytest.mark.slow
def test_dpo_and_kto_cells_train_in_a_real_kernel(workdir):
    """The magics in a real kernel: a DPO and a KTO cell, their summaries charting the margin."""
    from test_notebook_kernel import executed

    body = (
        "model: {{ base_path }}\nlearning_rate: 5.0e-3\nmax_steps: 30\nsave_steps: 30\nper_device_train_batch_size: 8"
    )
    outputs = executed(
        [
            "%load_ext llm_magics",
            f"import sys\nsys.path.insert(0, {str(Path(__file__).parent)!r})\n"
            "from helpers import kto_docs, preference_docs\nfrom llm_magics import tiny_model\n"
            "base_path = str(tiny_model('tiny'))\ndb = %llm_db mongomock://kernel-methods\n"
            "db['prefs'].insert_many(preference_docs())\ndb['kto'].insert_many(kto_docs());",
            f"%%llm_finetune pairs -o dpo\nmethod: dpo\ndata: prefs\nprompt: q\nchosen: good\nrejected: bad\n{body}",
            f"%%llm_finetune labels -o kto\nmethod: kto\ndata: kto\nprompt: q\ncompletion: answer\nlabel: ok\n{body}",
            "for run in (dpo, kto):\n    m = run.metrics['rewards/margins']\n"
            "    print(run.status, m.iloc[-1] > m.iloc[0] + 0.1)",
        ],
        workdir,
    )
    assert not any(o.output_type == "error" for cell in outputs for o in cell), outputs
    for cell in outputs[2:4]:
        page = cell[0]["data"]["text/html"]
        assert "llm-summary" in page and 'data-series="rewards/margins"' in page
    assert outputs[4][0]["text"] == "completed True\ncompleted True\n"


# --- what every method shares with SFT: QLoRA, save_total_limit, --resume, early stopping ----


def _method_config(method: str, **changes):
    """A short run of each kind of method on its own collection (filled by ``_fill``)."""
    if method == "grpo":
        from test_rewards import grpo_config

        return grpo_config(**changes)
    if method == "kto":
        kto = {"data": "kto", "completion": "answer", "label": "ok", "chosen": None, "rejected": None}
        return pairs_config("kto", **kto, **changes)
    return pairs_config(method, **changes)


def _fill(db, method: str) -> None:
    if method == "grpo":
        from test_rewards import PROMPTS

        db["prompts"].insert_many(PROMPTS)
    elif method == "kto":
        db["kto"].insert_many(kto_docs(2))
    else:
        db["prefs"].insert_many(preference_docs(2))


@pytest.mark.slow
@pytest.mark.parametrize("method", ["dpo", "kto", "grpo"])
def test_a_method_trains_quantized_keeps_its_newest_checkpoints_and_resumes(db, tiny_path, method):
    _fill(db, method)
    short = {"bits": 4, "max_steps": 4, "save_steps": 1, "save_total_limit": 2, "logging_steps": 1}
    llm = LLM(f"{method}-4bit", tiny_path)
    run = llm.fit(configuration=_method_config(method, **short), db=db)
    assert run.status == "completed", run.error
    assert run.record["config"]["bits"] == 4
    # the newest two are kept, and (a reward method's) the best by mean reward
    kept = {3, 4} | ({db.store.checkpoint(f"{method}-4bit", "best")["step"]} if method == "grpo" else set())
    assert [c["step"] for c in db.show("checkpoint", f"{method}-4bit")] == sorted(kept)
    directories = sorted(p.name for p in Path(run.record["output_dir"]).glob("checkpoint-*"))
    assert directories == [f"checkpoint-{step}" for step in sorted(kept)]
    longer = _method_config(method, **{**short, "max_steps": 6})
    resumed = llm.fit(configuration=longer, db=db, resume_from_checkpoint=True)
    assert resumed.status == "completed", resumed.error
    assert resumed.metrics["step"].tolist() == [5, 6]
    assert resumed.record["resumed_from"] == f"{run.id}-4"
    assert isinstance(llm.predict("capital of France?", max_new_tokens=4), str)


@pytest.mark.slow
def test_early_stopping_ends_a_dpo_run_whose_evaluation_stops_improving(db, tiny_path):
    docs = preference_docs(4)
    for i, doc in enumerate(docs):
        doc["_fold"] = "valid" if i % 4 == 0 else "train"
    db["prefs"].insert_many(docs)
    # a learning rate this large overshoots: the held-out DPO loss stops improving within a few evaluations
    config = pairs_config(
        "dpo",
        max_steps=200,
        save_steps=2,
        eval_steps=2,
        eval_strategy="steps",
        learning_rate=0.5,
        early_stopping_patience=2,
    )
    run = LLM("dpo-early", tiny_path).fit(configuration=config, db=db)
    record = run.record
    assert run.status == "completed" and record["step"] < 200, record.get("reason")
    assert record["reason"].startswith("no improvement in eval_loss for 2 evaluations; best at step")
    best = db.store.checkpoint("dpo-early", "best")
    assert best["metrics"]["eval_loss"] == min(c["metrics"]["eval_loss"] for c in run.checkpoints)
    assert "eval_rewards/margins" in run.metrics.columns
