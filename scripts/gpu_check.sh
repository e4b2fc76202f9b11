#!/usr/bin/env bash
# The check for a lent GPU machine, one command: installs the wheels that scripts/gpu_wheels.sh
# fetched into .whl/ (no index: the machine has no network), then runs the environment report, the
# GPU test tier and benchmarks/gpu_qlora.py, each stage with its own time limit, and writes
# gpu-check.json and gpu-check.md to $OUT (or the folder given).
#
#   here:  scripts/gpu_wheels.sh          then, on the device tool:  run(carry=[".whl"],
#          command="scripts/gpu_check.sh", timeout_s=560)
#   CI:    scripts/gpu_check.sh --cpu-smoke [DIR]    the same stages, small, on a CPU (.venv), < 1 min
set -euo pipefail
cd "$(dirname "$0")/.."

smoke=()
if [ "${1:-}" = "--cpu-smoke" ]; then smoke=(--cpu-smoke); shift; fi
out="${1:-${OUT:-gpu-check}}"

if [ ${#smoke[@]} -eq 0 ] && [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # llm_magics from this checkout, installed or not
python="python3"
[ -x .venv/bin/python ] && python=.venv/bin/python
exec "$python" benchmarks/gpu_check.py --out "$out" --budget "${GPU_CHECK_BUDGET:-480}" "${smoke[@]}"
