"""How long `%load_ext llm_magics` takes, beside `import transformers` and `%load_ext sql` (jupysql).

Each measurement runs in a fresh Python process (nothing cached in memory; the OS file cache is
warm after the first run), several times; the median is reported.

    python benchmarks/load_ext.py [--runs 7]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import subprocess
import sys

SHELL = "from IPython.core.interactiveshell import InteractiveShell; ip = InteractiveShell.instance()\n"
CASES = {
    "%load_ext llm_magics": (SHELL, "ip.run_line_magic('load_ext', 'llm_magics')"),
    "import transformers": ("", "import transformers"),
    "%load_ext sql (jupysql)": (SHELL, "ip.run_line_magic('load_ext', 'sql')"),
}
HEAVY = ("torch", "transformers", "peft", "trl", "ray", "pymongo")


def measure(setup: str, statement: str) -> tuple[float, list[str]]:
    code = (
        f"import sys, time\n{setup}t = time.perf_counter()\n{statement}\n"
        "elapsed = time.perf_counter() - t\n"
        f"import json; print(json.dumps([elapsed, [m for m in {HEAVY!r} if m in sys.modules]]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    elapsed, heavy = json.loads(out.strip().splitlines()[-1])
    return elapsed, heavy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args()
    results = {}
    for name, (setup, statement) in CASES.items():
        if "sql" in name and importlib.util.find_spec("sql") is None:
            continue
        runs = [measure(setup, statement) for _ in range(args.runs)]
        results[name] = {"median_s": statistics.median(t for t, _ in runs), "heavy_modules": runs[-1][1]}
    if args.json:
        print(json.dumps(results))
        return
    for name, result in results.items():
        print(f"{name:<28} {result['median_s'] * 1000:8.1f} ms   heavy modules imported: {result['heavy_modules']}")


if __name__ == "__main__":
    main()
