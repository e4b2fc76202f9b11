"""End to end on the tiny model: fit on a collection, checkpoints in the database, predict."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from helpers import Shell, qa_docs, small_config, snippet_config
from IPython.core.error import UsageError
from safetensors.torch import load_file

from llm_magics import LLM, LLMTrainer, connect
from llm_magics.core.errors import ConfigError, ModelError

pytestmark = pytest.mark.slow
PROMPT = "### Human: Who are you? ### Assistant: "


@pytest.fixture
def trained(db, tiny_path):
    """The issue's snippet: a QLoRA run of 6 steps with checkpoints every 2."""
    db["datas"].insert_many(qa_docs(40))
    llm = LLM(identifier="llm-finetune", model_name_or_path=tiny_path, bits=4)
    run = llm.fit(X="text", select="datas", configuration=snippet_config(), db=db)
    return db, llm, run


def test_qlora_run_records_checkpoints_that_predict(trained):
    db, _, run = trained
    assert run.status == "completed"
    assert db.show("model") == ["llm-finetune"]
    checkpoints = db.show("checkpoint", "llm-finetune")
    assert [c["step"] for c in checkpoints] == [2, 4, 6]
    assert all(Path(c["path"]).is_dir() and c["size"] > 0 and c["files"] for c in checkpoints)
    assert checkpoints[-1]["latest"]
    assert [c for c in checkpoints if c["best"]]  # evaluation ran, so one is the best
    record = db.show("run", "llm-finetune")[0]
    assert record["status"] == "completed" and record["counts"]["train_docs"] == 36
    assert record["config"]["lora_r"] == 4 and record["duration"] > 0
    for step in (2, 4, 6):
        text = db.load("model", "llm-finetune", checkpoint=step).predict(PROMPT, max_new_tokens=8, do_sample=True)
        assert isinstance(text, str)
    assert len(run.metrics) == 6 and {"loss", "eval_loss", "learning_rate"} <= set(run.metrics.columns)


def test_the_lora_weights_change_while_the_base_stays(trained, tiny_path):
    db, _, _ = trained
    weights = {
        c["step"]: load_file(Path(c["path"]) / "adapter_model.safetensors")
        for c in db.show("checkpoint", "llm-finetune")
    }
    lora_b = [name for name in weights[2] if "lora_B" in name]
    assert lora_b, "the adapter has LoRA B matrices"
    # LoRA B starts at zero: after training it is not, and it keeps moving
    assert all(weights[6][name].abs().sum() > 0 for name in lora_b)
    assert any(not weights[2][name].equal(weights[6][name]) for name in lora_b)
    assert not any("lora" not in name for name in weights[6])  # only the adapter is saved


def test_predict_reuses_the_loaded_base_model(trained):
    db, llm, _ = trained
    llm.predict(PROMPT, max_new_tokens=4)
    llm.predict([PROMPT, "### Human: hi ### Assistant: "], max_new_tokens=4)
    for step in (2, 4, "best"):
        db.load("model", "llm-finetune", checkpoint=step).predict(PROMPT, max_new_tokens=4)
    assert db.model_cache.loads == 1


def test_batched_predict_returns_one_answer_per_prompt(trained):
    _, llm, _ = trained
    answers = llm.predict([PROMPT, "short", "a much longer prompt than the others"], max_new_tokens=5)
    assert isinstance(answers, list) and len(answers) == 3


def test_predict_without_the_adapter_gives_the_base_models_answer(trained, tiny_path):
    _, llm, _ = trained
    plain = LLM(model_name_or_path=tiny_path, bits=4).predict(PROMPT, max_new_tokens=8)
    assert llm.predict(PROMPT, max_new_tokens=8, adapter=None) == plain


def test_save_total_limit_prunes_files_and_records_together(db, tiny_path):
    db["d"].insert_many(qa_docs(20))
    run = LLM("pruned", tiny_path).fit(
        select="d", db=db, configuration=small_config(max_steps=5, save_steps=1, save_total_limit=2, eval_strategy="no")
    )
    kept = db.show("checkpoint", "pruned")
    assert [c["step"] for c in kept] == [4, 5]
    run_dir = Path(db.show("run", "pruned")[0]["output_dir"])
    assert sorted(p.name for p in run_dir.glob("checkpoint-*")) == ["checkpoint-4", "checkpoint-5"]
    assert run.status == "completed"


def test_resume_continues_the_step_count(db, tiny_path):
    db["d"].insert_many(qa_docs(20))
    llm = LLM("resumed", tiny_path)
    llm.fit(select="d", db=db, configuration=small_config(max_steps=4, eval_strategy="no"))
    second = llm.fit(
        select="d", db=db, resume_from_checkpoint=True, configuration=small_config(max_steps=6, eval_strategy="no")
    )
    assert second.metrics["step"].tolist() == [5, 6]
    assert [c["step"] for c in db.show("checkpoint", "resumed")] == [2, 4, 6]
    assert second.record["resumed_from"].endswith("-4")


