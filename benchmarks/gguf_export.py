"""GGUF export: the time of each stage (merge, convert, quantize, check) per quantization type, and
how closely each GGUF answers like the trained model (the check's greedy answers, near ties and
top-1 token agreement, on the checkpoint's three probe prompts).

- ``--shape tiny``: the tiny SentencePiece Llama of the tests (2 layers, 400 tokens), QLoRA-trained
  300 steps on the demo's four capitals until it answers them, as tests/test_gguf.py trains it.
- ``--shape 1b``: random weights in Llama-3.2-1B's shape (16 layers, hidden 2048, 128,256
  embedding rows, tied) with the tiny SentencePiece tokenizer (the converter pads its vocabulary
  to the rows; the padding rows are zero, so they never win); LoRA (no quantization: bitsandbytes'
  4-bit is slow on a CPU) trained a few steps, so that there is an adapter to merge. Random
  weights answer nonsense: what counts is whether the GGUF's nonsense is the same.

Training and each export run in processes of their own (the store is embedded, shared by path), so
that one export's memory does not weigh on the next. ``what llm_magics adds``: the export's wall
time less its stages (finding the checkpoint, the prompts, the record, the rename), as a share.

    python benchmarks/gguf_export.py [--shape tiny|1b] [--quants f16 q8_0 q4_k_m] [--threads 1] [--json]
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from workload import common_options, emit, quiet, use_threads, workdir

NAME = "capitals"
FRANCE = "### Human: What is the capital of France? ### Assistant:"
PROBES = [FRANCE, "### Human: What is the capital of Japan? ### Assistant:", "zzz"]
LLAMA_1B = {"hidden_size": 2048, "intermediate_size": 8192, "num_hidden_layers": 16, "num_attention_heads": 32,
            "num_key_value_heads": 8, "vocab_size": 128256, "tie_word_embeddings": True, "rope_theta": 500000.0,
            "max_position_embeddings": 131072}  # fmt: skip
TRAIN = {
    "tiny": {"max_steps": 300, "bits": 4, "learning_rate": 3e-3, "per_device_train_batch_size": 8, "max_length": 64},
    "1b": {"max_steps": 3, "bits": None, "learning_rate": 1e-4, "per_device_train_batch_size": 2, "max_length": 32},
}


def build(shape: str, root: Path) -> Path:
    """The base model of ``shape``, saved in ``root``."""
    from llm_magics.models.tiny import tiny_sentencepiece_model

    path = tiny_sentencepiece_model(root / f"base-{shape}")
    if shape == "tiny":
        return path
    import torch
    from transformers import AutoConfig, AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokens = AutoConfig.from_pretrained(path)
    config = LlamaConfig(
        **LLAMA_1B, pad_token_id=tokens.pad_token_id, bos_token_id=tokens.bos_token_id, eos_token_id=tokens.eos_token_id
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    with torch.no_grad():  # rows past the vocabulary are padding, as in a released model: never the answer
        model.get_input_embeddings().weight[len(AutoTokenizer.from_pretrained(path)) :] = 0
    model.save_pretrained(path)  # replaces the tiny weights and config
    return path


def train(shape: str, root: Path) -> dict[str, Any]:
    from llm_magics import LLM, LLMTrainingConfiguration, connect
    from llm_magics.models.tiny import FACTS, documents

    db = connect(f"embedded://{root / 'store'}")
    db["docs"].insert_many(documents(64))
    settings = dict(TRAIN[shape])
    bits = settings.pop("bits")
    llm = LLM(NAME, str(root / f"base-{shape}"), bits=bits)
    config = LLMTrainingConfiguration(
        save_steps=settings["max_steps"], eval_strategy="no", lora_r=16, lora_alpha=32, probe_prompts=PROBES, **settings
    )
    started = time.perf_counter()
    llm.fit(select="docs", db=db, configuration=config)
    train_s = time.perf_counter() - started
    answer = llm.predict(FRANCE, max_new_tokens=6).strip()
    learned = answer == dict(FACTS)["What is the capital of France?"] if shape == "tiny" else None
    return {"steps": settings["max_steps"], "bits": bits, "train_s": train_s, "answer": answer, "learned": learned}


def export(quant: str, root: Path) -> dict[str, Any]:
    from llm_magics import connect

    llm = connect(f"embedded://{root / 'store'}").load("model", NAME)
    started = time.perf_counter()
    done = llm.export(root / f"gguf-{quant}", gguf=quant)
    wall = time.perf_counter() - started
    rows = done.check.rows
    return {
        "quant": quant,
        "seconds": done.seconds,
        "total_s": wall,
        "ours_share": (wall - sum(done.seconds.values())) / wall,
        "size_mib": done.gguf.stat().st_size / 2**20,
        "same": sum(row["same"] for row in rows),
        "ties": sum(bool(row["tie"]) for row in rows),
        "prompts": len(rows),
        "agreement": done.check.agreement,
        "warnings": done.check.warnings,
        "notes": done.check.notes,
    }


def child(flag: str, value: str, root: Path, threads: int | None) -> dict[str, Any]:
    """Runs ``--train`` or ``--export`` in a process of its own; returns what it printed."""
    command = [sys.executable, __file__, flag, value, "--root", str(root), "--json"]
    done = subprocess.run([*command, *(["--threads", str(threads)] if threads else [])], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{flag} {value} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", choices=("tiny", "1b"), default="tiny")
    parser.add_argument("--quants", nargs="+", default=["f16", "q8_0", "q4_k_m"])
    parser.add_argument("--train", help=argparse.SUPPRESS)  # a child: train this shape
    parser.add_argument("--export", help=argparse.SUPPRESS)  # a child: export this quantization
    parser.add_argument("--root", help=argparse.SUPPRESS)
    common_options(parser)
    args = parser.parse_args(argv)
    use_threads(args.threads)
    if args.train or args.export:
        quiet()
        root = Path(args.root)
        print(json.dumps(train(args.train, root) if args.train else export(args.export, root)))
        return {}
    root = workdir("gguf")
    quiet()
    started = time.perf_counter()
    base = build(args.shape, root)
    build_s = time.perf_counter() - started
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(base)
    result = {
        "shape": args.shape,
        "parameters": _parameters(config),
        "build_s": build_s,
        **child("--train", args.shape, root, args.threads),
        "exports": [child("--export", quant, root, args.threads) for quant in args.quants],
        "llama_cpp_python": importlib.metadata.version("llama-cpp-python"),
    }
    return emit(result, args.json, show)


def _parameters(config: Any) -> int:
    """A Llama's parameter count from its config (embedding, tied or not, layers, final norm)."""
    h, i, layers = config.hidden_size, config.intermediate_size, config.num_hidden_layers
    kv = config.num_key_value_heads * (h // config.num_attention_heads)
    per_layer = 2 * h * h + 2 * h * kv + 3 * h * i + 2 * h
    embeddings = config.vocab_size * h * (1 if config.tie_word_embeddings else 2)
    return embeddings + layers * per_layer + h


def show(result: dict[str, Any]) -> None:
    print(f"{result['shape']}: {result['parameters']:,} parameters, trained {result['train_s']:.1f} s")
    for row in result["exports"]:
        stages = ", ".join(f"{name} {seconds:.1f} s" for name, seconds in row["seconds"].items())
        print(
            f"{row['quant']}: {stages}; {row['total_s']:.1f} s in all, {row['size_mib']:.1f} MiB;"
            f" same answers {row['same']}/{row['prompts']} ({row['ties']} near ties),"
            f" top-1 agreement {row['agreement']:.0%}"
        )


if __name__ == "__main__":
    main()
