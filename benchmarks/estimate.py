"""``--dry-run``'s memory estimate against the memory a run took, on this CPU.

For each shape (the tiny test model and a random Llama with Llama-3.2-1B's shape) and each arm
(the defaults, gradient checkpointing), one ``LLM(bits=4).fit`` in a fresh process: batch 1,
documents of exactly ``--seq`` tokens (so that the longest document the estimate is given is the
one trained), ``--steps`` steps. Measured: the peak of the process's anonymous resident memory
(``RssAnon``, sampled every 5 ms) above what it held after its imports. ``VmHWM`` is reported
beside it; it also counts the pages of the checkpoint file that loading maps in, which the
kernel can drop at any time and are not memory a run needs.

With ``--gpu-report`` (a report of ``scripts/gpu_check.sh``), the peaks measured there on a GPU
(``torch.cuda.max_memory_allocated``) are set beside the estimate this version gives for the same
arm on a GPU; only the models' configurations are written for that, not their weights.

    python benchmarks/estimate.py [--shapes tiny,1b] [--seq 512] [--steps 3] [--gpu-report JSON] [--json]
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from workload import emit, quiet, workdir

ARMS = {"defaults": {}, "gradient checkpointing": {"gradient_checkpointing": True}}


def _status_mib(field: str) -> float:
    with open("/proc/self/status") as status:
        return int(re.search(rf"^{field}:\s+(\d+) kB", status.read(), re.M).group(1)) / 1024


class Sampler:
    """The peak of a /proc/self/status field, read every ``every`` seconds on a thread."""

    def __init__(self, field: str, every: float = 0.005) -> None:
        self.field, self.every, self.peak = field, every, 0.0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()

    def _sample(self) -> None:
        while not self._done.is_set():
            self.peak = max(self.peak, _status_mib(self.field))
            time.sleep(self.every)
        self.peak = max(self.peak, _status_mib(self.field))


def text(seq: int, index: int) -> str:
    """Exactly ``seq`` tokens with the byte tokenizer and its end-of-sequence token."""
    return f"{index} " + "abcdefghij klmnopqrstuvwxyz"[index % 7 :] * seq


def child(arm: str, path: str, seq: int, steps: int) -> dict[str, Any]:
    import torch

    from llm_magics import LLM, LLMTrainingConfiguration, connect
    from llm_magics.models.estimate import estimate
    from llm_magics.models.loader import BaseModel

    quiet()
    torch.set_num_threads(1)
    db = connect(f"mongomock://estimate-{uuid.uuid4().hex[:6]}")
    db["docs"].insert_many({"text": text(seq, i)[: seq - 1]} for i in range(steps * 2))
    config = LLMTrainingConfiguration(
        max_steps=steps,
        save_steps=steps,
        per_device_train_batch_size=1,
        max_length=seq,
        eval_strategy="no",
        logging_steps=1,
        output_dir=str(Path.cwd() / uuid.uuid4().hex[:6]),
        **ARMS[arm],
    )
    expected = estimate(config, BaseModel(path, bits=4), seq)
    baseline_anon, baseline_hwm = _status_mib("RssAnon"), _status_mib("VmRSS")
    with Sampler("RssAnon") as anon:
        run = LLM("estimate", path, bits=4).fit(select="docs", db=db, configuration=config)
    if run.status != "completed":
        raise RuntimeError(f"run {run.status}: {run.error}")
    return {
        "peak_anon_mib": anon.peak - baseline_anon,
        "peak_hwm_mib": _status_mib("VmHWM") - baseline_hwm,
        "estimate_mib": expected.total_gib * 1024,
        "estimate": {k: v * 1024 for k, v in vars(expected).items() if k.endswith("_gib")},
    }


def run_arm(arm: str, path: Path, args: argparse.Namespace) -> dict[str, Any]:
    command = [sys.executable, __file__, "--child", arm, "--model-path", str(path)]
    command += ["--seq", str(args.seq), "--steps", str(args.steps)]
    done = subprocess.run(command, capture_output=True, text=True, cwd=Path.cwd())
    if done.returncode:
        return {"error": done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exit {done.returncode}"}
    measured = json.loads(done.stdout.strip().splitlines()[-1])
    measured["error"] = measured["estimate_mib"] / measured["peak_anon_mib"] - 1
    return measured


def on_gpu(report: Path) -> list[dict[str, Any]]:
    """This version's estimate for each arm of ``llm.fit`` that a GPU check measured."""
    from gpu_qlora import VARIANTS
    from transformers import LlamaConfig

    from llm_magics import LLMTrainingConfiguration
    from llm_magics.models.estimate import estimate
    from llm_magics.models.loader import BaseModel
    from llm_magics.models.tiny import SHAPES

    measured = json.loads(report.read_text())
    rows = []
    for shape, bench in measured["benchmarks"].items():
        directory = Path.cwd() / f"config-{shape}"
        LlamaConfig(**SHAPES[shape]).save_pretrained(directory)
        for arm, values in bench["arms"].items():
            if VARIANTS.get(arm) is None or "peak_gpu_gib" not in values:
                continue
            config = LLMTrainingConfiguration(
                per_device_train_batch_size=bench["batch_size"], max_length=bench["seq"], **VARIANTS[arm]
            )
            expected = estimate(config, BaseModel(str(directory), bits=4), bench["seq"], gpu=True).total_gib
            rows.append({
                "shape": shape, "arm": arm, "device": bench["device"], "batch_size": bench["batch_size"],
                "seq": bench["seq"], "peak_gib": values["peak_gpu_gib"], "estimate_gib": expected,
                "then_estimate_gib": values.get("estimate_gib"), "error": expected / values["peak_gpu_gib"] - 1,
            })  # fmt: skip
    return rows


