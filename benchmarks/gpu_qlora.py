"""QLoRA throughput: ``llm.fit`` with our defaults against a plain trl + peft + bitsandbytes script
with its defaults, and variants of ours (Unsloth's settings at once, then packing,
gradient checkpointing, flash_attention_2, Liger kernels, each alone), on random-weight Llama
models with the shapes of Llama-3.2-1B and Llama-3.1-8B.

Meant for a CUDA GPU; ``--shape tiny`` runs the same code on a CPU in a minute, so that the
script is known to work where no GPU is at hand.

    python benchmarks/gpu_qlora.py --shape 1b [--steps 30] [--batch-size 4] [--seq 1024] [--json]
    python benchmarks/gpu_qlora.py --shape 8b --models ~/bench-models   # keeps the 16 GB model
    python benchmarks/gpu_qlora.py --shape tiny                         # CPU smoke run

The model is built with ``LlamaForCausalLM(config)`` (random weights, bfloat16 on a GPU) and saved
once; the tokenizer is ByT5's (bytes), whose ids all lie in the model's vocabulary: what is timed
does not depend on which ids are trained. Documents are texts of random length between a quarter
of ``--seq`` and ``--seq`` bytes (so that packing has padding to remove). Each arm runs in its own
process, loads the model 4-bit (NF4, double quantization; compute in bfloat16 on a GPU) and trains
``--steps`` steps with batch size, sequence length and logging_steps=1 set alike; everything else
is each side's default:

- llm.fit: ``LLM(bits=4).fit(...)`` (LoRA r=8, alpha 16, dropout 0.05 on every linear layer; no
  gradient checkpointing; logged to the database);
- plain: ``prepare_model_for_kbit_training`` + ``SFTTrainer(peft_config=LoraConfig(task_type=
  "CAUSAL_LM"))``: peft's LoRA (r=8 on q_proj and v_proj) and trl's SFTConfig (gradient
  checkpointing on).

Reported per arm: tokens/s (the trainer's num_tokens, tokens that are not padding, over the time
between the logs of step ``--warmup`` and the last step), peak GPU memory
(``torch.cuda.max_memory_allocated``; on a CPU, the peak resident memory added), and
MFU = 6 * N * tokens/s / peak FLOP/s, where N counts every parameter of the model (embeddings
included) and the peak is the GPU's dense bfloat16 figure (``--peak-tflops`` to give another).
6N is the usual forward + backward estimate; QLoRA computes no weight gradients for the frozen
weights (about 4N) and gradient checkpointing repeats the forward (about 8N), and attention's own
FLOPs are left out, so the MFU is comparable between arms, not an exact utilization.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import random
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from workload import emit, peak_rss, quiet, reset_peak_rss, workdir

from llm_magics.models.tiny import SHAPES, shaped_model

RUN = {"tiny": (2, 64, 8), "1b": (4, 1024, 30), "8b": (2, 1024, 20)}  # batch size, seq, steps
# dense bfloat16 peak of a GPU, TFLOP/s, by a part of its name (first match)
PEAK_TFLOPS = (
    ("H100 PCIe", 756.0),
    ("H100 NVL", 835.0),
    ("H100", 989.0),
    ("H200", 989.0),
    ("GH200", 989.0),
    ("B200", 2250.0),
    ("A100", 312.0),
    ("L40S", 362.0),
    ("A10G", 70.0),
    ("L4", 121.0),
)
VARIANTS = {
    "llm.fit defaults": {},
    "plain trl+peft+bnb defaults": None,
    # Unsloth's recipe by our keys alone: full rows, fused kernels, checkpoints kept in CPU memory
    "llm.fit Unsloth-style: packing + Liger + offloaded checkpointing": {
        "packing": True,
        "use_liger_kernel": True,
        "gradient_checkpointing": True,
        "activation_offloading": True,
    },
    "llm.fit + packing": {"packing": True},
    "llm.fit + gradient checkpointing": {"gradient_checkpointing": True},
    "llm.fit + flash_attention_2": {"model_kwargs": {"attn_implementation": "flash_attention_2"}},
    "llm.fit + Liger kernels": {"use_liger_kernel": True},
}


def available(arm: str, cuda: bool) -> str | None:
    """Why an arm cannot run here, or None when it can."""
    if "flash_attention_2" in arm:
        if not cuda:
            return "needs a CUDA GPU"
        if importlib.util.find_spec("flash_attn") is None:
            return "flash-attn is not installed (pip install flash-attn)"
    if "Liger" in arm:
        if not cuda:
            return "needs a CUDA GPU (Triton kernels)"
        if importlib.util.find_spec("liger_kernel") is None:
            return "liger-kernel is not installed (pip install liger-kernel)"
    return None


def build_model(shape: str, directory: Path) -> Path:
    """A random-weight Llama of ``shape`` with the ByT5 tokenizer, saved once in ``directory``."""
    return shaped_model(directory / f"llama-{shape}", shape)


def parameter_count(path: Path) -> int:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(path))
    return sum(p.numel() for p in model.parameters())


def texts(count: int, seq: int) -> list[str]:
    rng = random.Random(0)
    return ["".join(rng.choices("abcdefghij klmnopqrstuvwxyz", k=rng.randint(seq // 4, seq))) for _ in range(count)]


def ours(path: Path, args: argparse.Namespace, changes: dict[str, Any], out: Path) -> dict[str, Any]:
    from llm_magics import LLM, LLMTrainingConfiguration, connect

    db = connect(f"mongomock://bench-{uuid.uuid4().hex[:6]}")
    db["docs"].insert_many({"text": t} for t in texts(args.batch_size * args.steps * 2, args.seq))
    config = LLMTrainingConfiguration(
        max_steps=args.steps,
        save_steps=args.steps,
        per_device_train_batch_size=args.batch_size,
        max_length=args.seq,
        logging_steps=1,
        output_dir=str(out),
        **changes,
    )
    run = LLM("bench-qlora", str(path), bits=4).fit(select="docs", db=db, configuration=config)
    if run.status != "completed":
        raise RuntimeError(f"run {run.status}: {run.error}")
    metrics = run.db.store.run_metrics(run.id)
    rows = [(row["time"], row["num_tokens"]) for row in metrics if "num_tokens" in row]
    last = metrics[-1] if metrics else {}
    return {
        "loop_s": run.record["summary"]["train_runtime"],
        "logs": rows,
        "loss": run.record["last_loss"],
        "first_loss": next((row["loss"] for row in metrics if "loss" in row), None),
        "estimate_gib": estimated_gib(config, path, args.seq),
        # what the live view shows: GPU memory and samples/s must be there, and non-zero, on a GPU
        "view": {key: last[key] for key in ("samples_per_s", "gpu_memory_peak", "gpu_memory_allocated") if key in last},
        "bf16": config.training_arguments().bf16,  # bf16: null resolves to the GPU's support
    }


def estimated_gib(config: Any, path: Path, seq: int) -> float:
    """``--dry-run``'s memory estimate for this arm, for documents of ``seq`` tokens."""
    from llm_magics.models.estimate import estimate
    from llm_magics.models.loader import BaseModel

    return estimate(config, BaseModel(str(path), bits=4), seq).total_gib


