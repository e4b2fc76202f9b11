"""The magics in a real Jupyter kernel (nbclient): load, train, predict, list runs."""

from __future__ import annotations

import contextlib
import queue
import time

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
    # the live view, replaced by the static summary when the run ended; its note (for a kernel
    # gone before the run ended) left empty
    (finetune, note) = outputs[2]
    assert note["output_type"] == "display_data" and note["data"] == {}
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
        (shown,) = [o for o in outputs[cell] if o.output_type == "display_data" and o["data"]]  # its note: empty
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


def kernel_messages(manager, client, timeout: float = 60) -> list[dict]:
    """The kernel's IOPub messages until its process has exited, and those it sent on its way."""
    messages, deadline = [], time.monotonic() + timeout
    while manager.is_alive() and time.monotonic() < deadline:
        with contextlib.suppress(queue.Empty):
            messages.append(client.get_iopub_msg(timeout=0.2))
    while True:
        try:
            messages.append(client.get_iopub_msg(timeout=2))
        except queue.Empty:
            return messages


def test_a_detached_runs_view_becomes_a_note_when_the_kernel_shuts_down_and_the_run_goes_on(workdir, tiny_path):
    from jupyter_client.manager import start_new_kernel

    from llm_magics import connect

    manager, client = start_new_kernel(kernel_name="python3", cwd=str(workdir))
    try:
        setup = (
            "%load_ext llm_magics\nfrom llm_magics import connect\n"
            "connect()['docs'].insert_many([{'text': f'### Human: {i} ### Assistant: {i}'} for i in range(24)]);"
        )
        assert client.execute_interactive(setup, timeout=120, output_hook=lambda m: None)["content"]["status"] == "ok"
        cell = f"%%llm_finetune goes-on --detach\nmodel: {tiny_path}\ndata: docs\nlora_r: 4\nmax_steps: 100000\n"
        shown = []
        reply = client.execute_interactive(cell, timeout=120, output_hook=shown.append)
        assert reply["content"]["status"] == "ok", [m["content"] for m in shown]
        displayed = [m["content"] for m in shown if m["msg_type"] == "display_data"]
        (view,) = [c for c in displayed if WIDGET in c["data"]]
        (note,) = [c for c in displayed if "llm-kernel-gone" in c["data"].get("text/html", "")]
        run_id = note["data"]["text/plain"].split("run ", 1)[1].split(":", 1)[0]
        assert note["data"]["text/plain"].endswith(f"the run goes on — %llm_attach {run_id}")

        client.shutdown()  # what the Kernel menu's Shut Down sends
        sent = kernel_messages(manager, client)
        updates = [m["content"] for m in sent if m["msg_type"] == "update_display_data"]
        cleared = [c for c in updates if c["transient"]["display_id"] == view["transient"]["display_id"]]
        assert cleared and cleared[-1]["data"] == {}  # at its exit the view's output went; the note stays
        assert not [c for c in updates if c["transient"]["display_id"] == note["transient"]["display_id"]]

        run = connect().run(run_id)  # the run went on without the kernel
        step = run.record["step"]
        deadline = time.monotonic() + 60
        while run.record["step"] <= step:
            assert run.status in ("starting", "running") and time.monotonic() < deadline
            time.sleep(0.5)
        assert run.stop().wait(120).status == "stopped"
    finally:
        client.stop_channels()
        if manager.is_alive():
            manager.shutdown_kernel(now=True)
