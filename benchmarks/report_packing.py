"""BENCHMARKS.md's section on packing, from packing.py's results."""

from __future__ import annotations

from typing import Any

from formatting import ratio, table

PACKING_TITLE = "15. Packing: one epoch on documents of skewed lengths, `packing: true` against without"


def packing_goals(result: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {
            "what": "Packing, one epoch on skewed lengths (CPU): time, packed / unpacked",
            "goal": f"≤ x{result['goal']} to be the default",
            "measured": ratio(result["time_ratio"], 2),
            "met": result["time_ratio"] <= result["goal"],
            "why": "On a CPU, sdpa attends over the whole packed row with a block mask (no varlen kernel), so a"
            " 1,024-token row costs more than the padded short batches it replaces; packing stays off by default"
            " (section 15).",
        }
    ]


def packing_section(result: dict[str, Any]) -> list[str]:
    rows = [
        [
            name,
            f"{arm['seconds']:.2f} s",
            str(arm["steps"]),
            f"{arm['tokens_per_second']:.0f}",
            f"{arm['final_loss']:.3f}",
            f"{arm['eval_loss']:.3f}",
        ]
        for name, arm in result["arms"].items()
    ]
    return [
        f"{result['docs']:,} question / answer documents, 90% of 60 to 160 characters and 10% of 620 to 1,040"
        " (the byte tokenizer: a token each), `max_length: 1024`, batch 8, one epoch of the tiny model with"
        " LoRA; medians of the rounds. The held-out loss is per real token on the same documents, unpacked in"
        " both arms.",
        "",
        *table(
            ["", "epoch (train_runtime)", "steps", "trained tokens/s", "train loss (last 5 steps)", "held-out loss"],
            rows,
        ),
        f"Packed / unpacked epoch time: {ratio(result['time_ratio'], 2)}. Packing takes fewer, longer rows: on"
        " this CPU the attention over a whole packed row (sdpa, a block-diagonal mask, no variable-length"
        " kernel) costs more than the padding it saves, and an epoch makes fewer optimizer steps. It stays"
        " off by default; on a GPU with `attn_implementation: flash_attention_2` the packed row is attended"
        " document by document, and `benchmarks/gpu_qlora.py` measures it there (section 6).",
    ]
