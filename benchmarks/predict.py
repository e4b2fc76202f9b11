"""Prediction overhead: ``llm.predict`` and ``%llm_predict`` against ``model.generate``, and a
checkpoint switch against a full reload.

A short run of the tiny model saves a checkpoint at every step. Then, warm (each arm called once
before timing), on the same PeftModel (the one llm_magics keeps loaded for the magics' database
handle) and the same token ids:

- generate: tokenize, ``model.generate`` (greedy), decode: what a plain script does;
- llm.predict: ``db.load("model", NAME).predict(prompt, max_new_tokens=N)``;
- %llm_predict: ``%llm_predict NAME "prompt" --max-new-tokens N`` in an IPython InteractiveShell.

The tiny model's generation config sets ``min_new_tokens`` to N, so every arm generates exactly
N tokens; the answers are checked to be the same. The arms alternate, their order rotated each
round; medians are reported.

Checkpoint switch: ``db.load("model", NAME, checkpoint=STEP).predict(...)`` of a checkpoint not
used before (its adapter loaded onto the base already in memory), and of one used before,
against a full reload: ``AutoModelForCausalLM.from_pretrained`` + ``PeftModel.from_pretrained``
+ generate; each answers with one token (``--switch-tokens``), so that the switch, not the
generation, is what is timed. On the tiny model and on a larger random one (768x12, about 85M
parameters), since the time a reload takes grows with the base model.

    python benchmarks/predict.py [--calls 50] [--max-new-tokens 64] [--threads 1] [--json]
"""

from __future__ import annotations

import argparse
import contextlib
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from workload import common_options, documents, emit, interleaved, median, quiet, ratio, tiny, use_threads, workdir

from llm_magics.models.loader import load_cached

GOAL = 1.05  # ratio of warm prediction times
PROMPT = "### Human: what does the model learn from? ### Assistant:"
NAME = "bench-predict"
# the tiny model, and a larger one (about 85M parameters) whose load takes long enough to show
# what a switch saves
SHAPES = {"tiny": {}, "768x12": {"hidden_size": 768, "layers": 12, "heads": 12}}


def setup(args: argparse.Namespace, root: Path, shape: str) -> tuple[Any, str]:
    """A random model of ``shape`` trained for a few steps, with a checkpoint at each step."""
    from transformers import GenerationConfig

    from llm_magics import LLM, LLMTrainingConfiguration, connect

    base = tiny(root / shape, **SHAPES[shape])
    generation = GenerationConfig.from_pretrained(base)
    generation.min_new_tokens = args.max_new_tokens
    generation.save_pretrained(base)
    db = connect(f"mongomock://bench-{uuid.uuid4().hex[:6]}")
    db["docs"].insert_many(documents(64))
    config = LLMTrainingConfiguration(
        max_steps=args.checkpoints,
        save_steps=1,
        per_device_train_batch_size=2,
        max_length=64,
        output_dir=str(root / shape / "out"),
    )
    LLM(NAME, base).fit(select="docs", db=db, configuration=config)
    return db, base


def generate_arm(db: Any, tokens: int) -> Any:
    """A plain tokenize / generate / decode on the model llm_magics keeps loaded."""
    llm = db.load("model", NAME)
    llm.predict(PROMPT, max_new_tokens=tokens)  # loads the base and activates the latest adapter
    loaded = load_cached(db.model_cache, llm.base())
    model, tokenizer = loaded.model, loaded.tokenizer

    def call() -> str:
        return plain_generate(model, tokenizer, max_new_tokens=tokens)

    return call


def timed(call: Any) -> dict[str, Any]:
    started = time.perf_counter()
    answer = call()
    return {"s": time.perf_counter() - started, "answer": answer}


