"""The notebooks in notebooks/ run top to bottom in a real kernel (nbclient), offline."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

pytestmark = pytest.mark.slow
NOTEBOOKS = Path(__file__).parent.parent / "notebooks"


def execute(name: str, workdir: Path) -> list[list[dict]]:
    """Runs a copy of the notebook in ``workdir``; returns each code cell's outputs."""
    path = workdir / name
    shutil.copy(NOTEBOOKS / name, path)
    notebook = nbformat.read(path, as_version=4)
    NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(workdir)}}
    ).execute()
    return [cell.outputs for cell in notebook.cells if cell.cell_type == "code"]


def text(outputs: list[dict]) -> str:
    parts = [o.get("text", "") for o in outputs]
    parts += [o.get("data", {}).get("text/plain", "") for o in outputs]
    parts += [o.get("data", {}).get("text/html", "") for o in outputs]
    return "\n".join(parts)


# Ray's own lines ("WARNING worker.py:1681 -- SIGTERM handler is not set ...") and its start-up news
RAY_SAYS = re.compile(r"(INFO|WARNING|ERROR) \S+\.py:\d+ -- |local Ray instance|SIGTERM handler|oken authentication")


def ray_in_stderr(outputs: list[dict]) -> str:
    """What Ray wrote into a cell's stderr (a red box in JupyterLab): the data warnings of the
    run are the user's to see, Ray's are not."""
    written = "".join(o.get("text", "") for o in outputs if o.get("name") == "stderr")
    return "\n".join(line for line in written.splitlines() if RAY_SAYS.search(line))


def test_the_notebooks_are_stored_without_outputs():
    for path in NOTEBOOKS.glob("*.ipynb"):
        notebook = nbformat.read(path, as_version=4)
        nbformat.validate(notebook)
        assert not any(cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code"), path.name


def test_quickstart(workdir):
    outputs = execute("quickstart.ipynb", workdir)
    finetune, status = outputs[3], outputs[4]
    assert "llm-summary" in text(finetune)  # the live view ended as a static summary
    assert "completed [100, 200, 300]" in text(status)
    assert "application/vnd.jupyter.widget-view+json" in outputs[5][0]["data"]  # the checkpoint browser
    assert outputs[6][0]["data"]["text/plain"] == "'Paris.'"  # the tiny model learned its facts
    assert "llm-comparison" in text(outputs[7])
    assert "capitals" in text(outputs[8])
    assert (workdir / ".llm_magics").is_dir()  # the default, embedded store
    detached, runs, attached, waited, log = outputs[9:14]
    assert "llm-summary" in text(detached)  # its live view, followed through the store to the end
    assert "process" in text(runs) and "llm-summary" in text(attached)
    assert "completed [100, 200]" in text(waited)
    assert text(log).strip().endswith(": completed")


def test_python_api(workdir):
    outputs = execute("python_api.ipynb", workdir)
    assert "completed" in text(outputs[3])
    assert "[(80," in text(outputs[4]) and "(240," in text(outputs[4])
    assert "'applied'" in text(outputs[6]) and "'llm-finetune'" in text(outputs[6])
    assert (workdir / "exported/llm-finetune/model.safetensors").is_file()


@pytest.mark.ray
@pytest.mark.xdist_group("ray-own")  # its own Ray, in turn with the others that start one (test_ray.py)
def test_ray(workdir):
    outputs = execute("ray.ipynb", workdir)
    assert "completed [10, 20]" in text(outputs[3])
    assert not ray_in_stderr(outputs[2])  # Ray's own log is the run's (%llm_logs), not the cell's (#32)


@pytest.mark.ray
@pytest.mark.xdist_group("ray-own")
def test_sweeps(workdir):
    outputs = execute("sweeps.ipynb", workdir)
    sweep, waited, answer, runs = outputs[3], outputs[4], outputs[5], outputs[6]
    assert "llm-sweep-summary" in text(sweep)  # the sweep view ended as its static summary
    assert re.search(r"sweep <code>\w+</code> · <span class=\"llm-sweep-status\">completed<", text(sweep))
    # Ray's start-up warnings are in the sweep's log, not in a red box under the view (#32)
    assert not ray_in_stderr(sweep), ray_in_stderr(sweep)
    (log,) = workdir.glob(".llm_magics/artifacts/capitals-sweep/sweep-*/train.log")
    assert "Started a local Ray instance" in log.read_text()
    assert {o["output_type"] for o in waited} == {"stream"}  # no report of Tune's in the notebook's cells
    statuses = re.search(r"^completed (\[.*\])$", text(waited), re.M)
    assert statuses and "'completed'" in statuses.group(1) and "'pruned'" in statuses.group(1), text(waited)
    assert answer[0]["data"]["text/plain"].startswith("'")
    assert text(runs).count("capitals-sweep") >= 4
    assert "· trial 4 · learning_rate=1e-08, lora_r=16" in text(runs)  # which trial each run is


def test_real_model_skips_cleanly_offline(workdir):
    outputs = execute("real_model.ipynb", workdir)
    assert [o["output_type"] for cell in outputs for o in cell] == ["stream"]
    assert text(outputs[0]).startswith("Offline: huggingface.co cannot be reached")


def test_preferences(workdir):
    outputs = execute("preferences.ipynb", workdir)
    assert "completed" in text(outputs[2])  # the SFT run's summary
    assert "a completion of the starting model · rewards: has_letter" in text(outputs[4])
    assert "llm-completions" in text(outputs[5]) and 'data-series="rewards/has_letter/mean"' in text(outputs[5])
    status, first, _, last = text(outputs[6]).split()
    assert status == "completed" and float(last) > float(first) + 0.3
    assert "has_letter" in text(outputs[7]) and "llm-comparison" in text(outputs[8])