def plain(path: Path, args: argparse.Namespace, out: Path) -> dict[str, Any]:
    """The usual QLoRA script: each library's defaults, but the batch, length and steps."""
    import torch
    from datasets import Dataset
    from peft import LoraConfig, prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig, TrainerCallback
    from trl import SFTConfig, SFTTrainer

    cuda = torch.cuda.is_available()
    dtype = torch.bfloat16 if cuda else torch.float32
    quantization = BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=dtype,
    )
    model = AutoModelForCausalLM.from_pretrained(
        path, quantization_config=quantization, dtype=dtype, device_map={"": 0} if cuda else None
    )
    model = prepare_model_for_kbit_training(model)
    clock: list[tuple[float, float]] = []

    class Clock(TrainerCallback):
        """Stamps each log as our callback stamps its rows: the time, the tokens trained so far."""

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "num_tokens" in logs:
                clock.append((time.time(), logs["num_tokens"]))

    trainer = SFTTrainer(
        model=model,
        args=SFTConfig(
            output_dir=str(out),
            max_steps=args.steps,
            save_steps=args.steps,
            per_device_train_batch_size=args.batch_size,
            max_length=args.seq,
            logging_steps=1,
            report_to="none",
            disable_tqdm=True,
            use_cpu=not cuda,  # trl's bf16 default refuses a CPU unless told
        ),
        train_dataset=Dataset.from_list([{"text": t} for t in texts(args.batch_size * args.steps * 2, args.seq)]),
        processing_class=AutoTokenizer.from_pretrained(path),
        peft_config=LoraConfig(task_type="CAUSAL_LM"),
        callbacks=[Clock()],
    )
    metrics = trainer.train().metrics
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    return {"loop_s": metrics["train_runtime"], "logs": clock, "loss": losses[-1] if losses else None}