def _found(given: str) -> Path:
    """A path as given, else relative to this directory (run.py runs benchmarks elsewhere)."""
    path = Path(given).expanduser()
    return path.resolve() if path.exists() else Path(__file__).resolve().parent / given


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shapes", default="tiny,1b", help="comma-separated shapes of llm_magics.models.tiny")
    parser.add_argument("--seq", type=int, default=512, help="tokens per document (max_length)")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--models", help="where the random models are kept (default: a temporary directory)")
    parser.add_argument("--gpu-report", help="a gpu_check.sh JSON report, for its measured GPU peaks")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--model-path", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.model_path, args.seq, args.steps)))
        return {}

    from llm_magics.models.tiny import shaped_model

    report = _found(args.gpu_report) if args.gpu_report else None
    given = Path(args.models).expanduser().resolve() if args.models else None
    root = workdir("estimate")
    models = given or root
    result: dict[str, Any] = {"seq": args.seq, "steps": args.steps, "shapes": {}}
    for shape in args.shapes.split(","):
        path = shaped_model(models / f"llama-{shape}", shape)
        result["shapes"][shape] = {arm: run_arm(arm, path, args) for arm in ARMS}
    if report:
        result["gpu"], result["gpu_report"] = on_gpu(report), report.name
    return emit(result, args.json, show)


def show(result: dict[str, Any]) -> None:
    print(f"batch 1 x {result['seq']} tokens, {result['steps']} steps, 4-bit, on this CPU")
    for shape, arms in result["shapes"].items():
        for arm, values in arms.items():
            if "peak_anon_mib" not in values:
                print(f"  {shape:<5} {arm:<24} failed: {values['error']}")
                continue
            print(
                f"  {shape:<5} {arm:<24} measured {values['peak_anon_mib']:8.0f} MiB"
                f" (VmHWM {values['peak_hwm_mib']:.0f})"
                f"  estimate {values['estimate_mib']:8.0f} MiB  error {values['error']:+.0%}"
            )
    for row in result.get("gpu", []):
        print(
            f"  {row['shape']:<5} {row['arm']:<24} {row['device']}: measured {row['peak_gib']:.2f} GiB"
            f"  estimate {row['estimate_gib']:.2f} GiB  error {row['error']:+.0%}"
        )


if __name__ == "__main__":
    main()
