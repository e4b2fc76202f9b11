"""Detached runs (``%%llm_finetune NAME --detach``): the same run in a process of its own against
the run blocking the kernel, and the cost of following a run through the store.

Both arms train the tiny model for the same steps on the same documents of the embedded store (a
detached run needs a store other processes open). Measured from the moment the cell starts:

- return: the cell gives the notebook back (a warm kernel: one run trained before);
- first step: the kernel's view of the run shows a step done (for the detached run: read from the
  store by the view, which looks every ``update_interval``; not measured for a blocking cell);
- done: the kernel sees the run ended, its records written;
- loop: the trainer's ``train_runtime``, in whichever process trained.

Following: a run's record and metrics are written by another connection (as a training process
does, one logged step at a time) and the view's look (``Follower.look``) is timed when the run is
at step 10 and at step 10,000; beside it, what a look would cost if it read the new metric rows
from the metrics collection instead of the run record's tail.

    python benchmarks/detached.py [--steps 100] [--rounds 2] [--threads 1] [--json]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import uuid
from pathlib import Path
from typing import Any

from workload import documents, emit, interleaved, median, quiet, ratio, tiny, workdir

POLL = 0.02
LOOKS = 200


def cell(base: str, root: Path, steps: int, flags: str) -> str:
    name = f"bench-{uuid.uuid4().hex[:6]}"
    body = {
        "model": base,
        "data": "docs",
        "max_steps": steps,
        "save_steps": steps,
        "per_device_train_batch_size": 4,
        "logging_steps": 1,
        "max_length": 64,
        "lora_r": 8,
        "output_dir": str(root / name),
    }
    lines = "\n".join(f"{key}: {value}" for key, value in body.items())
    return f"%%llm_finetune {name} {flags} -o run\n{lines}"


def run_cell(shell: Any, code: str) -> dict[str, Any]:
    """Runs the cell, then follows the run's state (as the view sees it) until it ends."""
    from IPython.utils.capture import capture_output

    started = time.perf_counter()
    with capture_output():
        outcome = shell.run_cell(code)
        marks = {"return_s": time.perf_counter() - started}
        outcome.raise_error()
        run = shell.user_ns["run"]
        while not run.control.done.is_set():
            if "first_step_s" not in marks and run.state.step > run.state.first_step:
                marks["first_step_s"] = time.perf_counter() - started
            time.sleep(POLL)
    marks["done_s"] = time.perf_counter() - started
    if run.status != "completed":
        raise RuntimeError(f"run {run.id} ended {run.status}: {run.error}")
    marks["loop_s"] = run.record["summary"]["train_runtime"]
    return marks


def follow_cost(root: Path, steps: int) -> dict[str, float]:
    """The view's look at a run at ``steps``, another connection writing one logged step before each."""
    from llm_magics import connect
    from llm_magics.runs.follow import Follower
    from llm_magics.store.records import now

    uri = f"embedded://{root / f'follow-{steps}'}"
    writer, reader = connect(uri), connect(uri)  # two connections: two caches, as two processes have
    run_id = f"follow{steps}"
    store = writer.store
    store.add_run({"_id": run_id, "model": "m", "status": "running", "backend": "process", "started": now()})
    rows = [{"run": run_id, "model": "m", "step": step, "loss": 1.0 / step, "learning_rate": 1e-4} for step in
            range(1, steps + 1)]  # fmt: skip
    for start in range(0, steps, 1000):
        batch = rows[start : start + 1000]
        store.add_metrics(batch)
        store.update_run(run_id, tail=[_row(r) for r in batch], step=batch[-1]["step"])
    begun = time.perf_counter()
    follower = Follower(reader, run_id)
    first = time.perf_counter() - begun
    looks, scans = [], []
    for step in range(steps + 1, steps + LOOKS + 1):
        row = {"run": run_id, "model": "m", "step": step, "loss": 1.0 / step, "learning_rate": 1e-4}
        store.add_metrics([row])
        store.update_run(run_id, tail=[_row(row)], step=step)
        begun = time.perf_counter()
        follower.look()
        looks.append(time.perf_counter() - begun)
        begun = time.perf_counter()
        list(reader.store.metrics.find({"run": run_id, "step": {"$gt": step - 1}}))
        scans.append(time.perf_counter() - begun)
    assert follower.state.step == steps + LOOKS
    return {
        "first_look_ms": first * 1000,
        "look_ms": statistics.median(looks) * 1000,
        "metrics_scan_ms": statistics.median(scans) * 1000,
    }


def _row(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k not in ("run", "model")}


def setup(threads: int | None) -> tuple[Any, str, Path]:
    from IPython.core.interactiveshell import InteractiveShell

    from llm_magics import connect

    if threads:  # the training process gets the kernel's thread count
        os.environ["OMP_NUM_THREADS"] = str(threads)
        import torch

        torch.set_num_threads(threads)
    root = workdir("detached")
    quiet()
    base = tiny(root)
    db = connect(f"embedded://{root / 'store'}")
    db["docs"].insert_many(documents(256))
    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "llm_magics")
    shell.run_line_magic("llm_db", db.uri)
    return shell, base, root


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--follow-steps", type=int, nargs="+", default=[10, 10_000])
    parser.add_argument("--threads", type=int, default=None, help="torch threads in both processes")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)

    shell, base, root = setup(args.threads)
    run_cell(shell, cell(base, root, 3, ""))  # warm-up: imports, first load
    arms = {
        "kernel": lambda: run_cell(shell, cell(base, root, args.steps, "")),
        "--detach": lambda: run_cell(shell, cell(base, root, args.steps, "--detach")),
    }
    runs = interleaved(arms, args.rounds)
    medians = {
        name: {key: median(r[key] for r in results) for key in results[0] if all(key in r for r in results)}
        for name, results in runs.items()
    }
    following = {str(steps): follow_cost(root, steps) for steps in args.follow_steps}
    first, last = following[str(args.follow_steps[0])], following[str(args.follow_steps[-1])]
    result = {
        "steps": args.steps,
        "rounds": args.rounds,
        "arms": medians,
        "loop --detach / kernel": ratio(medians["--detach"]["loop_s"], medians["kernel"]["loop_s"]),
        "done --detach / kernel": ratio(medians["--detach"]["done_s"], medians["kernel"]["done_s"]),
        "following": following,
        "look at the last / first size": ratio(last["look_ms"], first["look_ms"]),
    }
    return emit(result, args.json, show)


def show(result: dict[str, Any]) -> None:
    print(f"{'':<9} {'return':>8} {'1st step':>8} {'done':>8} {'loop':>8}  (s, {result['steps']} steps)")
    for name, arm in result["arms"].items():
        keys = ("return_s", "first_step_s", "done_s", "loop_s")
        print(f"{name:<9} " + " ".join(f"{arm[k]:8.2f}" if k in arm else f"{'-':>8}" for k in keys))
    print(f"loop --detach / kernel x{result['loop --detach / kernel']:.3f}")
    for steps, cost in result["following"].items():
        print(
            f"following at step {int(steps):,}: look {cost['look_ms']:.2f} ms (first {cost['first_look_ms']:.0f} ms);"
            f" reading new rows from the metrics instead: {cost['metrics_scan_ms']:.2f} ms"
        )
    print(f"look at the last / first size x{result['look at the last / first size']:.2f}")


if __name__ == "__main__":
    main()
