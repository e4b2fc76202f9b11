"""Packing on a corpus of skewed lengths: one epoch with ``packing: true`` against without.

Most documents are short and a few are long, as in chat and instruction data: padded batches then
spend most of their compute on padding. Both arms train the tiny model with LoRA on the same
documents, one epoch each, with the same settings and seed; they alternate, their order rotated
each round. Reported per arm: the trainer's ``train_runtime`` for the epoch (it includes one
evaluation at its end, the same in both arms), the steps, the real (trained) tokens per second,
and the loss per real token on the same held-out documents, scored unpacked in both arms
(``eval_packing: false``), so the two are comparable.

    python benchmarks/packing.py [--docs 800] [--rounds 3] [--threads 1] [--json]
"""

from __future__ import annotations

import argparse
import random
from typing import Any

from workload import common_options, emit, interleaved, median, quiet, tiny, use_threads, workdir

GOAL = 0.8  # packed epoch time / unpacked: packing is worth a default only if it saves a fifth
SHORT, LONG = (40, 120), (600, 1000)  # characters (the byte tokenizer: one token each)


def corpus(count: int, seed: int = 0) -> list[dict[str, Any]]:
    """``count`` question / answer documents: 90% short, 10% long; every tenth held out."""
    rng = random.Random(seed)
    words = [
        "the",
        "a",
        "of",
        "river",
        "stone",
        "light",
        "green",
        "quick",
        "north",
        "answer",
        "model",
        "data",
        "train",
        "token",
    ]

    def text(length: tuple[int, int]) -> str:
        body = ""
        while len(body) < rng.randint(*length):
            body += rng.choice(words) + " "
        return body.strip()

    docs = []
    for i in range(count):
        long = rng.random() < 0.1
        question, answer = text((20, 40)), text(LONG if long else SHORT)
        docs.append(
            {"text": f"### Human: {question}? ### Assistant: {answer}", "_fold": "valid" if i % 10 == 0 else "train"}
        )
    return docs


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", type=int, default=800)
    parser.add_argument("--rounds", type=int, default=3)
    common_options(parser)
    options = parser.parse_args(argv)
    quiet()
    use_threads(options.threads)
    root = workdir("packing")

    from llm_magics import LLM, LLMTrainingConfiguration, connect

    base = tiny(root)
    db = connect("mongomock://bench-packing")
    docs = corpus(options.docs)
    db["docs"].insert_many(docs)
    common = {
        "model": base,
        "max_steps": -1,
        "num_train_epochs": 1,
        "per_device_train_batch_size": 8,
        "per_device_eval_batch_size": 8,
        "max_length": 1024,
        "learning_rate": 2e-3,
        "lora_r": 8,
        "eval_strategy": "epoch",  # once, at the end: the same held-out documents, unpacked, in both arms
        "save_strategy": "no",
        "seed": 42,
    }

    def arm(packing: bool) -> dict[str, Any]:
        config = LLMTrainingConfiguration(**common, packing=packing, eval_packing=False)
        llm = LLM(f"packing-{packing}", base)
        run = llm.fit(select="docs", db=db, configuration=config)
        assert run.status == "completed", run.error
        summary = run.record["summary"]
        return {
            "seconds": summary["train_runtime"],
            "steps": int(run.record["step"]),
            "trained_tokens": run.record["counts"]["trained_tokens"],
            "final_loss": float(run.metrics["loss"].dropna().iloc[-5:].mean()),
            "eval_loss": float(run.metrics["eval_loss"].dropna().iloc[-1]),
        }

    for packing in (False, True):
        arm(packing)  # warm-up: the tokenized-data cache and the first imports
    runs = interleaved({"unpacked": lambda: arm(False), "packed": lambda: arm(True)}, options.rounds)
    result: dict[str, Any] = {"docs": options.docs, "goal": GOAL, "arms": {}}
    for name, rounds in runs.items():
        seconds = median([r["seconds"] for r in rounds])
        result["arms"][name] = {
            "seconds": seconds,
            "steps": rounds[0]["steps"],
            "tokens_per_second": rounds[0]["trained_tokens"] / seconds,
            "final_loss": median([r["final_loss"] for r in rounds]),
            "eval_loss": median([r["eval_loss"] for r in rounds]),
        }
    result["time_ratio"] = result["arms"]["packed"]["seconds"] / result["arms"]["unpacked"]["seconds"]
    return emit(result, options.json, show)


def show(result: dict[str, Any]) -> None:
    for name, arm in result["arms"].items():
        print(
            f"{name}: {arm['seconds']:.2f} s, {arm['steps']} steps, {arm['tokens_per_second']:.0f} trained tokens/s, "
            f"train loss {arm['final_loss']:.3f}, held-out loss per real token {arm['eval_loss']:.3f}"
        )
    print(f"packed / unpacked epoch time: x{result['time_ratio']:.2f}")


if __name__ == "__main__":
    main()
