#!/usr/bin/env bash
# Creates or reuses .venv and installs llm_magics with the given extras (default: none).
# Usage: scripts/setup.sh [EXTRAS]   e.g. scripts/setup.sh dev
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-}"

python="${PYTHON:-}"
if [ -z "$python" ]; then
  for candidate in python3.11 python3.12 python3; do
    if command -v "$candidate" >/dev/null 2>&1; then python="$candidate"; break; fi
  done
fi
[ -x .venv/bin/python ] || "$python" -m venv .venv

# Reinstall only when what decides the install changed.
stamp=".venv/.installed-$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)-${extras:-base}"
if [ ! -f "$stamp" ]; then
  # PyTorch: the CPU build, pinned (a plain "pip install torch" pulls a multi-GB CUDA build).
  # A configured index or wheel folder that has it is used first; else PyTorch's CPU index.
  # Install the torch you want into .venv first to keep it: an installed torch is kept.
  # pip's own bytecode compilation runs on one core (about a minute); compileall below uses all.
  pip=(.venv/bin/pip install --quiet --disable-pip-version-check --no-compile)
  if ! .venv/bin/python -c "import torch" >/dev/null 2>&1; then
    "${pip[@]}" "torch==2.13.0+cpu" 2>/dev/null \
      || "${pip[@]}" --extra-index-url https://download.pytorch.org/whl/cpu "torch==2.13.0+cpu"
  fi
  "${pip[@]}" -e ".${extras:+[$extras]}"
  # (some packages ship files for other Pythons that do not compile: compileall says so, harmlessly)
  .venv/bin/python -m compileall -q -j 0 "$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')" \
    >/dev/null 2>&1 || true
  rm -f .venv/.installed-*
  touch "$stamp"
fi
