"""Evaluation by generation (``eval_generate``, ``%llm_eval``): how fast it scores, and what it adds
to training.

batched: our ``Scorer`` (greedy generation in batches, left-padded, then every metric) against the
plain loop a user writes, one ``model.generate`` per held-out document, on the same checkpoint and
documents; it also says how many answers are the same.

at each save: a run that scores its held-out documents at each of its saves against the same run
without ``eval_generate`` (both evaluate their loss at each save). loop: the trainer's own
``train_runtime``, the arms alternated, their order rotated each round.

    python benchmarks/evaluation.py [--held-out 32] [--batch 8] [--steps 300] [--rounds 3] [--threads 1] [--json]
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from workload import common_options, emit, interleaved, median, quiet, ratio, tiny, use_threads, workdir

GOAL_SPEEDUP = 3.0
GOAL_OVERHEAD = 1.10
TEMPLATE = "Q: {prompt}\nA:"
METRICS = ["exact_match", "rouge_l", "chrf"]


def documents(held_out: int) -> list[dict[str, Any]]:
    """Questions and answers; the first ``held_out`` marked _fold: valid (asked again in training)."""
    return [
        {"q": f"what is {i % held_out} plus {i % 7}?", "a": f" it is {i % held_out + i % 7}", "_fold": "valid"}
        if i < held_out
        else {"q": f"what is {i % held_out} plus {i % 7}?", "a": f" it is {i % held_out + i % 7}", "_fold": "train"}
        for i in range(held_out * 4)
    ]


def config(steps: int, saves: int, scored: bool, held_out: int, batch: int, new_tokens: int) -> Any:
    from llm_magics import LLMTrainingConfiguration

    every = max(1, steps // saves)
    block = {"metrics": METRICS, "limit": held_out, "batch_size": batch, "max_new_tokens": new_tokens}
    return LLMTrainingConfiguration(
        data="qa",
        prompt="q",
        response="a",
        prompt_template=TEMPLATE,
        max_steps=steps,
        save_steps=every,
        eval_steps=every,
        eval_strategy="steps",
        per_device_train_batch_size=8,
        learning_rate=5e-3,
        lora_r=8,
        max_length=64,
        logging_steps=1,
        seed=42,
        **({"eval_generate": block} if scored else {}),
    )


def plain_loop(model: Any, tokenizer: Any, prompts: list[str], new_tokens: int) -> list[str]:
    """What a user writes: one greedy ``generate`` per prompt."""
    import torch

    answers = []
    for prompt in prompts:
        ids = tokenizer(TEMPLATE.replace("{prompt}", prompt), return_tensors="pt", add_special_tokens=False)
        with torch.inference_mode():
            out = model.generate(**ids, max_new_tokens=new_tokens, do_sample=False, pad_token_id=tokenizer.pad_token_id)
        answers.append(tokenizer.decode(out[0, ids["input_ids"].shape[1] :], skip_special_tokens=True))
    return answers


def batched(db: Any, name: str, held_out: int, batch: int, new_tokens: int, rounds: int) -> dict[str, Any]:
    """Our scorer against the plain loop, on the run's last checkpoint and its held-out documents."""
    from llm_magics.config.eval_generate import parse
    from llm_magics.eval.on_demand import run_examples
    from llm_magics.eval.scorer import Scorer, eval_job
    from llm_magics.models.checkpoint import checkpoint_model
    from llm_magics.models.loader import load_cached

    record = db.store.checkpoint(name, "latest")
    block = parse({"metrics": METRICS, "limit": held_out, "batch_size": batch, "max_new_tokens": new_tokens})
    job = eval_job(block, run_examples(db, record["run"], block), {})
    stored = checkpoint_model(db, name, record)
    loaded = load_cached(db.model_cache, stored.base)
    prompts = [e["prompt"] for e in job.examples]
    results: dict[str, list[str]] = {}

    def ours() -> float:
        started = time.perf_counter()
        with loaded.using(stored.adapter) as model:
            scored = Scorer(job)(model, loaded.tokenizer, stored.template)
        results["ours"] = [row["prediction"] for row in scored.rows]
        return time.perf_counter() - started

    def plain() -> float:
        started = time.perf_counter()
        with loaded.using(stored.adapter) as model:
            results["plain"] = plain_loop(model, loaded.tokenizer, prompts, new_tokens)
        return time.perf_counter() - started

    arms = {"plain loop": plain, "scorer (batched)": ours}
    for arm in arms.values():
        arm()  # warm-up
    times = interleaved(arms, rounds)
    same = sum(a == b for a, b in zip(results["ours"], results["plain"], strict=True))
    return {
        "documents": len(prompts),
        "loop_s": times,
        "median_s": {arm: median(values) for arm, values in times.items()},
        "speedup": ratio(median(times["plain loop"]), median(times["scorer (batched)"])),
        "same_answers": same,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--held-out", type=int, default=32)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--saves", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    common_options(parser)
    options = parser.parse_args(argv)
    use_threads(options.threads)
    quiet()
    root = workdir("evaluation")
    base = tiny(root)
    from llm_magics import LLM, connect

    db = connect("mongomock://bench-evaluation")
    db["qa"].insert_many(documents(options.held_out))
    shape = (options.held_out, options.batch, options.new_tokens)

    def fit(scored: bool) -> float:
        run = LLM("bench-eval", base).fit(configuration=config(options.steps, options.saves, scored, *shape), db=db)
        return run.record["summary"]["train_runtime"]

    arms = {"without eval_generate": lambda: fit(False), "with eval_generate": lambda: fit(True)}
    for arm in arms.values():
        arm()  # warm-up
    times = interleaved(arms, options.rounds)
    per_round = [ratio(w, o) for w, o in zip(times["with eval_generate"], times["without eval_generate"], strict=True)]
    result = {
        "held_out": options.held_out,
        "batch": options.batch,
        "new_tokens": options.new_tokens,
        "steps": options.steps,
        "saves": options.saves,
        "rounds": options.rounds,
        "goals": {"speedup": GOAL_SPEEDUP, "overhead": GOAL_OVERHEAD},
        "batched": batched(db, "bench-eval", *shape, options.rounds),
        "at_save": {
            "loop_s": times,
            "median_s": {arm: median(values) for arm, values in times.items()},
            "median_ratio": median(per_round),
        },
    }
    return emit(result, options.json, show)


def show(result: dict[str, Any]) -> None:
    b, s = result["batched"], result["at_save"]
    print(f"{b['documents']} held-out documents, batch {result['batch']}, {result['new_tokens']} new tokens")
    print("| arm | median | |\n|---|---|---|")
    for arm, value in b["median_s"].items():
        print(f"| {arm} | {value:.2f} s | |")
    print(f"speedup x{b['speedup']:.2f} (goal >= {result['goals']['speedup']}); same answers {b['same_answers']}")
    print(f"{result['steps']} steps, {result['saves']} saves, {result['rounds']} rounds")
    for arm, value in s["median_s"].items():
        print(f"| {arm} | {value:.2f} s |")
    print(f"with / without: x{s['median_ratio']:.3f} (goal <= {result['goals']['overhead']})")


if __name__ == "__main__":
    main()
