#!/usr/bin/env bash
# Installs the gguf extra into .venv: llama-cpp-python, built once from its source release and kept
# as a wheel in ~/.cache/llm_magics/wheels, and llama.cpp's converter (python -m llm_magics.gguf setup).
# scripts/test.sh runs it in the background while the other tests run; the GGUF tests wait for it.
# Usage: scripts/setup_gguf.sh   (after scripts/setup.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
version=0.3.36
cache="${XDG_CACHE_HOME:-$HOME/.cache}/llm_magics"
mkdir -p "$cache/sdist" "$cache/wheels"
sdist="$cache/sdist/llama_cpp_python-$version.tar.gz"
pip=(.venv/bin/pip --disable-pip-version-check)

if ! .venv/bin/python -c "import llama_cpp" >/dev/null 2>&1; then
  wheel=$(ls "$cache/wheels/llama_cpp_python-$version-"*.whl 2>/dev/null | head -n 1 || true)
  if [ -z "$wheel" ]; then
    [ -f "$sdist" ] || "${pip[@]}" download --quiet --no-deps --no-binary :all: "llama-cpp-python==$version" -d "$cache/sdist"
    # No llava (not needed: minutes less). On x86-64, AVX2 without AVX-512/AMX: a native build on
    # an AVX-512 + AMX CPU crashes generating from a q8_0 GGUF; this one runs on any x86-64-v3 CPU.
    args="-DLLAVA_BUILD=OFF"
    [ "$(uname -m)" = x86_64 ] && args="$args -DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_AVX512=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_TILE=OFF"
    echo "building llama-cpp-python $version from source (a few minutes, once)"
    CMAKE_ARGS="$args" CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" "${pip[@]}" wheel --quiet --no-deps "$sdist" -w "$cache/wheels"
    wheel=$(ls "$cache/wheels/llama_cpp_python-$version-"*.whl | head -n 1)
  fi
  "${pip[@]}" install --quiet "$wheel"
fi
if [ -f "$sdist" ]; then
  .venv/bin/python -m llm_magics.gguf setup "$sdist"
else
  .venv/bin/python -m llm_magics.gguf setup
fi
