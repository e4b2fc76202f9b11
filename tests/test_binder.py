"""The Binder set-up: its requirements resolve to one consistent set with the CPU build of PyTorch,
and postBuild installs llm_magics and leaves every IPython session with the magics loaded.

The requirements are resolved (``pip install --dry-run --report``), not installed: installing
torch, transformers and JupyterLab into a fresh environment took 100 s of CI's two cores, and what
breaks a Binder build is a pin that does not resolve. postBuild then runs in a fresh environment
that sees this checkout's ``.venv`` packages, so its ``pip install .`` installs llm_magics alone,
as it would on top of the requirements."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
ROOT = Path(__file__).parent.parent


def test_the_binder_requirements_resolve_to_the_cpu_build_and_the_pins(tmp_path):
    # download.pytorch.org is not reachable from CI: the same pins come from this machine's index
    lines = (ROOT / "binder/requirements.txt").read_text().splitlines()
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("\n".join(line for line in lines if not line.startswith("--extra-index-url")))
    report = tmp_path / "report.json"
    pip = [sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check", "--dry-run"]
    subprocess.run([*pip, "--ignore-installed", "--report", str(report), "-r", str(requirements)], check=True,
                   timeout=600)  # fmt: skip
    installs = json.loads(report.read_text())["install"]
    resolved = {item["metadata"]["name"].lower(): item["metadata"]["version"] for item in installs}
    pins = dict(line.split("==") for line in lines if "==" in line and not line.startswith("#"))
    assert {name: resolved[name.lower()] for name in pins} == pins | {"torch": resolved["torch"]}
    assert resolved["torch"].startswith("2.13.0")
    assert not [name for name in resolved if name.startswith("nvidia-")]  # Binder has no GPU


def test_postbuild_installs_llm_magics_and_loads_the_extension_in_every_session(tmp_path):
    environment = tmp_path / "binder-env"
    venv.create(environment, with_pip=True)
    site = Path(sysconfig.get_paths(vars={"base": str(environment), "platbase": str(environment)})["purelib"])
    (site / "requirements.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")  # what the requirements installed
    bin_dir = environment / "bin"
    env = {**os.environ, "HOME": str(tmp_path / "home"), "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    env.pop("VIRTUAL_ENV", None)
    subprocess.run(["bash", str(ROOT / "binder/postBuild")], check=True, env=env, cwd=ROOT, timeout=600)
    code = "print(sorted(m for m in get_ipython().magics_manager.magics['cell'] if m.startswith('llm')))"
    loaded = subprocess.run(
        [str(bin_dir / "python"), "-m", "IPython", "-c", code],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
    )
    assert "['llm_finetune', 'llm_predict']" in loaded.stdout, loaded.stderr
    where = subprocess.run(
        [str(bin_dir / "python"), "-c", "import llm_magics; print(llm_magics.__file__)"],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300,
    )  # fmt: skip
    assert where.stdout.startswith(str(environment))  # postBuild's own install, not this checkout's