def warm_predictions(db: Any, args: argparse.Namespace) -> dict[str, Any]:
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "llm_magics")
    db = shell.run_line_magic("llm_db", db.uri)  # the magics' handle: every arm uses its loaded model
    llm = db.load("model", NAME)
    tokens = args.max_new_tokens
    calls = {
        "generate": generate_arm(db, tokens),
        "llm.predict": lambda: llm.predict(PROMPT, max_new_tokens=tokens),
        "%llm_predict": lambda: shell.run_line_magic("llm_predict", f'{NAME} "{PROMPT}" --max-new-tokens {tokens}'),
    }
    interleaved({name: lambda c=call: timed(c) for name, call in calls.items()}, 1)  # warm-up
    runs = interleaved({name: lambda c=call: timed(c) for name, call in calls.items()}, args.calls)
    arms = {name: {"median_s": median(r["s"] for r in results)} for name, results in runs.items()}
    plain = arms["generate"]["median_s"]
    for arm in arms.values():
        arm["extra_ms_per_call"] = (arm["median_s"] - plain) * 1000
    answers = {r["answer"] for results in runs.values() for r in results}
    ours = [name for name in arms if name != "generate"]
    return {
        "per_call_parts_ms": per_call_parts(db, llm, {name: calls[name] for name in ours}),
        "arms": arms,
        "ratios": {f"{name} / generate": ratio(arms[name]["median_s"], plain) for name in ours},
        # a round's calls run back to back, within a fraction of a second: their ratio is not
        # moved by the machine's load drifting between rounds
        "paired_ratios": {
            f"{name} / generate": median(a["s"] / g["s"] for a, g in zip(runs[name], runs["generate"], strict=True))
            for name in ours
        },
        "same_answers": len(answers) == 1,
        "base_loads": db.model_cache.loads,
    }


def per_call_parts(db: Any, llm: Any, arms: dict[str, Any], calls: int = 50) -> dict[str, float]:
    """Milliseconds of the work llm_magics does on every warm call: all of it (``model.generate``
    replaced for the time by a stub that returns the prompt), and parts of it, each timed alone."""
    loaded = load_cached(db.model_cache, llm.base())
    model, active = loaded.model, next(reversed(loaded.adapters))

    def each(call: Any) -> float:
        started = time.perf_counter()
        for _ in range(calls):
            call()
        return (time.perf_counter() - started) / calls * 1000

    model.generate = lambda input_ids, **kwargs: input_ids
    try:
        parts = {f"all of {name} but model.generate": each(call) for name, call in arms.items()}
    finally:
        del model.generate
    return {
        **parts,
        "checkpoint record from the store (LLM.checkpoint_record)": each(llm.checkpoint_record),
        "activating the adapter that is already active (loader.Loaded._activate)": each(
            lambda: loaded._activate(loaded.adapters[active])
        ),
        "db.load('model', NAME) (what %llm_predict adds)": each(lambda: db.load("model", NAME)),
    }


def checkpoint_switch(db: Any, base: str, args: argparse.Namespace) -> dict[str, Any]:
    steps = sorted(c["step"] for c in db.show("checkpoint", NAME))
    tokens = {"max_new_tokens": args.switch_tokens, "min_new_tokens": args.switch_tokens}
    db.load("model", NAME).predict(PROMPT, **tokens)  # the base in memory, with the latest adapter
    loads_before = db.model_cache.loads

    def switch(step: int) -> float:
        return timed(lambda: db.load("model", NAME, checkpoint=step).predict(PROMPT, **tokens))["s"]

    parts: dict[str, list[float]] = {}
    with clocked(parts):
        first = [switch(step) for step in steps[:-1]]  # the latest is the one predicting already
    again = [switch(step) for step in steps[:-1] for _ in range(2)]
    records = {c["step"]: c for c in db.show("checkpoint", NAME)}
    reloads = [timed(lambda s=step: full_reload(base, records[s]["path"], tokens))["s"] for step in steps[:3]]
    result = {
        "checkpoints": len(steps),
        "first_use_median_s": median(first),
        "used_before_median_s": median(again),
        "full_reload_median_s": median(reloads),
        "base_loads_during_switches": db.model_cache.loads - loads_before,
        "adapters_kept_loaded": len(load_cached(db.model_cache, db.load("model", NAME).base()).adapters),
        "first_use_parts_median_s": {name: median(times) for name, times in parts.items()},
    }
    result["reload / first use"] = ratio(result["full_reload_median_s"], result["first_use_median_s"])
    result["reload / used before"] = ratio(result["full_reload_median_s"], result["used_before_median_s"])
    return result


