"""The live view on against off: the same ``llm.fit`` run with and without a ``TrainingView`` listening.

Both arms train the tiny model (one layer, hidden size 16, so that a step is short and any cost of
the view shows) on the same documents of one database, with the same settings and seed. The "view
on" arm builds the view the way ``%%llm_finetune`` does (``on_start``, the magic's default
``update_interval`` of 0.5 s): every step tells it the state changed, and it renders (HTML, loss
curve, widget state) at most once per interval. There is no kernel, so the widget messages are
built but sent nowhere.

Two times of the training loop: wall (the trainer's ``train_runtime``) and CPU (the process's CPU
time, all threads, from the first step to the end of the run, which includes the view's renders
wherever they run). Other processes sharing the machine stretch the wall time of a run by tens of
percent, its CPU time less (though still, where they share a core's caches). The arms alternate, their
order rotated each round, after one short warm-up run each. Reported for both times: each arm's
median, the ratio of the medians and the median of each round's ratio (the goal, <= 1.03, is checked
on the CPU time's); and the view's renders per second of training.

view_alone: the view's own work timed without training (best of repeats, the least disturbed by
other processes): a step's notification, a render with the run's history, and what they come to
at the measured pace (steps and renders per second) as a share of the loop.

    python benchmarks/view_overhead.py [--steps 500] [--rounds 15] [--threads 1] [--json]
"""

from __future__ import annotations

import argparse
import time
import uuid
from pathlib import Path
from typing import Any

from workload import common_options, documents, emit, interleaved, median, quiet, tiny, use_threads, workdir

GOAL = 1.03  # ratio of the training-loop times, view on / view off
UPDATE_INTERVAL = 0.5  # LLMMagics.update_interval's default
SHAPE = {"hidden_size": 16, "layers": 1, "heads": 2}


def settings(steps: int) -> dict[str, Any]:
    return {
        "max_steps": steps,
        "save_steps": steps,  # one save, at the end, in both arms
        "per_device_train_batch_size": 1,
        "max_length": 8,
        "lora_r": 1,
        "logging_steps": 1,
        "seed": 42,
    }


def fit(base: str, db: Any, root: Path, steps: int, view: bool) -> dict[str, Any]:
    from transformers import set_seed

    from llm_magics import LLM, LLMTrainingConfiguration
    from llm_magics.store.records import FINAL
    from llm_magics.widgets.progress import TrainingView

    views: list[TrainingView] = []
    cpu: dict[str, float] = {}

    def clock(state: Any) -> None:
        if "first step" not in cpu and state.step >= 1:
            cpu["first step"] = time.process_time()
        if state.status in FINAL:
            cpu["end"] = time.process_time()

    def start(run: Any) -> None:
        if view:
            views.append(TrainingView(run, update_interval=UPDATE_INTERVAL))
        run.state.listeners.append(clock)  # after the view's: the end includes its last render

    config = LLMTrainingConfiguration(**settings(steps), output_dir=str(root / uuid.uuid4().hex[:6]))
    set_seed(42)  # LoRA weights are drawn before the trainer seeds itself
    run = LLM("bench-view", base).fit(select="docs", db=db, configuration=config, on_start=start)
    summary = run.record["summary"]
    return {
        "loop_s": summary["train_runtime"],
        "cpu_s": cpu["end"] - cpu["first step"],
        "train_loss": summary["train_loss"],
        "renders": views[0].renders if views else 0,
    }


