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


def test_a_notebook_runs_in_a_real_kernel(workdir):
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source) for source in CELLS])
    NotebookClient(
        notebook, timeout=300, kernel_name="python3", allow_errors=True, resources={"metadata": {"path": str(workdir)}}
    ).execute()
    outputs = [cell.outputs for cell in notebook.cells]
    assert not any(o.output_type == "error" for cell in outputs[:6] for o in cell)
    (finetune,) = outputs[2]  # the live view, replaced by the static summary when the run ended
    assert finetune["output_type"] == "display_data" and "llm-summary" in finetune["data"]["text/html"]
    assert "application/vnd.jupyter.widget-view+json" not in finetune["data"]
    assert outputs[3][0]["text"] == "completed [2, 4]\n"
    assert outputs[4][0]["text"] == "str\n"
    assert "kernel-model" in outputs[5][0]["data"]["text/plain"]


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
