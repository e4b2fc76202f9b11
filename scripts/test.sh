#!/usr/bin/env bash
# Runs the linter, the type checker and the whole test suite (Ray, a real kernel and a real browser included).
# Extra arguments go to pytest, e.g. scripts/test.sh -m "not browser" -x
#   scripts/test.sh --quick [ARGS]   while working: lint, types and the tests that need no browser, Ray,
#                                    llama.cpp or a training process of their own (about a minute)
set -euo pipefail
cd "$(dirname "$0")/.."

# Each process the tests start (kernels, Ray workers, detached runs: hundreds) imports llm_magics;
# where PYTHONDONTWRITEBYTECODE is set (this machine sets it) none writes the bytecode it compiles,
# so it is compiled here once, in under a second, and every process reads it.
compile_ours() { .venv/bin/python -m compileall -q -j 0 llm_magics tests >/dev/null; }

if [ "${1:-}" = "--quick" ]; then
  shift
  scripts/setup.sh dev
  compile_ours
  .venv/bin/ruff check .
  .venv/bin/mypy
  exec .venv/bin/python -m pytest -n "${TEST_WORKERS:-2}" --dist loadgroup --no-loadscope-reorder \
    -m "not slow and not browser and not ray and not gguf" "$@"
fi

# llama.cpp for the GGUF export tests: its wheel builds (once; then it is cached) while setup.sh
# installs the rest, at full speed, before the tests load both cores.
build_log=$(mktemp)
trap 'rm -f "$build_log"' EXIT
scripts/setup_gguf.sh wheel > "$build_log" 2>&1 &
build=$!

# The browser tests drive Debian's Chromium through Playwright (no browser download). Installing
# it waits mostly on the network and the disk, so it goes on beside setup.sh too.
browser=
if ! command -v chromium >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  (apt-get install -y -qq chromium >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq chromium; }) \
    >/dev/null 2>&1 || echo "could not install chromium: the browser tests will be skipped" >&2 &
  browser=$!
fi

scripts/setup.sh dev
compile_ours

# lint and types while llama.cpp may still be building (mypy's first run takes most of a minute)
.venv/bin/ruff check .
.venv/bin/mypy

[ -z "$browser" ] || wait "$browser"
if ! wait "$build"; then
  cat "$build_log" >&2
  echo "building llama-cpp-python failed (above)" >&2
  exit 1
fi
rm -f "$build_log"  # (exec below ends the shell without its EXIT trap)
scripts/setup_gguf.sh

# Two workers: the suite is bound by the two cores (a third kept them 80-95% busy, won a minute,
# and left a Ray head too starved to register within Ray's 30 s). A group (xdist_group) stays in
# one worker: the Ray tests are two chains, so at most two Rays start at once; the workers take
# the longest tests first (conftest.py).
exec .venv/bin/python -m pytest -n "${TEST_WORKERS:-2}" --dist loadgroup --no-loadscope-reorder "$@"