def view_alone(steps: int, repeats: int = 5) -> dict[str, float]:
    """Seconds of the view's work per step notified and per render, fed a run's steps without training."""
    from llm_magics.runs.run import Control, Run, RunState
    from llm_magics.widgets.progress import TrainingView

    per_step, per_render = [], []
    for _ in range(repeats):
        state = RunState("r", "m", "thread", status="running", total_steps=steps)
        view = TrainingView(Run(None, "r", state, Control()), update_interval=UPDATE_INTERVAL)
        started = time.perf_counter()
        for step in range(1, steps + 1):
            state.step = step
            # the chart's points of a trl run: the loss, the learning rate, the token accuracy
            state.history.append({"step": step, "loss": 1 / step, "learning_rate": 1e-4, "mean_token_accuracy": 0.5})
            state.changed()  # at most one render is due: it comes once the interval has passed
        per_step.append((time.perf_counter() - started) / steps)
        time.sleep(UPDATE_INTERVAL + 0.1)
        started = time.perf_counter()
        view.render()
        per_render.append(time.perf_counter() - started)
    return {"per_step_s": min(per_step), "per_render_s": min(per_render)}


def summarize(runs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    arms = {
        name: {
            **{key: [r[key] for r in results] for key in ("loop_s", "cpu_s", "train_loss", "renders")},
            "loop_median_s": median(r["loop_s"] for r in results),
            "cpu_median_s": median(r["cpu_s"] for r in results),
            "renders_per_s": median(r["renders"] / r["loop_s"] for r in results),
        }
        for name, results in runs.items()
    }
    on, off = arms["view on"], arms["view off"]
    ratios = {}
    for time_ in ("loop", "cpu"):
        # each round's arms ran back to back: their ratio is less exposed to a change of load
        per_round = [a / b for a, b in zip(on[f"{time_}_s"], off[f"{time_}_s"], strict=True)]
        ratios[time_] = {
            "of_medians": on[f"{time_}_median_s"] / off[f"{time_}_median_s"],
            "per_round": per_round,
            "median_of_rounds": median(per_round),
        }
    return {
        "arms": arms,
        "ratios": ratios,
        "same_train_loss": len({loss for arm in arms.values() for loss in arm["train_loss"]}) == 1,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=15)
    common_options(parser)
    args = parser.parse_args(argv)
    use_threads(args.threads)

    from llm_magics import connect

    root = workdir("view")
    quiet()
    base = tiny(root, **SHAPE)
    db = connect(f"mongomock://bench-{uuid.uuid4().hex[:6]}")
    db["docs"].insert_many(documents(64))
    arms = {"view off": False, "view on": True}
    interleaved({name: lambda view=view: fit(base, db, root, 5, view) for name, view in arms.items()}, 1)  # warm-up
    runs = interleaved(
        {name: lambda view=view: fit(base, db, root, args.steps, view) for name, view in arms.items()}, args.rounds
    )
    result = {
        "steps": args.steps,
        "rounds": args.rounds,
        "shape": SHAPE,
        "settings": settings(args.steps),
        "update_interval_s": UPDATE_INTERVAL,
        "goal": GOAL,
        **summarize(runs),
    }
    alone = view_alone(args.steps)
    on, off = result["arms"]["view on"], result["arms"]["view off"]
    view_s = alone["per_step_s"] * args.steps + alone["per_render_s"] * median(on["renders"])
    result["view_alone"] = {**alone, "share_of_loop": view_s / off["loop_median_s"]}
    return emit(result, args.json, show)


def show(result: dict[str, Any]) -> None:
    print(f"{result['steps']} steps, {result['rounds']} rounds; same train loss: {result['same_train_loss']}")
    for name, arm in result["arms"].items():
        print(
            f"{name:<9} loop {arm['loop_median_s']:6.2f} s, CPU {arm['cpu_median_s']:6.2f} s (medians);"
            f" renders/s {arm['renders_per_s']:.2f}"
        )
    for name, r in result["ratios"].items():
        print(f"view on / off, {name}: x{r['median_of_rounds']:.3f} (median of rounds), x{r['of_medians']:.3f}")
    alone = result["view_alone"]
    print(
        f"the view alone: {alone['per_step_s'] * 1e6:.1f} us a step, {alone['per_render_s'] * 1e3:.2f} ms a render,"
        f" {alone['share_of_loop']:.2%} of the loop; goal: cpu <= {GOAL}"
    )


if __name__ == "__main__":
    main()
