"""The GPU tier: QLoRA on a random Llama with Llama-3.2-1B's shape, on a CUDA GPU. Skipped where
there is none (CI never has one); ``scripts/gpu_check.sh`` runs it on a lent GPU machine.

What a user of a real 1B model meets: bf16 chosen by itself, the loss falling, the dry run's
memory estimate against the measured peak, the live view's GPU memory and samples/s, a
checkpoint switch against a full reload, and a detached run on the GPU.

``LLM_MAGICS_GPU_SMOKE=1`` runs the same code on a CPU with the tiny shape, without the checks that
only a GPU can pass (``scripts/gpu_check.sh --cpu-smoke``, in CI): the tier cannot rot unseen."""

from __future__ import annotations

import importlib.util
import os
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.gpu

STEPS = 10 if os.environ.get("LLM_MAGICS_GPU_SMOKE") == "1" else 40
SMOKE = os.environ.get("LLM_MAGICS_GPU_SMOKE") == "1"
on_gpu_only = pytest.mark.skipif(SMOKE, reason="a GPU figure (smoke run on a CPU)")


@pytest.fixture(scope="module")
def cuda():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available() and not SMOKE:
        pytest.skip("needs a CUDA GPU")
    return torch


@pytest.fixture(scope="module")
def store_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("gpu-store")


@pytest.fixture(scope="module")
def base_1b(cuda, tmp_path_factory: pytest.TempPathFactory) -> str:
    from llm_magics.models.tiny import shaped_model

    shape = "tiny" if SMOKE else "1b"
    return str(shaped_model(tmp_path_factory.mktemp("models") / f"llama-{shape}", shape))


def facts(count: int) -> list[dict]:
    from llm_magics.models.tiny import documents

    return [{k: v for k, v in doc.items() if k != "_fold"} for doc in documents(count)]


def config(store_dir: Path, **changes):
    from llm_magics import LLMTrainingConfiguration

    values = {
        "max_steps": STEPS,
        "save_steps": STEPS // 2,
        "eval_strategy": "no",
        "logging_steps": 5,
        "per_device_train_batch_size": 4,
        "learning_rate": 1e-3,
        "max_length": 128,
        "output_dir": str(store_dir / "output"),
    }
    return LLMTrainingConfiguration(**{**values, **changes})


@pytest.fixture(scope="module")
def trained(cuda, base_1b, store_dir):
    """One QLoRA run on the 1B shape, with the peak memory it took and what the dry run estimated."""
    from llm_magics import LLM, connect
    from llm_magics.models.estimate import estimate
    from llm_magics.models.loader import BaseModel

    db = connect(f"embedded://{store_dir}")
    db["facts"].insert_many(facts(64))
    configuration = config(store_dir)
    if not SMOKE:
        cuda.cuda.empty_cache()
        cuda.cuda.reset_peak_memory_stats()
    run = LLM("gpu-1b", base_1b, bits=4).fit(select="facts", db=db, configuration=configuration)
    peak = 0.0 if SMOKE else cuda.cuda.max_memory_allocated() / 2**30
    longest = max(len(doc["text"].encode()) for doc in facts(64)) + 1  # bytes, and the EOS token
    expected = estimate(configuration, BaseModel(base_1b, bits=4), longest).total_gib
    return run, peak, expected


def test_qlora_on_the_1b_shape_chooses_bf16_and_the_loss_falls(trained, store_dir):
    run, _, _ = trained
    assert run.status == "completed", run.error
    assert config(store_dir).training_arguments().bf16 is not SMOKE  # chosen on a GPU, not asked for
    losses = [row["loss"] for row in run.db.store.run_metrics(run.id) if "loss" in row]
    assert len(losses) == STEPS // 5
    print("losses", [round(loss, 3) for loss in losses])
    assert losses[-1] < (1.0 if SMOKE else 0.9) * losses[0], losses  # the tiny shape learns slower


@on_gpu_only
def test_the_dry_run_estimate_is_within_a_quarter_of_the_measured_peak(trained):
    _, peak, expected = trained
    print(f"peak {peak:.2f} GiB, estimate {expected:.2f} GiB, error {expected / peak - 1:+.0%}")
    assert 0.75 <= expected / peak <= 1.25, (peak, expected)


@on_gpu_only
def test_the_live_view_reads_gpu_memory_and_samples_per_second(trained):
    run, peak, _ = trained
    rows = [row for row in run.db.store.run_metrics(run.id) if "loss" in row]
    assert all(row["samples_per_s"] > 0 for row in rows[1:])
    assert all(0 < row["gpu_memory_peak"] <= peak * 2**30 for row in rows)


def test_a_checkpoint_switch_is_far_faster_than_a_full_reload(trained, base_1b):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig

    run, _, _ = trained
    model = run.db.load("model", "gpu-1b")
    model.predict("What is the capital of France?", max_new_tokens=1)  # the base and latest adapter load
    first = next(c for c in run.checkpoints if c["step"] != STEPS)
    started = time.perf_counter()
    model.predict("What is the capital of France?", checkpoint=first["step"], max_new_tokens=1)
    switch = time.perf_counter() - started

    started = time.perf_counter()
    quantization = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                                      bnb_4bit_compute_dtype=torch.float32 if SMOKE else torch.bfloat16)  # fmt: skip
    device_map = None if SMOKE else {"": 0}
    base = AutoModelForCausalLM.from_pretrained(base_1b, quantization_config=quantization, device_map=device_map)
    reloaded = PeftModel.from_pretrained(base, first["path"])
    tokenizer = AutoTokenizer.from_pretrained(base_1b)
    prompt = "### Human: What is the capital of France? ### Assistant: "
    ids = tokenizer(prompt, return_tensors="pt").to(reloaded.device)
    reloaded.generate(**ids, max_new_tokens=1)
    reload = time.perf_counter() - started
    print(f"first switch {switch * 1000:.0f} ms, full reload {reload * 1000:.0f} ms, x{reload / switch:.1f}")
    assert SMOKE or reload > 5 * switch


