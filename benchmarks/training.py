"""Training overhead: ``llm.fit`` and ``%%llm_finetune`` against a plain trl ``SFTTrainer`` script.

The three arms train the same tiny model on the same documents of one database, with the same
steps, LoRA settings, batch size, learning rate, logging_steps, saves and seed. The script checks
that they see the same token ids and get the same trainer arguments, and reports any difference.

- plain trl: AutoTokenizer + AutoModelForCausalLM + ``Dataset.from_list(list(collection.find()))``
  + ``SFTTrainer(peft_config=LoraConfig(...))``; it prints nothing (PrinterCallback removed);
- llm.fit: ``LLM(...).fit(select=..., db=...)``, metrics logged to the database (log_to_db), on
  ``mongomock://`` and on the embedded default store (``embedded://DIR``, SQLite);
- %%llm_finetune: the cell in an IPython InteractiveShell (``mongomock://``), with its live view.

loop: the trainer's own ``train_runtime`` (the training loop, checkpoint saves included); call:
the whole call, from the documents in the database to the adapter on disk and the run recorded.
The arms alternate, their order rotated each round, after one short warm-up run each; reported
are the ratio of the medians and the median of each round's ratio (the goal is checked on it).

    python benchmarks/training.py [--steps 200] [--rounds 9] [--threads 1] [--json]

hooks_us: our callback, recorder and live view alone, fed a logged step's events (no
training): the part of a step that is ours, without the noise of timing whole runs.
"""

from __future__ import annotations

import argparse
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from workload import documents, emit, interleaved, median, quiet, ratio, tiny, workdir

GOAL = 1.03  # ratio of the training-loop times
PER_STEP = "a step: callback, recorder and live state"
PER_STEP_VIEW = "a step, the live view listening too"
PER_RENDER = "a live view render, 5000 steps logged"
PER_ROW = "a logged row written to the store ({store}, in a batch)"


@dataclass
class Bench:
    """The shared setup of the arms."""

    base: str
    db: Any
    embedded: Any
    shell: Any
    root: Path
    settings: dict[str, Any]

    def output_dir(self, arm: str) -> str:
        return str(self.root / arm / uuid.uuid4().hex[:6])

    def config(self, steps: int, arm: str) -> Any:
        from llm_magics import LLMTrainingConfiguration

        return LLMTrainingConfiguration(**self.settings, max_steps=steps, output_dir=self.output_dir(arm))


def plain_trl(bench: Bench, steps: int, with_ids: bool = False) -> dict[str, Any]:
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.trainer_callback import PrinterCallback
    from trl import SFTTrainer

    _seed(bench)
    started = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(bench.base)
    model = AutoModelForCausalLM.from_pretrained(bench.base)
    rows = list(bench.db["docs"].find({}, {"_id": 0, "text": 1}))
    trainer = SFTTrainer(
        model=model,
        args=plain_arguments(bench, steps),
        train_dataset=Dataset.from_list(rows),
        processing_class=tokenizer,
        peft_config=plain_lora(bench.settings),
    )
    trainer.remove_callback(PrinterCallback)
    metrics = trainer.train().metrics
    result = _result(metrics, time.perf_counter() - started)
    if with_ids:
        result["input_ids"] = trainer.train_dataset["input_ids"]
    return result


def plain_arguments(bench: Bench, steps: int) -> Any:
    """The SFTConfig a plain script writes for the same run."""
    import torch
    from trl import SFTConfig

    s, cuda = bench.settings, torch.cuda.is_available()
    bf16 = cuda and torch.cuda.is_bf16_supported()  # what llm_magics resolves bf16: null to
    return SFTConfig(
        output_dir=bench.output_dir("plain"),
        max_steps=steps,
        save_steps=s["save_steps"],
        per_device_train_batch_size=s["per_device_train_batch_size"],
        learning_rate=s["learning_rate"],
        logging_steps=s["logging_steps"],
        max_length=s["max_length"],
        seed=s["seed"],
        report_to="none",
        disable_tqdm=True,
        activation_checkpointing=False,
        use_cpu=not cuda,
        dataloader_pin_memory=cuda,
        bf16=bf16,
    )


def plain_lora(settings: dict[str, Any]) -> Any:
    from peft import LoraConfig

    return LoraConfig(
        r=settings["lora_r"],
        lora_alpha=settings["lora_alpha"],
        lora_dropout=settings["lora_dropout"],
        target_modules="all-linear",
        task_type="CAUSAL_LM",
    )


def llm_fit(bench: Bench, steps: int, db: Any) -> dict[str, Any]:
    from llm_magics import LLM

    config = bench.config(steps, "fit")
    _seed(bench)
    started = time.perf_counter()
    run = LLM("bench-fit", bench.base).fit(select="docs", db=db, configuration=config)
    return _result(run.record["summary"], time.perf_counter() - started)


