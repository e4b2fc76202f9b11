"""A sweep on Ray Tune (``sweep:`` in the cell) against the same trials run one after another in
the kernel.

A 2 x 2 grid (two learning rates, two LoRA ranks) of the tiny model, every trial the same number of
steps; the sweep without a scheduler (so both arms train the same steps), two trials at a time
on the machine's two CPUs. Measured from the moment the cell starts:

- return: the cell gives the notebook back;
- first step: the sweep view shows a trial's first step (Ray's start, a trial's actor starting,
  loading the model, one step);
- done: every trial has ended and its records are written.

The kernel arm runs the four configurations as four blocking cells, one after another.

    python benchmarks/sweep.py [--steps 100] [--threads 1] [--json]
"""

from __future__ import annotations

import argparse
import os
import time
import uuid
from pathlib import Path
from typing import Any

from workload import documents, emit, quiet, ratio, tiny, workdir

POLL = 0.05
GRID = {"learning_rate": [1e-3, 5e-3], "lora_r": [4, 8]}


def body(base: str, root: Path, steps: int, name: str) -> dict[str, Any]:
    return {
        "model": base,
        "data": "docs",
        "max_steps": steps,
        "save_steps": steps,
        "eval_strategy": "steps",
        "eval_steps": max(1, steps // 4),
        "per_device_train_batch_size": 4,
        "logging_steps": 1,
        "max_length": 64,
        "output_dir": str(root / name),
    }


def sweep_arm(db: Any, base: str, root: Path, steps: int) -> dict[str, float]:
    from IPython.utils.capture import capture_output

    from llm_magics import commands

    name = f"sweep-{uuid.uuid4().hex[:6]}"
    mapping = {**body(base, root, steps, name), "sweep": {**GRID, "scheduler": "none", "max_concurrent_trials": 2}}
    started = time.perf_counter()
    with capture_output():
        handle = commands.finetune(db, name, mapping)
        marks = {"return_s": time.perf_counter() - started}
        while handle.control is not None and not handle.control.done.is_set():
            if "first_step_s" not in marks and any(run.state.step > 0 for run in handle.runs):
                marks["first_step_s"] = time.perf_counter() - started
            time.sleep(POLL)
    marks["done_s"] = time.perf_counter() - started
    statuses = [run.status for run in handle.runs]
    if statuses != ["completed"] * 4:
        raise RuntimeError(f"sweep {handle.id}: {statuses}")
    return marks


def kernel_arm(db: Any, base: str, root: Path, steps: int) -> dict[str, float]:
    from IPython.utils.capture import capture_output

    from llm_magics import commands

    started = time.perf_counter()
    with capture_output():
        for learning_rate in GRID["learning_rate"]:
            for rank in GRID["lora_r"]:
                name = f"seq-{uuid.uuid4().hex[:6]}"
                mapping = {**body(base, root, steps, name), "learning_rate": learning_rate, "lora_r": rank}
                run = commands.finetune(db, name, mapping)
                if run.status != "completed":
                    raise RuntimeError(f"run {run.id}: {run.status} {run.error}")
    return {"done_s": time.perf_counter() - started}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--threads", type=int, default=None, help="torch threads in the kernel and each trial")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    if args.threads:
        os.environ["OMP_NUM_THREADS"] = str(args.threads)  # Ray's workers inherit it
        import torch

        torch.set_num_threads(args.threads)
    from llm_magics import commands, connect

    root = workdir("sweep")
    quiet()
    base = tiny(root)
    db = connect(f"mongomock://bench-{uuid.uuid4().hex[:6]}")
    db["docs"].insert_many(documents(256))
    commands.finetune(db, "warm-up", body(base, root, 3, "warm-up"))  # imports, first load
    kernel = kernel_arm(db, base, root, args.steps)
    sweep = sweep_arm(db, base, root, args.steps)
    result = {
        "steps": args.steps,
        "trials": 4,
        "kernel": kernel,
        "sweep": sweep,
        "sweep / kernel": ratio(sweep["done_s"], kernel["done_s"]),
    }
    return emit(result, args.json, show)


def show(result: dict[str, Any]) -> None:
    sweep, kernel = result["sweep"], result["kernel"]
    print(f"4 runs one after another in the kernel: {kernel['done_s']:.1f} s")
    print(
        f"the sweep: cell returns {sweep['return_s']:.2f} s, first step shown {sweep['first_step_s']:.1f} s,"
        f" done {sweep['done_s']:.1f} s (x{result['sweep / kernel']:.2f})"
    )


if __name__ == "__main__":
    main()