def test_full_fine_tuning_saves_and_predicts_a_whole_model(db, tiny_path):
    db["d"].insert_many(qa_docs(20))
    llm = LLM("full", tiny_path)
    llm.fit(select="d", db=db, configuration=small_config(max_steps=2, use_lora=False, eval_strategy="no"))
    checkpoint = db.show("checkpoint", "full")[-1]
    assert (Path(checkpoint["path"]) / "model.safetensors").is_file()
    assert isinstance(db.load("model", "full").predict(PROMPT, max_new_tokens=4), str)


def test_the_seeds_apply_form_trains(db, tiny_path):
    db["datas"].insert_many(qa_docs(20))
    llm = db.apply(
        LLM(
            identifier="b",
            model_name_or_path=tiny_path,
            trainer=LLMTrainer(identifier="t", select="datas", key="text", output_dir="out", max_steps=2, lora_r=4),
        )
    )
    assert [c["step"] for c in db.show("checkpoint", "b")] == [2]
    assert isinstance(llm.predict(PROMPT, max_new_tokens=4), str)


def test_a_failure_during_training_is_recorded_and_raised(db, tiny_path):
    db["d"].insert_many(qa_docs(20))

    def broken_view(state):
        if state.step >= 2:
            raise RuntimeError("the view broke")

    with pytest.raises(RuntimeError, match="the view broke"):
        LLM("broken", tiny_path).fit(
            select="d",
            db=db,
            on_start=lambda run: run.state.listeners.append(broken_view),
            configuration=small_config(eval_strategy="no"),
        )
    record = db.show("run", "broken")[0]
    assert record["status"] == "failed" and record["error"] == "RuntimeError: the view broke"


def test_a_rejected_run_writes_nothing(db, tiny_path, workdir):
    db["d"].insert_many(qa_docs(10))
    with pytest.raises(ModelError, match=r"model: no directory '\./nope'"):
        LLM("x", "./nope").fit(select="d", db=db, configuration=small_config())
    assert db.show("model") == [] and db.show("run") == []
    assert not (workdir / ".llm_magics").exists()


def test_an_unknown_backend_is_refused_before_anything_is_written(db, tiny_path, workdir):
    db["d"].insert_many(qa_docs(10))
    expected = r"backend 'threads': must be 'kernel', 'thread', 'process', 'ray' or 'ray-job' — did you mean"
    with pytest.raises(ConfigError, match=expected):
        LLM("x", tiny_path).fit(select="d", db=db, configuration=small_config(), backend="threads")
    assert db.show("model") == [] and db.show("run") == []
    assert not (workdir / ".llm_magics").exists()


@pytest.mark.parametrize("backend", ["kernel", "thread"])
def test_a_run_validates_its_configuration_and_builds_its_trainer_arguments_once(db, tiny_path, monkeypatch, backend):
    """No round trip through plain data on the way to the trainer: one validation of the
    configuration, one ``SFTConfig`` (which sets up the accelerator), for the checks and the run."""
    from trl import SFTConfig

    from llm_magics import LLMTrainingConfiguration

    counts = {"validated": 0, "built": 0}

    def counted(cls, name, key):
        original = getattr(cls, name)

        def wrapper(self, *args, **kwargs):
            counts[key] += 1
            return original(self, *args, **kwargs)

        monkeypatch.setattr(cls, name, wrapper)

    db["d"].insert_many(qa_docs(10))
    config = small_config(max_steps=2, eval_strategy="no")
    counted(LLMTrainingConfiguration, "__post_init__", "validated")
    counted(SFTConfig, "__post_init__", "built")
    run = LLM("once", tiny_path).fit(select="d", db=db, configuration=config, backend=backend).wait(120)
    assert run.status == "completed" and counts == {"validated": 1, "built": 1}


def test_the_default_store_keeps_runs_for_a_new_process(tiny_path, workdir):
    script = textwrap.dedent(f"""
        from llm_magics import LLM, LLMTrainingConfiguration, connect
        db = connect()
        db["docs"].insert_many([{{"text": f"### Human: {{i}} ### Assistant: {{i}}"}} for i in range(20)])
        config = LLMTrainingConfiguration(max_steps=4, save_steps=2, per_device_train_batch_size=2, lora_r=4)
        LLM("kept", {tiny_path!r}).fit(select="docs", configuration=config, db=db)
    """)
    subprocess.run([sys.executable, "-c", script], check=True, cwd=workdir, timeout=300)
    db = connect()
    assert [run["status"] for run in db.show("run", "kept")] == ["completed"]
    assert [c["step"] for c in db.show("checkpoint", "kept")] == [2, 4]
    assert isinstance(db.load("model", "kept").predict(PROMPT, max_new_tokens=4), str)


def test_evaluating_during_qlora_training_does_not_change_the_training(db, tiny_path):
    """bitsandbytes repacks 4-bit weights for CPU inference in eval mode, losing their backward;
    a run that evaluates every step must train exactly like one that never evaluates."""
    db["d"].insert_many(qa_docs(40, valid_every=5))
    losses = {}
    for strategy in ("steps", "no"):
        config = small_config(eval_strategy=strategy, eval_steps=1, lora_dropout=0.0, learning_rate=1e-2)
        run = LLM(f"eval-{strategy}", tiny_path, bits=4).fit(select="d", db=db, configuration=config)
        losses[strategy] = run.metrics["loss"].dropna().tolist()
    assert losses["steps"] == pytest.approx(losses["no"], rel=1e-6)


