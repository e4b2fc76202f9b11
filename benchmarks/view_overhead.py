"""Training with the live view on against the same training with it off (one process, alternated).

    python benchmarks/view_overhead.py [--steps 2000] [--repeats 3]

Reports the median training-loop time (the trainer's train_runtime) of each arm and their ratio,
and how many renders the view made.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import uuid
from pathlib import Path


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)

    from llm_magics import LLM, LLMTrainingConfiguration, connect, tiny_model
    from llm_magics.widgets.progress import TrainingView

    workdir = Path(tempfile.mkdtemp())
    base = str(tiny_model(workdir / "tiny", hidden_size=16, layers=1, heads=2))
    db = connect(f"mongomock://bench-{uuid.uuid4().hex[:6]}")
    db["d"].insert_many([{"text": f"text {i}"} for i in range(64)])
    config = LLMTrainingConfiguration(
        max_steps=args.steps,
        save_steps=args.steps,
        per_device_train_batch_size=1,
        lora_r=1,
        max_length=8,
        output_dir=str(workdir / "out"),
    )
    times: dict[str, list[float]] = {"view off": [], "view on": []}
    renders = []

    def with_view(run):
        renders.append(TrainingView(run, update_interval=0.5))

    for _ in range(args.repeats):
        for arm in times:
            run = LLM("bench", base).fit(
                select="d", db=db, configuration=config, on_start=with_view if arm == "view on" else None
            )
            times[arm].append(run.record["summary"]["train_runtime"])
    result = {
        "steps": args.steps,
        "view off s": statistics.median(times["view off"]),
        "view on s": statistics.median(times["view on"]),
        "renders per run": statistics.median(view.renders for view in renders),
    }
    result["ratio on/off"] = result["view on s"] / result["view off s"]
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
