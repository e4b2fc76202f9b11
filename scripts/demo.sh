#!/usr/bin/env bash
# The main job: fine-tunes the tiny model on the default embedded store, predicts, prints it all.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/python -m llm_magics.demo "$@"
