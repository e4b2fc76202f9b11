#!/usr/bin/env bash
# Installs the gguf extra into .venv: llama-cpp-python, built once from its source release and kept
# as a wheel in ~/.cache/llm_magics/wheels, the Python packages llama.cpp's converter imports that
# the base install lacks (sentencepiece), and the converter itself (python -m llm_magics.export.gguf setup).
# Usage: scripts/setup_gguf.sh         (after scripts/setup.sh)
#        scripts/setup_gguf.sh wheel   only build the wheel, with any Python that has pip ($PYTHON, else
#                                      python3): scripts/test.sh builds it while scripts/setup.sh installs
set -euo pipefail
cd "$(dirname "$0")/.."
version=0.3.36
# What convert_hf_to_gguf.py imports that the base install lacks: sentencepiece (it reads a
# tokenizer.model: Llama, Mistral, Gemma). Its gguf-py comes with the converter's tree; torch,
# transformers, numpy, safetensors, tqdm, pyyaml, requests and protobuf come with the base install.
sentencepiece=0.2.3
cache="${XDG_CACHE_HOME:-$HOME/.cache}/llm_magics"
sdist="$cache/sdist/llama_cpp_python-$version.tar.gz"

build_wheel() {
  local pip=("$1" -m pip --disable-pip-version-check)
  mkdir -p "$cache/sdist" "$cache/wheels"
  ls "$cache/wheels/llama_cpp_python-$version-"*.whl >/dev/null 2>&1 && return 0
  [ -f "$sdist" ] || "${pip[@]}" download --quiet --no-deps --no-binary :all: "llama-cpp-python==$version" -d "$cache/sdist"
  # No llava (not needed: minutes less). On x86-64, AVX2 without AVX-512/AMX: a native build on
  # an AVX-512 + AMX CPU crashes generating from a q8_0 GGUF; this one runs on any x86-64-v3 CPU.
  local args="-DLLAVA_BUILD=OFF"
  [ "$(uname -m)" = x86_64 ] && args="$args -DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_AVX512=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_TILE=OFF"
  # Without llama.cpp's common library: the release forces it on, yet the Python package loads
  # only llama and ggml. Skipping it (and the HTTP library it brings) halves the build: 146 CPU-s
  # against 320 on two cores, 79 s against 165.
  tree=$(mktemp -d)
  trap 'rm -rf "$tree"' EXIT  # a failed build leaves no unpacked tree behind either
  tar -xzf "$sdist" -C "$tree"
  local source="$tree/llama_cpp_python-$version"
  sed -i 's/set(LLAMA_BUILD_COMMON ON CACHE BOOL/set(LLAMA_BUILD_COMMON OFF CACHE BOOL/' "$source/CMakeLists.txt"
  ! grep -q 'LLAMA_BUILD_COMMON ON' "$source/CMakeLists.txt" \
    || echo "llama-cpp-python $version: its common library is built too (the line that forces it changed)" >&2
  echo "building llama-cpp-python $version from source (a minute or two, once)"
  CMAKE_ARGS="$args" CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" "${pip[@]}" wheel --quiet --no-deps "$source" -w "$cache/wheels"
}

if [ "${1:-}" = wheel ]; then
  build_wheel "${PYTHON:-python3}"
  exit 0
fi
if ! .venv/bin/python -c "import llama_cpp" >/dev/null 2>&1; then
  build_wheel .venv/bin/python
  .venv/bin/pip install --quiet --disable-pip-version-check "$(ls "$cache/wheels/llama_cpp_python-$version-"*.whl | head -n 1)"
fi
if ! .venv/bin/python -c "import sentencepiece" >/dev/null 2>&1; then
  .venv/bin/pip install --quiet --disable-pip-version-check "sentencepiece==$sentencepiece"
fi
if [ -f "$sdist" ]; then
  .venv/bin/python -m llm_magics.export.gguf setup "$sdist"
else
  .venv/bin/python -m llm_magics.export.gguf setup
fi
