"""The README's main job (``scripts/demo.sh`` runs ``python -m llm_magics.demo``), as a user runs it."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.slow
def test_the_demo_trains_predicts_and_says_so_plainly(workdir):
    done = subprocess.run(
        [sys.executable, "-m", "llm_magics.demo", "--workdir", str(workdir)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    said = done.stdout
    assert f"database:   embedded://{workdir / '.llm_magics'}" in said
    assert "documents:  64 in collection 'demo_docs'" in said
    assert ": completed in " in said and "300 steps, 56 train / 8 valid documents" in said
    assert "step  300" in said and "latest best" in said
    assert "fine-tuned: 'Paris.'" in said  # the tiny model learned its facts
    # the data's one warning is its one line: no file of ours, no line of our code under it
    warned = [line for line in done.stderr.splitlines() if line.strip()]
    assert warned == [
        "DataWarning: data: 60 exact duplicate document(s) — %llm_data demo_docs names them "
        "(%llm_ingest --dedupe keeps them out)"
    ], done.stderr
    assert (workdir / ".llm_magics").is_dir()
