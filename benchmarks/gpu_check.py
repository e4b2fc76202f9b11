"""The lent GPU machine's check, in stages that each have a time limit: the environment, the GPU test
tier (tests/test_gpu.py) and benchmarks/gpu_qlora.py on the 1B shape (and the 8B shape when time is
left). Writes gpu-check.json and gpu-check.md to ``--out``. scripts/gpu_check.sh installs the
carried wheels and calls this; ``--cpu-smoke`` runs every stage on a CPU, small, in under a minute.

    python benchmarks/gpu_check.py --out DIR [--budget 480] [--cpu-smoke]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from gpu_qlora import VARIANTS

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("torch", "transformers", "peft", "trl", "bitsandbytes", "accelerate", "datasets", "liger-kernel",
            "flash-attn", "pymongo", "mongomock")  # fmt: skip
ENVIRONMENT = """
import importlib.metadata as m, json, platform, sys, torch
versions = {}
for name in sys.argv[1:]:
    try:
        versions[name] = m.version(name)
    except m.PackageNotFoundError:
        versions[name] = None
cuda = torch.cuda.is_available()
print(json.dumps({
    "python": platform.python_version(),
    "cuda": torch.version.cuda,
    "gpu": torch.cuda.get_device_name() if cuda else None,
    "gpu_memory_gib": torch.cuda.get_device_properties(0).total_memory / 2**30 if cuda else None,
    "bf16": cuda and torch.cuda.is_bf16_supported(),
    "versions": versions,
}))
"""


def stage(name: str, command: list[str], limit: float, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Runs one stage in a process of its own, killed at ``limit`` seconds."""
    print(f"== {name} (limit {limit:.0f} s)", flush=True)
    started = time.monotonic()
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=limit, cwd=ROOT, env=env)
        status, stdout, stderr = ("passed" if done.returncode == 0 else "failed"), done.stdout, done.stderr
    except subprocess.TimeoutExpired as expired:
        status = "timed out"
        stdout, stderr = (_text(expired.stdout), _text(expired.stderr))
    seconds = time.monotonic() - started
    print(f"   {status} in {seconds:.0f} s", flush=True)
    return {"name": name, "status": status, "seconds": round(seconds, 1), "stdout": stdout, "stderr": stderr}


def _text(output: bytes | str | None) -> str:
    return output.decode(errors="replace") if isinstance(output, bytes) else output or ""


def last_json(text: str) -> Any:
    """The last line of ``text`` that is a JSON object, or None."""
    for line in reversed(text.strip().splitlines()):
        if line.startswith("{"):
            try:
                return json.loads(line)
            except json.JSONDecodeError:
                continue
    return None


def ours() -> dict[str, str]:
    """The versions this checkout's .venv had when scripts/gpu_wheels.sh fetched the wheels."""
    path = ROOT / ".whl" / "ours.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def differences(found: dict[str, str | None], expected: dict[str, str]) -> list[str]:
    return [
        f"{name} {found.get(name)} here, {version} where llm_magics is tested"
        for name, version in expected.items()
        if found.get(name) and found[name] != version
    ]


