"""The magics in a real Jupyter kernel (nbclient): load, train, predict, list runs."""

from __future__ import annotations

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

pytestmark = pytest.mark.slow

CELLS = [
    "%load_ext llm_magics",
    "db = %llm_db mongomock://kernel-test\n"
    "from llm_magics import tiny_model\n"
    "base_path = str(tiny_model('tiny'))\n"
    "db['docs'].insert_many([{'text': f'### Human: {i} ### Assistant: {i}'} for i in range(24)]);",
    "%%llm_finetune kernel-model -o run\n"
    "model: {{ base_path }}\ndata: docs\nbits: 4\nlora_r: 4\nmax_steps: 4\nsave_steps: 2",
    "print(run.status, [c['step'] for c in run.checkpoints])",
    'answer = %llm_predict kernel-model@2 "### Human: 1 ### Assistant:" --max-new-tokens 4\n'
    "print(type(answer).__name__)",
    "%llm_runs",
]


def executed(cells: list[str], workdir) -> list[list]:
    """Runs the cells as a notebook in a real kernel; returns each cell's saved outputs. A busy
    kernel may send one print() as several stream messages: they are merged, as a notebook shows them."""
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source) for source in cells])
    NotebookClient(
        notebook,
        timeout=300,
        kernel_name="python3",
        allow_errors=True,
        coalesce_streams=True,
        resources={"metadata": {"path": str(workdir)}},
    ).execute()
    return [cell.outputs for cell in notebook.cells]


def test_a_notebook_runs_in_a_real_kernel(workdir):
    outputs = executed(CELLS, workdir)
    assert not any(o.output_type == "error" for cell in outputs[:6] for o in cell)
    (finetune,) = outputs[2]  # the live view, replaced by the static summary when the run ended
    assert finetune["output_type"] == "display_data" and "llm-summary" in finetune["data"]["text/html"]
    assert "application/vnd.jupyter.widget-view+json" not in finetune["data"]
    assert outputs[3][0]["text"] == "completed [2, 4]\n"
    assert outputs[4][0]["text"] == "str\n"
    assert "kernel-model" in outputs[5][0]["data"]["text/plain"]


ASYNC_CELLS = [
    "%load_ext llm_magics",
    CELLS[1].replace("kernel-test", "kernel-async"),
    "%%llm_finetune async-model --async -o run\nmodel: {{ base_path }}\ndata: docs\nlora_r: 4\nmax_steps: 40\n"
    "save_steps: 20",
    "status_when_shown = run.status\nrun",
    "run.wait(300)\nprint(status_when_shown, '->', run.status)",
]
WIDGET = "application/vnd.jupyter.widget-view+json"


def test_a_run_displayed_while_it_trains_ends_as_the_static_summary(workdir):
    outputs = executed(ASYNC_CELLS, workdir)
    assert not any(o.output_type == "error" for cell in outputs for o in cell), outputs
    status_when_shown, _, final = outputs[4][-1]["text"].split()
    assert status_when_shown in ("starting", "running") and final == "completed"
    # the magic's view and the one `run` showed in the next cell: both replaced through their display id
    for cell in (2, 3):
        (shown,) = [o for o in outputs[cell] if o.output_type == "display_data"]
        assert WIDGET not in shown["data"], cell
        assert "llm-summary" in shown["data"]["text/html"] and "completed" in shown["data"]["text/plain"]


def test_a_bad_cell_stops_run_all_with_one_line(workdir):
    cells = ["%load_ext llm_magics", "%%llm_finetune broken\nlearning_rat: 1", "print('after')"]
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source) for source in cells])
    client = NotebookClient(
        notebook, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(workdir)}}
    )
    with pytest.raises(CellExecutionError):
        client.execute()
    (shown,) = notebook.cells[1].outputs
    assert shown["text"] == "UsageError: unknown key 'learning_rat' — did you mean 'learning_rate'?\n"
    assert notebook.cells[2].outputs == []  # Run-All stopped at the bad cell
