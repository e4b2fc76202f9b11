"""``scripts/gpu_check.sh --cpu-smoke``: the lent GPU machine's one command, every stage run small on
this CPU in the suite, so that it cannot rot between the sessions that have a GPU."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_the_gpu_check_runs_every_stage_small_on_a_cpu_and_reports(tmp_path):
    out = tmp_path / "out"
    done = subprocess.run(
        ["scripts/gpu_check.sh", "--cpu-smoke", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=400
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    report = json.loads((out / "gpu-check.json").read_text())
    assert report["mode"] == "cpu smoke"
    stages = {stage["name"]: stage["status"] for stage in report["stages"]}
    assert stages == {
        "environment": "passed",
        "GPU test tier": "passed",
        "gpu_qlora tiny: llm.fit defaults": "passed",
        "gpu_qlora tiny: plain trl+peft+bnb defaults": "passed",
    }
    tier = next(stage for stage in report["stages"] if stage["name"] == "GPU test tier")["stdout"]
    assert " passed" in tier and "failed" not in tier
    written = (out / "gpu-check.md").read_text()
    assert "## gpu_qlora tiny" in written and "| llm.fit defaults |" in written