def test_lora_goes_on_every_linear_layer_but_the_head(trained):
    db, _, _ = trained
    weights = load_file(Path(db.show("checkpoint", "llm-finetune")[-1]["path"]) / "adapter_model.safetensors")
    adapted = {key.split(".lora_")[0].rsplit(".", 1)[-1] for key in weights}
    assert adapted == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}


def test_eight_bit_training_predicts_without_a_flood_of_warnings(db, tiny_path, caplog):
    db["docs"].insert_many(qa_docs(20))
    llm = LLM(identifier="eight", model_name_or_path=tiny_path, bits=8)
    with caplog.at_level("WARNING"):
        run = llm.fit(select="docs", configuration=small_config(max_steps=2, save_steps=2, eval_strategy="no"), db=db)
        answer = llm.predict(PROMPT, max_new_tokens=4)
    assert run.status == "completed" and [c["step"] for c in run.checkpoints] == [2]
    assert isinstance(answer, str)
    assert not [r for r in caplog.records if "MatMul8bitLt" in r.getMessage()]


def test_from_pretrained_reads_transformers_arguments(db, tiny_path):
    llm = LLM.from_pretrained(tiny_path, identifier="pre", load_in_4bit=True, dtype="float32")
    assert (llm.bits, llm.model_kwargs) == (4, {"dtype": "float32"})
    assert isinstance(llm.predict(PROMPT, max_new_tokens=4), str)


def test_trust_remote_code_runs_the_models_own_code_only_when_set(db, tiny_path, workdir):
    from helpers import custom_code_model

    marker = workdir / "ran"
    custom = custom_code_model(tiny_path, workdir / "custom", marker)
    db["docs"].insert_many(qa_docs(20))
    config = small_config(max_steps=2, save_steps=2, eval_strategy="no", trust_remote_code=True)
    llm = LLM(identifier="custom", model_name_or_path=str(custom))
    run = llm.fit(select="docs", configuration=config, db=db)
    assert run.status == "completed" and marker.exists()
    assert isinstance(llm.predict(PROMPT, max_new_tokens=3), str)  # the user who trained it allowed it
    marker.unlink()
    with pytest.raises(ModelError, match=r"model 'custom' \(run \w+\) was trained with trust_remote_code"):
        db.load("model", "custom")  # another user of the database: the record alone does not allow it
    assert not marker.exists()
    assert isinstance(db.load("model", "custom", trust_remote_code=True).predict(PROMPT, max_new_tokens=3), str)
    shell = Shell({"database": db.uri})
    with pytest.raises(UsageError, match=r"%llm_predict --trust-remote-code or %config LLMMagics.trust_remote_code"):
        shell.run('%llm_predict custom "hi" --max-new-tokens 2')
    assert isinstance(shell.run('%llm_predict custom "hi" --max-new-tokens 2 --trust-remote-code')[0], str)
    shell.run("%config LLMMagics.trust_remote_code = True")
    assert isinstance(shell.run('%llm_predict custom "hi" --max-new-tokens 2')[0], str)


def test_run_metrics_show_dates_and_whole_token_counts(db, tiny_path):
    """``run.metrics``: when each step was logged as a UTC date, token counts as integers (issue #18)."""
    import pandas as pd

    db["d"].insert_many(qa_docs(20))
    metrics = LLM("dated", tiny_path).fit(select="d", db=db, configuration=small_config(max_steps=2)).metrics
    assert isinstance(metrics["time"].dtype, pd.DatetimeTZDtype) and str(metrics["time"].dt.tz) == "UTC"
    assert (pd.Timestamp.now(tz="UTC") - metrics["time"].iloc[-1]).total_seconds() < 600
    assert str(metrics["num_tokens"].dtype) == "Int64" and metrics["num_tokens"].iloc[0] > 0


def test_offline_qlora_shows_no_kernel_trust_notice(tiny_path, workdir):
    """With the Hub offline, ``kernels`` logs that it skips the publisher check of the kernel
    bitsandbytes fetches for itself, in every cell's output; the user asked for none of it. Its
    other warnings still show."""
    import os

    script = textwrap.dedent(f"""
        import logging
        from llm_magics.models.loader import BaseModel, load_base_model
        model = load_base_model(BaseModel({tiny_path!r}, bits=4))
        print(type(model.model.layers[0].self_attn.q_proj).__name__)
        notices = logging.getLogger("kernels._internals.hf_hub")
        notices.warning("Skipping publisher trust check for 'kernels-community/x' because Hugging Face Hub is in "
                        "offline mode.")
        notices.warning("another warning of kernels")
    """)
    environment = {**os.environ, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=workdir, env=environment, timeout=300
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "Linear4bit\n"
    assert "publisher trust check" not in done.stderr and "another warning of kernels" in done.stderr