@contextlib.contextmanager
def clocked(times: dict[str, list[float]]) -> Iterator[None]:
    """Times, while inside, the steps of a first switch that are not generation: peft's
    ``PeftModel.load_adapter`` and llm_magics' check of the checkpoint's files (sha256)."""
    import peft

    from llm_magics.api.database import llm as model  # the module whose LLM calls local_copy: it finds the timed one

    def timing(owner: Any, attribute: str, label: str) -> Any:
        original = getattr(owner, attribute)

        def timed_call(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                times.setdefault(label, []).append(time.perf_counter() - started)

        setattr(owner, attribute, timed_call)
        return original

    originals = [
        (peft.PeftModel, "load_adapter", timing(peft.PeftModel, "load_adapter", "peft load_adapter")),
        (model, "local_copy", timing(model, "local_copy", "sha256 check of the checkpoint's files")),
    ]
    try:
        yield
    finally:
        for owner, attribute, original in originals:
            setattr(owner, attribute, original)


def full_reload(base: str, adapter: str, tokens: dict[str, int]) -> str:
    """What a script without a model cache does to answer with another checkpoint."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base)
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), adapter).eval()
    return plain_generate(model, tokenizer, **tokens)


def plain_generate(model: Any, tokenizer: Any, **tokens: int) -> str:
    """Tokenize, greedy ``generate``, decode: what a script without llm_magics does."""
    import torch

    ids = tokenizer(PROMPT)["input_ids"]
    ids = ids[:-1] if ids[-1] == tokenizer.eos_token_id else ids  # as llm_magics does: the prompt is not over
    input_ids = torch.tensor([ids])
    with torch.inference_mode():
        output = model.generate(
            input_ids=input_ids,
            attention_mask=torch.ones_like(input_ids),
            do_sample=False,
            pad_token_id=tokenizer.pad_token_id,
            **tokens,
        )
    return tokenizer.decode(output[0, len(ids) :], skip_special_tokens=True)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=50, help="timed calls of each arm")
    parser.add_argument("--max-new-tokens", type=int, default=64, help="default: llm_magics' own default")
    parser.add_argument("--checkpoints", type=int, default=6, help="checkpoints of the trained run")
    parser.add_argument("--switch-tokens", type=int, default=1, help="tokens answered after a switch or reload")
    parser.add_argument(
        "--switch-shapes", default=",".join(SHAPES), help=f"models for the checkpoint switch, of {', '.join(SHAPES)}"
    )
    common_options(parser)
    args = parser.parse_args(argv)
    use_threads(args.threads)

    root = workdir("predict")
    quiet()
    db, base = setup(args, root, "tiny")
    result = {
        "calls": args.calls,
        "max_new_tokens": args.max_new_tokens,
        "goal_ratio": GOAL,
        "warm": warm_predictions(db, args),
        "switch": {},
    }
    for shape in args.switch_shapes.split(","):
        if shape != "tiny":
            db, base = setup(args, root, shape)
        result["switch"][shape] = checkpoint_switch(db, base, args)
    return emit(result, args.json, show)


def show(result: dict[str, Any]) -> None:
    warm = result["warm"]
    print(f"warm, {result['max_new_tokens']} new tokens, same answers: {warm['same_answers']}")
    for name, arm in warm["arms"].items():
        print(f"  {name:<14} {arm['median_s'] * 1000:8.1f} ms")
    for name, value in warm["ratios"].items():
        print(f"  {name:<26} x{value:.3f}, paired x{warm['paired_ratios'][name]:.3f}   (goal <= {GOAL})")
    for name, value in warm["per_call_parts_ms"].items():
        print(f"  per call: {name:<70} {value:6.2f} ms")
    for shape, switch in result["switch"].items():
        loads = switch["base_loads_during_switches"]
        print(f"checkpoint switch, {shape} ({switch['checkpoints']} checkpoints, base loads: {loads})")
        for key in ("first_use_median_s", "used_before_median_s", "full_reload_median_s"):
            print(f"  {key:<24} {switch[key] * 1000:8.1f} ms")
        print(f"  full reload: x{switch['reload / first use']:.1f} a first use, x{switch['reload / used before']:.1f}")
        for name, seconds in switch["first_use_parts_median_s"].items():
            print(f"  first use, of which {name}: {seconds * 1000:.1f} ms")


if __name__ == "__main__":
    main()
