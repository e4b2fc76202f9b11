"""BENCHMARKS.md's section on the preference and reward methods, from methods.py's results."""

from __future__ import annotations

from typing import Any

from formatting import ratio, secs, table

METHODS_TITLE = "12. Preference and reward methods: `llm.fit(method=dpo | grpo)` against a plain TRL script"
GOAL = 1.03


def methods_goals(result: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {
            "what": f"{method.upper()} step time: llm.fit / plain TRL, same settings (median of rounds)",
            "goal": f"≤ x{GOAL}",
            "measured": ratio(entry["median_ratio"], 3),
            "met": entry["median_ratio"] <= GOAL,
            "why": "Ours adds the database (the rows read, each logged step, checkpoint and sampled completion"
            " recorded) and the live state; section 12 gives each round.",
        }
        for method, entry in result["methods"].items()
    ]


def methods_section(result: dict[str, Any]) -> list[str]:
    rows = []
    for method, entry in result["methods"].items():
        medians, rounds = entry["median_s"], entry["loop_s"]
        rows.append(
            [
                method,
                secs(medians["plain trl"]),
                secs(medians["llm.fit"]),
                ratio(entry["ratio_of_medians"], 3),
                ratio(entry["median_ratio"], 3),
                ", ".join(f"{o / p:.3f}" for o, p in zip(rounds["llm.fit"], rounds["plain trl"], strict=True)),
            ]
        )
    return [
        f"{result['steps']} steps, {result['rounds']} rounds (arms alternated, order rotated; one warm-up run each"
        " before), the tiny model with LoRA r=8 on every linear layer, batch 8, learning rate 5e-3, seed 42."
        " DPO: 48 prompt / chosen / rejected pairs. GRPO: 32 prompts, 4 generations of 12 tokens, one reward"
        " function. Plain: `DPOTrainer` / `GRPOTrainer` with a `DPOConfig` / `GRPOConfig` (the same settings;"
        " its printed logs off), a `LoraConfig` and `Dataset.from_list`. Ours: the rows from the database, every"
        " logged step, checkpoint and (GRPO) 8 sampled completions per step recorded. loop: the trainer's"
        " `train_runtime`.",
        "",
        *table(
            ["method", "plain TRL (median)", "llm.fit (median)", "ratio of medians", "median of rounds", "rounds"],
            rows,
        ),
    ]
