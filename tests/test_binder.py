"""The Binder set-up: its requirements install in a fresh environment, and postBuild leaves every
IPython session with the magics loaded."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import venv
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
ROOT = Path(__file__).parent.parent


def _binder_environment(requirements: Path) -> Path:
    """A virtual environment with the Binder requirements installed, kept (in ``.venv/``) under the
    hash of what decides it: installing torch and transformers into a fresh one takes a minute
    or more, and the same requirements install the same way."""
    key = hashlib.sha256(requirements.read_bytes() + (ROOT / "pyproject.toml").read_bytes()).hexdigest()[:16]
    environment = ROOT / ".venv" / f"binder-{key}"
    if (environment / "installed").is_file():
        return environment
    for stale in (ROOT / ".venv").glob("binder-*"):
        shutil.rmtree(stale, ignore_errors=True)
    venv.create(environment, with_pip=True)
    pip = [str(environment / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}
    subprocess.run([*pip, "-r", str(requirements)], check=True, env=env, cwd=ROOT, timeout=900)
    (environment / "installed").touch()  # only a complete install is reused
    return environment


def test_the_binder_requirements_install_and_postbuild_loads_the_extension(tmp_path):
    # download.pytorch.org is not reachable from CI: the same pins come from this machine's index
    requirements = tmp_path / "requirements.txt"
    lines = (ROOT / "binder/requirements.txt").read_text().splitlines()
    requirements.write_text("\n".join(line for line in lines if not line.startswith("--extra-index-url")))
    bin_dir = _binder_environment(requirements) / "bin"
    env = {**os.environ, "HOME": str(tmp_path / "home"), "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    env.pop("VIRTUAL_ENV", None)
    subprocess.run(["bash", str(ROOT / "binder/postBuild")], check=True, env=env, cwd=ROOT, timeout=600)
    loaded = subprocess.run(
        [
            str(bin_dir / "ipython"),
            "-c",
            "print(sorted(m for m in get_ipython().magics_manager.magics['cell'] if m.startswith('llm')))",
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
    )
    assert "['llm_finetune', 'llm_predict']" in loaded.stdout, loaded.stderr
    version = subprocess.run(
        [str(bin_dir / "python"), "-c", "import torch; print(torch.__version__, torch.cuda.is_available())"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert version.stdout.split()[0].startswith("2.13.0") and "False" in version.stdout
