"""Preference and reward methods: ``llm.fit(method=dpo | grpo)`` against a plain TRL script.

Both arms train the tiny model with LoRA on the same rows (DPO: prompt / chosen / rejected pairs;
GRPO: prompts and one reward function), with the same settings and seed. The plain arm is what a
user writes without us: ``DPOTrainer`` / ``GRPOTrainer`` with a ``DPOConfig`` / ``GRPOConfig``, a
``LoraConfig`` and ``Dataset.from_list``. Ours reads the rows from the database, records every
logged step, checkpoint and (GRPO) sampled completion, and keeps the live state.

loop: the trainer's own ``train_runtime``. The arms alternate, their order rotated each round,
after one warm-up run each; reported are the medians and the median of each round's ratio.

    python benchmarks/methods.py [--steps 40] [--rounds 5] [--methods dpo grpo] [--threads 1] [--json]
"""

from __future__ import annotations

import argparse
import uuid
from pathlib import Path
from typing import Any

from workload import common_options, emit, interleaved, median, quiet, ratio, tiny, use_threads, workdir

GOAL = 1.03
FACTS = [("capital of France?", " Paris", " Rome"), ("2+2?", " four", " five"), ("ice is?", " cold", " hot")]
LORA = {"lora_r": 8, "lora_alpha": 16, "lora_dropout": 0.05}
COMMON = {"per_device_train_batch_size": 8, "learning_rate": 5e-3, "logging_steps": 1, "seed": 42}
GRPO = {"num_generations": 4, "max_completion_length": 12}


def share_of_a(completions: list[str], **kwargs: Any) -> list[float]:
    return [c.count("a") / max(1, len(c)) for c in completions]


def rows(method: str) -> list[dict[str, Any]]:
    if method == "dpo":
        return [{"prompt": q, "chosen": good, "rejected": bad} for q, good, bad in FACTS * 16]
    return [{"prompt": f"say a {i}"} for i in range(32)]


def plain(method: str, base: str, steps: int, root: Path) -> float:
    """The TRL script a user writes; returns the trainer's train_runtime."""
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base)
    model = AutoModelForCausalLM.from_pretrained(base)
    peft = LoraConfig(
        r=LORA["lora_r"], lora_alpha=LORA["lora_alpha"], lora_dropout=LORA["lora_dropout"], target_modules="all-linear"
    )
    settings = {
        **COMMON,
        "max_steps": steps,
        "output_dir": str(root / "plain" / uuid.uuid4().hex[:6]),
        "save_steps": steps,
        "report_to": "none",
        "use_cpu": True,
        "bf16": False,
        "gradient_checkpointing": False,
        "disable_tqdm": True,
        "dataloader_pin_memory": False,
    }
    data = Dataset.from_list(rows(method))
    if method == "dpo":
        from trl import DPOConfig, DPOTrainer

        trainer = DPOTrainer(
            model=model,
            args=DPOConfig(**settings, max_length=512),
            train_dataset=data,
            processing_class=tokenizer,
            peft_config=peft,
        )
    else:
        from trl import GRPOConfig, GRPOTrainer

        trainer = GRPOTrainer(
            model=model,
            reward_funcs=[share_of_a],
            args=GRPOConfig(**settings, **GRPO),
            train_dataset=data,
            processing_class=tokenizer,
            peft_config=peft,
        )
    from transformers.trainer_callback import PrinterCallback

    trainer.remove_callback(PrinterCallback)  # a script prints nothing either (ours shows the live state)
    return trainer.train().metrics["train_runtime"]


def ours(method: str, base: str, steps: int, root: Path, db: Any) -> float:
    from llm_magics import LLM, LLMTrainingConfiguration

    collection = f"{method}-rows"
    if collection not in db.list_collection_names():
        db[collection].insert_many(rows(method))
    fields = (
        {"prompt": "prompt", "chosen": "chosen", "rejected": "rejected"} if method == "dpo" else {"prompt": "prompt"}
    )
    extra = {**GRPO, "reward_funcs": [share_of_a]} if method == "grpo" else {}
    config = LLMTrainingConfiguration(
        method=method,
        data=collection,
        **fields,
        **COMMON,
        **LORA,
        **extra,
        max_steps=steps,
        save_steps=steps,
        output_dir=str(root / "ours"),
    )
    run = LLM(f"bench-{method}", base).fit(configuration=config, db=db)
    return run.record["summary"]["train_runtime"]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--methods", nargs="+", default=["dpo", "grpo"], choices=["dpo", "grpo"])
    common_options(parser)
    options = parser.parse_args(argv)
    use_threads(options.threads)
    quiet()
    root = workdir("methods")
    base = tiny(root)
    from llm_magics import connect

    db = connect("mongomock://bench-methods")
    result: dict[str, Any] = {"steps": options.steps, "rounds": options.rounds, "goal": GOAL, "methods": {}}
    for method in options.methods:
        arms = {
            "plain trl": lambda m=method: plain(m, base, options.steps, root),
            "llm.fit": lambda m=method: ours(m, base, options.steps, root, db),
        }
        for arm in arms.values():
            arm()  # warm-up
        times = interleaved(arms, options.rounds)
        per_round = [ratio(o, p) for o, p in zip(times["llm.fit"], times["plain trl"], strict=True)]
        result["methods"][method] = {
            "loop_s": times,
            "median_s": {arm: median(values) for arm, values in times.items()},
            "ratio_of_medians": ratio(median(times["llm.fit"]), median(times["plain trl"])),
            "median_ratio": median(per_round),
        }
    return emit(result, options.json, show)


def show(result: dict[str, Any]) -> None:
    print(f"{result['steps']} steps, {result['rounds']} rounds (goal: llm.fit / plain trl <= {result['goal']})")
    print("| method | plain trl (median) | llm.fit (median) | ratio of medians | median of rounds' ratios |")
    print("|---|---|---|---|---|")
    for method, entry in result["methods"].items():
        medians = entry["median_s"]
        print(
            f"| {method} | {medians['plain trl']:.2f} s | {medians['llm.fit']:.2f} s | "
            f"x{entry['ratio_of_medians']:.3f} | x{entry['median_ratio']:.3f} |"
        )


if __name__ == "__main__":
    main()