def run_stages(args: argparse.Namespace) -> dict[str, Any]:
    deadline = time.monotonic() + args.budget
    python = sys.executable
    env = dict(os.environ)
    if args.cpu_smoke:
        env["LLM_MAGICS_GPU_SMOKE"] = "1"
    report: dict[str, Any] = {"mode": "cpu smoke" if args.cpu_smoke else "gpu", "budget_s": args.budget, "stages": []}

    def left(cap: float) -> float:
        return max(1.0, min(cap, deadline - time.monotonic()))

    environment = stage("environment", [python, "-c", ENVIRONMENT, *PACKAGES], left(60), env)
    report["stages"].append(environment)
    report["environment"] = last_json(environment["stdout"]) or {}
    report["version_differences"] = differences(report["environment"].get("versions", {}), ours())

    def run_tier() -> None:
        tests = [python, "-m", "pytest", "tests/test_gpu.py", "-m", "gpu", "-p", "no:browser_lab"]
        tests += ["-p", "no:cacheprovider"]
        # another machine's library versions warn about other things: shown, not failures, there
        tests += ["-o", "filterwarnings=default", "-q", "-s", "-rA"]
        report["stages"].append(stage("GPU test tier", tests, left(180 if args.cpu_smoke else 240), env))

    report["benchmarks"] = {}

    def benchmark(shape: str, arms: list[str], extra: list[str]) -> None:
        """One stage per arm, so that a slow arm costs only its own figures; the model is built once."""
        for arm in arms:
            name = f"gpu_qlora {shape}: {arm}"
            if deadline - time.monotonic() < (20 if args.cpu_smoke else 90):
                report["stages"].append({"name": name, "status": "not run: no time left", "seconds": 0})
                continue
            command = [python, "benchmarks/gpu_qlora.py", "--shape", shape, "--models", args.models, "--json"]
            ran = stage(name, [*command, "--arms", arm, *extra], left(240), env)
            report["stages"].append(ran)
            result = last_json(ran["stdout"])
            if result:
                report["benchmarks"].setdefault(shape, {**result, "arms": {}})["arms"].update(result["arms"])

    two = ["llm.fit defaults", "plain trl+peft+bnb defaults"]
    if args.cpu_smoke:
        run_tier()
        benchmark("tiny", two, ["--steps", "4"])
    else:  # the 1B figures first: they are what a lent GPU is for
        benchmark("1b", list(VARIANTS), [])
        run_tier()
        benchmark("8b", two, ["--steps", "10"])
    return report


def markdown(report: dict[str, Any]) -> str:
    environment = report["environment"]
    lines = [f"# GPU check ({report['mode']})", ""]
    lines.append(
        f"{environment.get('gpu') or 'no GPU'}, CUDA {environment.get('cuda')}, Python {environment.get('python')}"
    )
    lines.append("")
    lines += ["| package | version |", "|---|---|"]
    lines += [f"| {name} | {version or '—'} |" for name, version in environment.get("versions", {}).items()]
    if report["version_differences"]:
        lines += ["", "Versions that differ from the tested ones: " + "; ".join(report["version_differences"]) + "."]
    lines += ["", "| stage | status | seconds |", "|---|---|---|"]
    lines += [f"| {s['name']} | {s['status']} | {s['seconds']} |" for s in report["stages"]]
    for shape, result in report["benchmarks"].items():
        if not result:
            continue
        lines += ["", f"## gpu_qlora {shape}: {result['parameters'] / 1e9:.2f} B parameters, batch "
                  f"{result['batch_size']} x {result['seq']}, {result['steps']} steps", ""]  # fmt: skip
        lines += ["| arm | tokens/s | peak GPU GiB | estimate GiB | MFU | loss | note |", "|---" * 7 + "|"]
        for arm, values in result["arms"].items():
            lines.append(_arm_row(arm, values))
    lines += ["", *report.get("notes", [])]
    tests = next((s for s in report["stages"] if s["name"] == "GPU test tier"), None)
    if tests:
        lines += ["", "## GPU test tier", "", "```", *tests["stdout"].strip().splitlines()[-30:], "```"]
    return "\n".join(lines) + "\n"


def _arm_row(arm: str, values: dict[str, Any]) -> str:
    if "tokens_per_s" not in values:
        return f"| {arm} | | | | | | {values.get('skipped') or values.get('error', '')} |"

    def number(key: str, form: str) -> str:
        return format(values[key], form) if values.get(key) is not None else "—"

    peak = number("peak_gpu_gib", ".2f") if "peak_gpu_gib" in values else f"RSS +{values['peak_rss_added_mib']:.0f} MiB"
    return (
        f"| {arm} | {values['tokens_per_s']:.0f} | {peak} | {number('estimate_gib', '.2f')} | {number('mfu', '.1%')} "
        f"| {number('loss', '.3f')} | |"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="where gpu-check.json and gpu-check.md go")
    parser.add_argument("--budget", type=float, default=480.0, help="seconds for all stages together")
    parser.add_argument("--cpu-smoke", action="store_true", help="every stage on a CPU, small")
    parser.add_argument("--models", default="/tmp/llm-gpu-check-models", help="where the random models are built")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    report = run_stages(args)
    (out / "gpu-check.json").write_text(json.dumps(report, indent=1))
    (out / "gpu-check.md").write_text(markdown(report))
    print(markdown(report))
    return 0 if all(s["status"] == "passed" for s in report["stages"] if s["seconds"]) else 1


if __name__ == "__main__":
    sys.exit(main())