def child(arm: str, path: Path, args: argparse.Namespace) -> dict[str, Any]:
    """One arm, in this (fresh) process."""
    import torch

    quiet()
    if args.threads:
        torch.set_num_threads(args.threads)
    cuda = torch.cuda.is_available()
    out = Path.cwd() / uuid.uuid4().hex[:6]
    baseline = reset_peak_rss()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    trained = plain(path, args, out) if VARIANTS[arm] is None else ours(path, args, VARIANTS[arm], out)
    logs = trained.pop("logs")
    steady = logs[args.warmup - 1 :] if len(logs) > args.warmup else logs
    (t0, n0), (t1, n1) = steady[0], steady[-1]
    result = {
        **trained,
        "tokens": n1,
        "tokens_per_s": (n1 - n0) / (t1 - t0) if t1 > t0 else n1 / trained["loop_s"],
        "tokens_per_s_whole_loop": n1 / trained["loop_s"],
    }
    if cuda:
        result["peak_gpu_gib"] = torch.cuda.max_memory_allocated() / 2**30
    else:
        result["peak_rss_added_mib"] = peak_rss() - baseline
    return result


def peak_flops(given: float | None) -> tuple[float | None, str]:
    import torch

    if given:
        return given * 1e12, "given"
    if not torch.cuda.is_available():
        return None, "no GPU"
    name = torch.cuda.get_device_name()
    for part, tflops in PEAK_TFLOPS:
        if part in name:
            return tflops * 1e12, name
    return None, f"{name}: unknown peak, pass --peak-tflops"


def run_arm(arm: str, path: Path, args: argparse.Namespace) -> dict[str, Any]:
    command = [sys.executable, __file__, "--child", arm, "--model-path", str(path), "--shape", args.shape]
    command += ["--steps", str(args.steps), "--batch-size", str(args.batch_size), "--seq", str(args.seq)]
    command += ["--warmup", str(args.warmup)] + (["--threads", str(args.threads)] if args.threads else [])
    done = subprocess.run(command, capture_output=True, text=True, cwd=Path.cwd())
    if done.returncode:
        return {"error": done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exit {done.returncode}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", choices=SHAPES, default="1b")
    parser.add_argument("--steps", type=int, default=None, help="default: 8 (tiny), 30 (1b), 20 (8b)")
    parser.add_argument("--batch-size", type=int, default=None, help="default: 2 (tiny), 4 (1b), 2 (8b)")
    parser.add_argument("--seq", type=int, default=None, help="max_length; default: 64 (tiny), 1024 (1b, 8b)")
    parser.add_argument("--warmup", type=int, default=3, help="steps left out of tokens/s")
    parser.add_argument("--models", help="where the random models are kept (default: a temporary directory)")
    parser.add_argument("--arms", help="comma-separated arm names (default: all that can run here)")
    parser.add_argument("--peak-tflops", type=float, help="the accelerator's peak, for MFU")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's own choice)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--model-path", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    batch, seq, steps = RUN[args.shape]
    args.batch_size, args.seq, args.steps = args.batch_size or batch, args.seq or seq, args.steps or steps
    if args.child:
        print(json.dumps(child(args.child, Path(args.model_path), args)))
        return {}

    import torch

    root = workdir("qlora")
    quiet()
    cuda = torch.cuda.is_available()
    started = time.perf_counter()
    path = build_model(args.shape, Path(args.models).expanduser() if args.models else root)
    params = parameter_count(path)
    peak, peak_source = peak_flops(args.peak_tflops)
    result: dict[str, Any] = {
        "shape": args.shape,
        "config": SHAPES[args.shape],
        "parameters": params,
        "device": torch.cuda.get_device_name() if cuda else "cpu",
        "batch_size": args.batch_size,
        "seq": args.seq,
        "steps": args.steps,
        "warmup": args.warmup,
        "peak_flops": peak,
        "peak_flops_source": peak_source,
        "build_s": time.perf_counter() - started,
        "arms": {},
    }
    chosen = args.arms.split(",") if args.arms else list(VARIANTS)
    for arm in chosen:
        reason = available(arm, cuda)
        measured = {"skipped": reason} if reason else run_arm(arm, path, args)
        if "tokens_per_s" in measured and peak:
            measured["mfu"] = 6 * params * measured["tokens_per_s"] / peak
        result["arms"][arm] = measured
    return emit(result, args.json, show)


def show(result: dict[str, Any]) -> None:
    print(
        f"{result['shape']} ({result['parameters'] / 1e9:.3f} B parameters) on {result['device']}: "
        f"batch {result['batch_size']} x {result['seq']} tokens, {result['steps']} steps"
    )
    for arm, values in result["arms"].items():
        if "tokens_per_s" not in values:
            print(f"  {arm:<34} {values.get('skipped') or 'failed: ' + values.get('error', '')}")
            continue
        memory = (
            f"{values['peak_gpu_gib']:6.2f} GiB GPU"
            if "peak_gpu_gib" in values
            else f"{values['peak_rss_added_mib']:7.0f} MiB RSS"
        )
        mfu = f"MFU {values['mfu']:.1%}" if "mfu" in values else "MFU -"
        print(f"  {arm:<34} {values['tokens_per_s']:10.0f} tokens/s  {memory}  {mfu}")


if __name__ == "__main__":
    main()
