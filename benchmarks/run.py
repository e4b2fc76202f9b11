"""Runs every benchmark and writes BENCHMARKS.md at the repository root.

Each benchmark runs as its own process (``python benchmarks/NAME.py ... --json``), in a temporary
working directory, one after the other; what it prints is kept as it is (``--save-json``) and
rendered into BENCHMARKS.md with the command that produced it, the machine, the date and the
load average around it (other processes share the machine: it says how quiet it was).

    python benchmarks/run.py            # default sizes (about 10 minutes on 2 CPU cores)
    python benchmarks/run.py --quick    # small sizes: a smoke run of every script
    python benchmarks/run.py --only view_overhead --merge results.json  # rerun one, keep the others
    python benchmarks/run.py --gpu-check benchmarks/gpu/REPORT.json --merge benchmarks/results.json
        # the gpu_qlora figures of scripts/gpu_check.sh's report (a lent GPU machine) join the others

On a machine with a CUDA GPU, gpu_qlora.py runs the 1B and 8B shapes; elsewhere its CPU smoke run
(``--shape tiny``). On a CPU, torch gets one thread (``--threads 1``, see BENCHMARKS.md).
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.metadata
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import report

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PACKAGES = (
    "torch",
    "transformers",
    "trl",
    "peft",
    "bitsandbytes",
    "accelerate",
    "datasets",
    "ray",
    "mongomock",
    "ipython",
    "ipywidgets",
    "jupysql",
    "flash-attn",
    "liger-kernel",
)


def plan(quick: bool, cuda: bool, threads: int) -> list[tuple[str, list[str]]]:
    """(name, script and arguments) of each benchmark, in the order they run."""
    cpu = [] if cuda or not threads else ["--threads", str(threads)]
    if quick:
        sizes = {
            "load_ext": ["--runs", "2"],
            "training": ["--steps", "20", "--rounds", "1"],
            "predict": ["--calls", "5", "--switch-shapes", "tiny"],
            "data_path": ["--docs", "5000"],
            "background": ["--steps", "10"],
            "view_overhead": ["--steps", "50", "--rounds", "1"],
            "store": ["--sizes", "10000", "--neighbours", "5000", "20000"],
            "detached": ["--steps", "20", "--rounds", "1", "--follow-steps", "10", "1000"],
            "sweep": ["--steps", "20"],
            "methods": ["--steps", "20", "--rounds", "1"],
            "evaluation": ["--steps", "30", "--rounds", "1"],
            "ingest": ["--rows", "10000", "20000", "--report-docs", "2000"],
            "packing": ["--docs", "200", "--rounds", "1"],
            "estimate": ["--shapes", "tiny", "--gpu-report", "gpu/h200-2026-12-04.json"],
        }
    else:
        sizes = {
            "load_ext": ["--runs", "7"],
            "training": ["--steps", "200", "--rounds", "9"],
            "predict": ["--calls", "50"],
            "data_path": ["--docs", "100000"],
            "background": ["--steps", "100", "--rounds", "2"],
            "view_overhead": ["--steps", "500", "--rounds", "15"],
            "store": ["--sizes", "100000", "1000000", "--neighbours", "5000", "100000"],
            "detached": ["--steps", "300", "--rounds", "5", "--follow-steps", "10", "1000", "10000"],
            "sweep": ["--steps", "600"],
            "methods": ["--steps", "200", "--rounds", "7"],
            "evaluation": ["--steps", "300", "--rounds", "5"],
            "ingest": ["--rows", "100000", "1000000", "--report-docs", "100000"],
            "packing": ["--docs", "800", "--rounds", "3"],
            "estimate": ["--shapes", "tiny,1b", "--gpu-report", "gpu/h200-2026-12-04.json"],
        }
    own_threads = ("load_ext", "data_path", "store", "ingest", "estimate")  # no --threads option
    steps = [(name, [f"{name}.py", *args, *([] if name in own_threads else cpu)]) for name, args in sizes.items()]
    steps.append(("gguf_export tiny", ["gguf_export.py", "--shape", "tiny", *cpu]))
    if not quick:  # random weights in Llama-3.2-1B's shape: about 15 minutes on two CPU cores
        steps.append(("gguf_export 1b", ["gguf_export.py", "--shape", "1b", *([] if cuda else ["--threads", "2"])]))
    if not cuda:
        return [*steps, ("gpu_qlora", ["gpu_qlora.py", "--shape", "tiny", *cpu])]
    shapes = ["1b"] if quick else ["1b", "8b"]
    quick_gpu = ["--steps", "6"] if quick else []
    return [*steps, *((f"gpu_qlora {shape}", ["gpu_qlora.py", "--shape", shape, *quick_gpu]) for shape in shapes)]


def run_one(name: str, args: list[str], workdir: Path) -> dict[str, Any]:
    command = [sys.executable, str(HERE / args[0]), *args[1:], "--json"]
    shown = "python " + shlex.join([f"benchmarks/{args[0]}", *args[1:]])
    print(f"[run] {shown}", file=sys.stderr, flush=True)
    load_before, started = os.getloadavg()[0], time.perf_counter()
    done = subprocess.run(command, cwd=workdir, capture_output=True, text=True, env=_environment())
    entry = {
        "name": name,
        "command": shown,
        "seconds": time.perf_counter() - started,
        "load_before": load_before,
        "load_after": os.getloadavg()[0],
        "returncode": done.returncode,
    }
    lines = done.stdout.strip().splitlines()
    try:
        entry["result"] = json.loads(lines[-1])
    except (IndexError, json.JSONDecodeError):
        entry["error"] = (done.stderr.strip() or done.stdout.strip())[-2000:] or f"exit status {done.returncode}"
    print(f"[run] {name}: {entry['seconds']:.0f} s, exit {done.returncode}", file=sys.stderr, flush=True)
    return entry


def _environment() -> dict[str, str]:
    # jupysql's telemetry would try the network at import; it is not what is measured
    return {**os.environ, "PLOOMBER_STATS_ENABLED": "false", "RAY_DEDUP_LOGS": "1"}


def machine(threads: int, cuda: bool) -> dict[str, Any]:
    import torch

    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "ram_gib": _ram_gib(),
        "gpu": torch.cuda.get_device_name() if cuda else "none",
        "os": platform.platform(),
        "python": platform.python_version(),
        "torch_threads": threads if threads and not cuda else f"torch's default ({torch.get_num_threads()})",
        "packages": {name: _version(name) for name in PACKAGES},
        "git": _git(),
    }


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _ram_gib() -> float:
    with open("/proc/meminfo") as meminfo:
        kib = int(next(line for line in meminfo if line.startswith("MemTotal")).split()[1])
    return kib / 2**20


def _version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _git() -> str:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout.strip()

    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    return commit + (" with uncommitted changes" if git("status", "--porcelain") else "")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run of every script")
    parser.add_argument("--threads", type=int, default=1, help="torch threads on a CPU (0: torch's own choice)")
    parser.add_argument("--only", help="comma-separated benchmark names (default: all)")
    parser.add_argument("--output", default=str(ROOT / "BENCHMARKS.md"), help="the Markdown file to write")
    parser.add_argument("--save-json", help="also save the raw results here")
    parser.add_argument("--from-json", help="write the Markdown from results saved by --save-json; run nothing")
    parser.add_argument(
        "--merge",
        metavar="JSON",
        help="results saved by --save-json: the benchmarks run now replace theirs, the file is updated and the"
        " Markdown written from all of them",
    )
    parser.add_argument(
        "--gpu-check",
        metavar="JSON",
        help="a report of scripts/gpu_check.sh: its gpu_qlora figures replace those of --merge's file; run nothing",
    )
    args = parser.parse_args(argv)
    if args.gpu_check:
        if not args.merge:
            parser.error("--gpu-check needs --merge (the results its figures join)")
        results = merged(json.loads(Path(args.merge).read_text()), from_gpu_check(Path(args.gpu_check)))
        Path(args.merge).write_text(json.dumps(results, indent=1))
        Path(args.output).write_text(report.markdown(results))
        return
    if args.from_json:
        Path(args.output).write_text(report.markdown(json.loads(Path(args.from_json).read_text())))
        return

    import torch

    cuda = torch.cuda.is_available()
    started = time.perf_counter()
    chosen = args.only.split(",") if args.only else None
    with tempfile.TemporaryDirectory(prefix="llm-bench-run-") as workdir:
        entries = [
            run_one(name, script, Path(workdir))
            for name, script in plan(args.quick, cuda, args.threads)
            if chosen is None or name.split()[0] in chosen
        ]
    results = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "quick": args.quick,
        "run_command": "python " + shlex.join(["benchmarks/run.py", *(argv if argv is not None else sys.argv[1:])]),
        "total_seconds": time.perf_counter() - started,
        "machine": machine(args.threads, cuda),
        "benchmarks": entries,
    }
    if args.merge:
        results = merged(json.loads(Path(args.merge).read_text()), results)
        Path(args.merge).write_text(json.dumps(results, indent=1))
    if args.save_json:
        Path(args.save_json).write_text(json.dumps(results, indent=1))
    Path(args.output).write_text(report.markdown(results))
    print(f"[run] wrote {args.output} in {time.perf_counter() - started:.0f} s", file=sys.stderr)


def from_gpu_check(path: Path) -> dict[str, Any]:
    """scripts/gpu_check.sh's report as the results of a run: one gpu_qlora entry per shape."""
    check = json.loads(path.read_text())
    environment = check["environment"]
    entries = []
    for shape, result in check["benchmarks"].items():
        stages = [s for s in check["stages"] if s["name"].startswith(f"gpu_qlora {shape}:")]
        entries.append(
            {
                "name": f"gpu_qlora {shape}",
                "command": f"scripts/gpu_check.sh ({path.name}): python benchmarks/gpu_qlora.py --shape {shape}, "
                "one arm per process",
                "seconds": sum(s["seconds"] for s in stages),
                "returncode": 0,
                "result": {**result, "note": _versions_note(check)},
            }
        )
    versions = {name: version or "not installed" for name, version in environment["versions"].items()}
    gpu = f"{environment['gpu']} ({environment['gpu_memory_gib']:.0f} GiB), CUDA {environment['cuda']}"
    return {
        "run_command": check.get("command", "scripts/gpu_check.sh"),
        "date": check.get("date", path.stem),
        "total_seconds": sum(s["seconds"] for s in check["stages"]),
        "machine": {
            "cpu": "a lent GPU machine",
            "gpu": gpu,
            "python": environment["python"],
            "git": _git(),
            "packages": versions,
        },
        "benchmarks": entries,
    }


def _versions_note(check: dict[str, Any]) -> str:
    found = check["environment"]["versions"]
    named = ", ".join(f"{name} {found[name]}" for name in ("torch", "transformers", "peft", "trl", "bitsandbytes"))
    differ = check.get("version_differences")
    return f"The machine's own libraries: {named}" + (f" ({'; '.join(differ)})." if differ else ".")


def merged(saved: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """The saved results with the benchmarks of ``new`` in place of theirs; the new run is listed
    under ``merged`` (its command, date and machine), the rest stays as the saved run measured it."""
    names = {entry["name"] for entry in new["benchmarks"]}
    kept = [entry for entry in saved["benchmarks"] if entry["name"] not in names]
    # an earlier rerun whose every benchmark is measured again no longer stands behind any figure
    runs = [run for run in saved.get("merged", []) if not set(run["benchmarks"]) <= names]
    runs.append({key: new[key] for key in ("run_command", "date", "total_seconds", "machine")})
    runs[-1]["benchmarks"] = sorted(names)
    return {**saved, "benchmarks": [*kept, *new["benchmarks"]], "merged": runs}


if __name__ == "__main__":
    main()