def test_a_detached_run_trains_on_the_gpu(trained, base_1b, store_dir):
    from llm_magics import LLM

    run, _, _ = trained
    detached = LLM("gpu-1b-detached", base_1b, bits=4).fit(
        select="facts", db=run.db, configuration=config(store_dir, max_steps=10, save_steps=10), detach=True
    )
    assert detached.record["backend"] == "process"
    assert detached.wait(300).status == "completed", detached.error
    rows = [row for row in run.db.store.run_metrics(detached.id) if "loss" in row]
    assert rows and (SMOKE or rows[-1]["gpu_memory_peak"] > 0)


def _cuda_only(reason: str) -> str | None:
    return f"{reason} (smoke run on a CPU)" if SMOKE else None


# each fast path, and why it cannot run where it cannot (None: it runs)
FAST_PATHS = {
    "padding_free": ({"padding_free": True}, lambda: None),
    "attn_implementation: flash_attention_2": (
        {"attn_implementation": "flash_attention_2"},
        lambda: (
            _cuda_only("needs a CUDA GPU")
            or (None if importlib.util.find_spec("flash_attn") else "flash-attn is not installed")
        ),
    ),
    "use_liger_kernel": (
        {"use_liger_kernel": True},
        lambda: (
            _cuda_only("needs a CUDA GPU")
            or (None if importlib.util.find_spec("liger_kernel") else "liger-kernel is not installed")
        ),
    ),
    "activation_offloading": (
        {"activation_offloading": True, "gradient_checkpointing": True},
        lambda: _cuda_only("needs a CUDA GPU"),
    ),
    "gradient_checkpointing": ({"gradient_checkpointing": True}, lambda: None),
}


def _losses(db, base: str, store_dir: Path, name: str, **changes) -> list[float]:
    from llm_magics import LLM

    steps = 4 if SMOKE else 10
    configuration = config(store_dir, max_steps=steps, save_steps=steps, logging_steps=1, **changes)
    run = LLM(name, base, bits=4).fit(select="facts", db=db, configuration=configuration)
    assert run.status == "completed", run.error
    return [row["loss"] for row in run.db.store.run_metrics(run.id) if "loss" in row]


@pytest.fixture(scope="module")
def default_losses(trained, base_1b, store_dir) -> list[float]:
    run, _, _ = trained
    return _losses(run.db, base_1b, store_dir, "gpu-1b-default")


@pytest.mark.parametrize("path", list(FAST_PATHS))
def test_each_fast_path_trains_as_the_default_does(trained, base_1b, store_dir, default_losses, path):
    """The same documents in the same batches: a fast path changes how the model computes, so the
    losses agree to bfloat16's rounding (a kernel sums in another order), not exactly."""
    changes, why_not = FAST_PATHS[path]
    reason = why_not()
    if reason:
        pytest.skip(reason)
    run, _, _ = trained
    losses = _losses(run.db, base_1b, store_dir, f"gpu-1b-{path.split(':')[0]}", **changes)
    print(path, [round(loss, 4) for loss in losses], "default", [round(loss, 4) for loss in default_losses])
    assert losses == pytest.approx(default_losses, rel=2e-3 if SMOKE else 2e-2)


def test_packing_trains_full_rows_and_the_loss_falls(trained, base_1b, store_dir):
    run, _, _ = trained
    losses = _losses(run.db, base_1b, store_dir, "gpu-1b-packed", packing=True, learning_rate=1e-2)
    assert losses[-1] < losses[0], losses


def test_grpo_with_two_generations_trains_on_the_gpu(trained, base_1b, store_dir):
    """GRPO's generation and its policy update on the 1B shape, 4-bit: rewards are computed on
    every step and the run completes (a random model learns no task in 10 steps)."""
    from llm_magics import LLM, LLMTrainingConfiguration

    def share_of_e(completions, **kwargs):
        return [c.count("e") / max(1, len(c)) for c in completions]

    run, _, _ = trained
    run.db["prompts"].insert_many([{"q": f"say e {i}"} for i in range(16)])
    configuration = LLMTrainingConfiguration(
        method="grpo", data="prompts", prompt="q", reward_funcs=[share_of_e], num_generations=2,
        max_completion_length=8, per_device_train_batch_size=4, max_steps=10, save_steps=10, logging_steps=1,
        learning_rate=1e-3, output_dir=str(store_dir / "grpo"),
    )  # fmt: skip
    grpo = LLM("gpu-1b-grpo", base_1b, bits=4).fit(db=run.db, configuration=configuration)
    assert grpo.status == "completed", grpo.error
    rows = [row for row in run.db.store.run_metrics(grpo.id) if "rewards/share_of_e/mean" in row]
    assert len(rows) == 10 and all(0 <= row["rewards/share_of_e/mean"] <= 1 for row in rows)
    assert len(grpo.completions()) == 10 * 4
