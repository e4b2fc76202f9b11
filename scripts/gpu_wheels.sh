#!/usr/bin/env bash
# Fetches, here, the wheels that scripts/gpu_check.sh installs on a lent GPU machine that has no
# network (Python 3.12, x86-64): the packages its image lacks, at the versions this checkout's
# .venv has, into the ignored folder .whl/. What the image holds already (torch, transformers,
# peft, accelerate, pyarrow, pandas, ...) is used as it is there; Ray (over 64 MiB) cannot travel.
# Usage: scripts/gpu_wheels.sh [DIR]      (default: .whl)
set -euo pipefail
cd "$(dirname "$0")/.."
target="${1:-.whl}"

# name of a package -> the version to fetch: ours where .venv has it, else the newest
version() {
  if [ -x .venv/bin/python ]; then
    .venv/bin/python -c "import importlib.metadata as m, sys
try: print('==' + m.version(sys.argv[1]))
except m.PackageNotFoundError: print('')" "$1"
  fi
}

# trl, bitsandbytes and datasets are what QLoRA training needs; mongomock (+ pytz, sentinels)
# and pymongo (+ dnspython) are the store; IPython (+ its own needs) because llm_magics' errors are
# IPython's UsageError; liger-kernel is the Liger arm's (Triton, no build).
packages=(trl bitsandbytes datasets dill multiprocess mongomock sentinels pytz pymongo dnspython liger-kernel
  ipython traitlets decorator ipython-pygments-lexers jedi parso matplotlib-inline pexpect ptyprocess prompt-toolkit
  wcwidth stack-data executing asttokens pure-eval)
specs=()
for name in "${packages[@]}"; do specs+=("$name$(version "$name")"); done

mkdir -p "$target"
rm -f "$target"/*.whl
python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 --platform any -d "$target" "${specs[@]}" 2>&1 | grep -v '^WARNING: Location' || true
# the versions llm_magics is tested with, for the report to name where the machine's differ
if [ -x .venv/bin/python ]; then
  .venv/bin/python -c "import importlib.metadata as m, json, sys
print(json.dumps({n: m.version(n) for n in sys.argv[1:]}))" torch transformers peft trl bitsandbytes accelerate datasets \
    > "$target/ours.json"
fi
count=$(find "$target" -type f -name '*.whl' | wc -l)
[ "$count" -eq "${#packages[@]}" ] || { echo "expected ${#packages[@]} wheels in $target, found $count" >&2; exit 1; }
du -ch "$target"/*.whl | tail -1 | sed "s|total|in $target ($count wheels; with the working tree, under 64 MiB a call)|"
