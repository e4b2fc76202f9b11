"""BENCHMARKS.md's section on evaluation by generation, from evaluation.py's results."""

from __future__ import annotations

from typing import Any

from formatting import ratio, secs, table

EVALUATION_TITLE = "13. Evaluation by generation: the batched scorer against a loop of `generate`; scoring at each save"


def evaluation_goals(result: dict[str, Any]) -> list[dict[str, Any]]:
    batched, at_save, goals = result["batched"], result["at_save"], result["goals"]
    return [
        {
            "what": f"Scoring {batched['documents']} held-out documents at batch {result['batch']}: a plain loop of"
            " `generate` / our scorer (greedy, left-padded batches, three metrics)",
            "goal": f"≥ x{goals['speedup']:g}, the same answers",
            "measured": f"{ratio(batched['speedup'], 2)}, {batched['same_answers']}/{batched['documents']} the same",
            "met": batched["speedup"] >= goals["speedup"] and batched["same_answers"] == batched["documents"],
            "why": "One forward pass per new token for a batch instead of per document; section 13.",
        },
        {
            "what": f"A {result['steps']}-step run scoring {result['held_out']} held-out documents at each of its"
            f" {result['saves']} saves / the same run without (median of rounds)",
            "goal": f"≤ x{goals['overhead']:g}",
            "measured": ratio(at_save["median_ratio"], 3),
            "met": at_save["median_ratio"] <= goals["overhead"],
            "why": "The generation itself: each save answers every held-out document (32 new tokens each); the"
            " metrics and the records of 32 examples add little. Section 13 gives each round.",
        },
    ]


def evaluation_section(result: dict[str, Any]) -> list[str]:
    batched, at_save = result["batched"], result["at_save"]
    speed = [[arm, secs(value), ", ".join(f"{v:.3f}" for v in batched["loop_s"][arm])] for arm, value in
             batched["median_s"].items()]  # fmt: skip
    cost = [[arm, secs(value), ", ".join(f"{v:.2f}" for v in at_save["loop_s"][arm])] for arm, value in
            at_save["median_s"].items()]  # fmt: skip
    return [
        f"The tiny model, trained {result['steps']} steps with LoRA r=8 on {result['held_out'] * 4} question / answer"
        f" documents, {result['held_out']} of them held out (`_fold: valid`). Batched: our `Scorer` on the run's"
        f" last checkpoint (batch {result['batch']}, {result['new_tokens']} new tokens, greedy; exact_match,"
        " rouge_l and chrf scored) against a loop of one `model.generate` per document on the same loaded"
        f" checkpoint; {result['rounds']} rounds after a warm-up, arms alternated.",
        "",
        *table(["arm", "median", "rounds (s)"], speed),
        f"Speedup {ratio(batched['speedup'], 2)}; {batched['same_answers']} of {batched['documents']} answers are"
        " the same in both arms (left padding with the attention mask changes nothing in greedy decoding here).",
        "",
        f"At each save: the same {result['steps']}-step run ({result['saves']} saves, each with its loss evaluation)"
        " with and without `eval_generate` scoring the held-out documents at each save. loop: `train_runtime`.",
        "",
        *table(["arm", "median", "rounds (s)"], cost),
        f"With / without: {ratio(at_save['median_ratio'], 3)} (median of the rounds' ratios).",
    ]