def magic_cell(bench: Bench, steps: int) -> dict[str, Any]:
    from IPython.utils.capture import capture_output

    from llm_magics.widgets.progress import TrainingView

    values = {**bench.settings, "model": bench.base, "data": "docs", "max_steps": steps}
    body = "\n".join(f"{key}: {value}" for key, value in values.items())
    body += f"\noutput_dir: {bench.output_dir('magic')}"
    _seed(bench)
    started = time.perf_counter()
    with capture_output():
        outcome = bench.shell.run_cell(f"%%llm_finetune bench-magic -o run\n{body}")
    elapsed = time.perf_counter() - started
    outcome.raise_error()
    run = bench.shell.user_ns["run"]
    views = [getattr(f, "__self__", None) for f in run.state.listeners]
    result = _result(run.record["summary"], elapsed)
    result["view_renders"] = sum(view.renders for view in views if isinstance(view, TrainingView))
    return result


def _seed(bench: Bench) -> None:
    # LoRA weights are drawn before the trainer seeds itself: every arm starts from one state
    from transformers import set_seed

    set_seed(bench.settings["seed"])


def _result(metrics: dict[str, Any], call_s: float) -> dict[str, Any]:
    return {"loop_s": metrics["train_runtime"], "call_s": call_s, "train_loss": metrics["train_loss"]}


def checks(bench: Bench) -> dict[str, Any]:
    """Both sides get the same token ids and the same trainer arguments (differences listed)."""
    from llm_magics.data.training_set import build
    from llm_magics.models.loader import load_tokenizer

    config = bench.config(2, "check").replace(data="docs", model=bench.base)
    ours = build(bench.db, config.data_keys(), load_tokenizer(bench.base)).train["input_ids"]
    plain = plain_trl(bench, 2, with_ids=True)["input_ids"]
    ours_args = config.training_arguments(
        output_dir="x", save_total_limit=None, report_to="none", disable_tqdm=True, activation_checkpointing_kwargs=None
    ).to_dict()
    plain_args = plain_arguments(bench, 2).to_dict()
    ignored = {"output_dir", "logging_dir"}
    differ = {
        key: [ours_args.get(key), plain_args.get(key)]
        for key in sorted(ours_args.keys() | plain_args.keys())
        if key not in ignored and ours_args.get(key) != plain_args.get(key)
    }
    return {"same_token_ids": ours == plain, "documents": len(ours), "argument_differences": differ}


def setup(args: argparse.Namespace) -> Bench:
    from IPython.core.interactiveshell import InteractiveShell

    from llm_magics import connect

    root = workdir("training")
    quiet()
    base = tiny(root)
    db = connect(f"mongomock://bench-{uuid.uuid4().hex[:6]}")
    embedded = connect(f"embedded://{root / 'store'}")
    for each in (db, embedded):
        each["docs"].insert_many(documents(args.docs))
    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "llm_magics")
    shell.run_line_magic("llm_db", db.uri)
    settings = {
        "save_steps": args.save_steps or args.steps // 2,
        "per_device_train_batch_size": args.batch_size,
        "learning_rate": 2e-4,
        "logging_steps": 1,
        "max_length": 64,
        "lora_r": 8,
        "lora_alpha": 16,
        "lora_dropout": 0.05,
        "seed": 42,
    }
    return Bench(base, db, embedded, shell, root, settings)


def summarize(runs: dict[str, list[dict[str, Any]]], steps: int) -> dict[str, Any]:
    arms = {
        name: {
            "loop_s": [r["loop_s"] for r in results],
            "call_s": [r["call_s"] for r in results],
            "loop_median_s": median(r["loop_s"] for r in results),
            "call_median_s": median(r["call_s"] for r in results),
            "train_loss": [r["train_loss"] for r in results],
            **({"view_renders": [r["view_renders"] for r in results]} if "view_renders" in results[0] else {}),
        }
        for name, results in runs.items()
    }
    plain = arms["plain trl"]
    ratios = {
        f"{name} / plain trl": {
            "loop": ratio(arm["loop_median_s"], plain["loop_median_s"]),
            "call": ratio(arm["call_median_s"], plain["call_median_s"]),
            # each round's arms ran back to back: their ratio is less exposed to a change of load
            "loop_per_round": [a / p for a, p in zip(arm["loop_s"], plain["loop_s"], strict=True)],
            "loop_extra_ms_per_step": (arm["loop_median_s"] - plain["loop_median_s"]) / steps * 1000,
        }
        for name, arm in arms.items()
        if name != "plain trl"
    }
    for r in ratios.values():
        r["loop_median_of_rounds"] = median(r["loop_per_round"])
    return {"arms": arms, "ratios": ratios}


