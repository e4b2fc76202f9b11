"""Runs that do not block: ``%%llm_finetune NAME --async`` (a thread) and ``--ray`` (Ray Train,
two CPU workers), against the same run blocking the kernel.

The same cell body trains the tiny model for the same steps on the same documents in each arm;
the Ray arm gives each of its two workers half the batch, so that every arm trains on the same
number of examples per step. Measured from the moment the cell starts:

- return: the cell gives the notebook back;
- running: the run's state says ``running`` (the trainer's on_train_begin reached the kernel);
- first step: the state shows a step done (what the live view shows first);
  (a blocking cell shows both only when it returns: not measured for the kernel arm)
- done: the run has ended and its records are written;
- loop: the trainer's ``train_runtime`` (for Ray, rank 0's).

The state is polled every 20 ms from the notebook's thread. Ray's own start (``ray.init``) and
the start of a Ray Train worker group (a TorchTrainer whose loop does nothing) are measured apart,
before the runs. The three arms alternate, their order rotated each round.

    python benchmarks/background.py [--steps 100] [--rounds 1] [--threads 1] [--json]
"""

from __future__ import annotations

import argparse
import time
import uuid
from pathlib import Path
from typing import Any

from workload import documents, emit, interleaved, median, quiet, ratio, tiny, workdir

POLL = 0.02
WORKERS = 2


def cell(base: str, root: Path, steps: int, batch: int, flags: str) -> str:
    name = f"bench-{uuid.uuid4().hex[:6]}"
    body = {
        "model": base,
        "data": "docs",
        "max_steps": steps,
        "save_steps": steps,
        "per_device_train_batch_size": batch,
        "logging_steps": 1,
        "max_length": 64,
        "lora_r": 8,
        "output_dir": str(root / name),
    }
    if "--ray" in flags:
        body["ray_configs"] = f"{{scaling_config: {{num_workers: {WORKERS}}}}}"
    lines = "\n".join(f"{key}: {value}" for key, value in body.items())
    return f"%%llm_finetune {name} {flags} -o run\n{lines}"


def run_cell(shell: Any, code: str) -> dict[str, Any]:
    """Runs the cell, then follows the run's state until it ends."""
    from IPython.utils.capture import capture_output

    started = time.perf_counter()
    with capture_output():  # the view's final summary is displayed when the run ends
        outcome = shell.run_cell(code)
        marks = {"return_s": time.perf_counter() - started}
        outcome.raise_error()
        run = shell.user_ns["run"]
        while not run.control.done.is_set():
            state, now = run.state, time.perf_counter() - started
            if "running_s" not in marks and state.status != "starting":
                marks["running_s"] = now
            if "first_step_s" not in marks and state.step > state.first_step:
                marks["first_step_s"] = now
            time.sleep(POLL)
    marks["done_s"] = time.perf_counter() - started
    if run.status != "completed":
        raise RuntimeError(f"run {run.id} ended {run.status}: {run.error}")
    marks["loop_s"] = run.record["summary"]["train_runtime"]
    return marks


def ray_start(root: Path) -> dict[str, float]:
    """Ray's own start, and a Ray Train worker group's start and end around a loop doing nothing."""
    import ray
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    started = time.perf_counter()
    ray.init(num_cpus=WORKERS, include_dashboard=False, log_to_driver=False)
    init = time.perf_counter() - started
    started = time.perf_counter()
    TorchTrainer(
        _nothing,
        scaling_config=ScalingConfig(num_workers=WORKERS),
        run_config=RunConfig(name="empty", storage_path=str(root / "ray-empty")),
    ).fit()
    return {"ray_init_s": init, "empty_worker_group_s": time.perf_counter() - started}


def _nothing(config: dict[str, Any]) -> None:
    return None


def setup() -> tuple[Any, str, Path]:
    from IPython.core.interactiveshell import InteractiveShell

    from llm_magics import connect

    root = workdir("background")
    quiet()
    base = tiny(root)
    db = connect(f"mongomock://bench-{uuid.uuid4().hex[:6]}")
    db["docs"].insert_many(documents(256))
    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "llm_magics")
    shell.run_line_magic("llm_db", db.uri)
    return shell, base, root


def summarize(runs: dict[str, list[dict[str, float]]]) -> dict[str, Any]:
    arms = {name: {key: median(r[key] for r in results) for key in results[0]} for name, results in runs.items()}
    kernel = arms["kernel"]
    return {
        "arms": arms,
        "ratios": {
            f"{name} / kernel": {
                "done": ratio(arm["done_s"], kernel["done_s"]),
                "loop": ratio(arm["loop_s"], kernel["loop_s"]),
            }
            for name, arm in arms.items()
            if name != "kernel"
        },
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=4, help="examples per step (Ray: split over the workers)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads in the kernel (default: torch's)")
    parser.add_argument("--no-ray", action="store_true", help="leave out the Ray arm")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)

    shell, base, root = setup()
    run_cell(shell, cell(base, root, 3, args.batch_size, ""))  # warm-up: imports, first load
    result: dict[str, Any] = {"steps": args.steps, "rounds": args.rounds, "batch_size": args.batch_size}
    arms = {
        "kernel": lambda: run_cell(shell, cell(base, root, args.steps, args.batch_size, "")),
        "--async": lambda: run_cell(shell, cell(base, root, args.steps, args.batch_size, "--async")),
    }
    if not args.no_ray:
        result.update(ray_start(root))
        result["ray_workers"] = WORKERS
        arms["--ray"] = lambda: run_cell(shell, cell(base, root, args.steps, args.batch_size // WORKERS, "--ray"))
    result.update(summarize(interleaved(arms, args.rounds)))
    return emit(result, args.json, show)


def show(result: dict[str, Any]) -> None:
    if "ray_init_s" in result:
        print(f"ray.init {result['ray_init_s']:.1f} s; empty worker group {result['empty_worker_group_s']:.1f} s")
    print(f"{'':<8} {'return':>8} {'running':>8} {'1st step':>8} {'done':>8} {'loop':>8}  (s, {result['steps']} steps)")
    for name, arm in result["arms"].items():
        keys = ("return_s", "running_s", "first_step_s", "done_s", "loop_s")
        print(f"{name:<8} " + " ".join(f"{arm[k]:8.2f}" if k in arm else f"{'-':>8}" for k in keys))
    for name, r in result["ratios"].items():
        print(f"{name:<18} done x{r['done']:.2f}   loop x{r['loop']:.2f}")


if __name__ == "__main__":
    main()