def hook_cost(root: Path, steps: int = 5000) -> dict[str, float]:
    """Microseconds of our trainer hooks alone, fed the events of logged steps (no training): per
    step (callback -> recorder -> live state, and the live view), per render of the view, and per
    logged row written to the store (rows are written in batches, every 2 s of training)."""
    from llm_magics import connect

    costs = {}
    for case in (PER_STEP, PER_STEP_VIEW):
        db = connect(f"mongomock://hooks-{uuid.uuid4().hex[:6]}")
        costs[case], _, view = _feed(db, steps, with_view=case == PER_STEP_VIEW)
    started = time.perf_counter()
    for _ in range(20):
        view.render()  # throttled to one per update_interval (0.5 s), not one per step
    costs[PER_RENDER] = (time.perf_counter() - started) / 20 * 1e6
    for store, db in (("mongomock", connect("mongomock://hooks-rows")), ("embedded", connect(f"embedded://{root}"))):
        _, recorder, _ = _feed(db, steps, with_view=False)
        started = time.perf_counter()
        recorder.flush()
        costs[PER_ROW.format(store=store)] = (time.perf_counter() - started) / steps * 1e6
    return costs


def _feed(db: Any, steps: int, with_view: bool) -> tuple[float, Any, Any]:
    """Feeds a callback the events of ``steps`` logged steps, with the rows left unwritten; returns
    microseconds per step, the recorder and the view."""
    from types import SimpleNamespace

    from transformers import TrainerControl, TrainerState

    from llm_magics.runs.run import Control, Run, RunState
    from llm_magics.training.callbacks import ProgressCallback
    from llm_magics.training.recorder import Recorder
    from llm_magics.widgets.progress import TrainingView

    run_id = uuid.uuid4().hex[:8]
    db.store.add_run({"_id": run_id, "model": "m", "status": "starting", "started": None})
    run = Run(db, run_id, RunState(run_id, "m", "kernel"), Control())
    view = TrainingView(run, update_interval=0.5) if with_view else None
    recorder = Recorder(db.store, run.state, flush_interval=float("inf"))
    callback = ProgressCallback(recorder)
    args = SimpleNamespace(
        num_train_epochs=1, eval_strategy="no", train_batch_size=8, gradient_accumulation_steps=1, world_size=1
    )
    control = TrainerControl()
    state = TrainerState(max_steps=steps + 1, is_world_process_zero=True)
    callback.on_train_begin(args, state, control)
    started = time.perf_counter()
    for step in range(1, steps + 1):
        callback.on_step_begin(args, state, control)
        state.global_step, state.epoch = step, step / 100
        callback.on_step_end(args, state, control)
        logs = {"loss": 1.0, "grad_norm": 0.5, "learning_rate": 1e-4, "num_tokens": 64.0 * step, "epoch": step / 100}
        callback.on_log(args, state, control, logs=logs)
    elapsed = (time.perf_counter() - started) / steps * 1e6
    callback.on_step_begin(args, state, control)  # the last row joins the buffer
    run.finished()
    return elapsed, recorder, view


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--docs", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--save-steps", type=int, default=None, help="default: half the steps (two saves)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own choice)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)

    bench = setup(args)
    arms = {
        "plain trl": lambda steps: plain_trl(bench, steps),
        "llm.fit": lambda steps: llm_fit(bench, steps, bench.db),
        "llm.fit, embedded store": lambda steps: llm_fit(bench, steps, bench.embedded),
        "%%llm_finetune": lambda steps: magic_cell(bench, steps),
    }
    checked = checks(bench)
    interleaved({name: lambda arm=arm: arm(3) for name, arm in arms.items()}, 1)  # warm-up
    runs = interleaved({name: lambda arm=arm: arm(args.steps) for name, arm in arms.items()}, args.rounds)
    result = {
        "steps": args.steps,
        "rounds": args.rounds,
        "documents": args.docs,
        "settings": bench.settings,
        "goal_loop_ratio": GOAL,
        **checked,
        **summarize(runs, args.steps),
        "hooks_us": hook_cost(bench.root / "hooks-store"),
    }
    return emit(result, args.json, show)


def show(result: dict[str, Any]) -> None:
    print(f"{result['steps']} steps, {result['rounds']} rounds; same token ids: {result['same_token_ids']}")
    print(f"trainer arguments that differ (ours, plain): {result['argument_differences'] or 'none'}")
    for name, arm in result["arms"].items():
        print(f"{name:<24} loop {arm['loop_median_s']:8.2f} s   call {arm['call_median_s']:8.2f} s")
    for name, r in result["ratios"].items():
        print(f"{name:<36} loop x{r['loop']:.3f}   call x{r['call']:.3f}   (goal loop <= {GOAL})")
    for name, cost in result["hooks_us"].items():
        print(f"hooks alone, {name:<48} {cost:10.1f} us")


if __name__ == "__main__":
    main()
