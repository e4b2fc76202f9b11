"""Interrupting the kernel while a run trains in the cell: a final checkpoint, then 'stopped'."""

from __future__ import annotations

import time

import pytest
from jupyter_client.manager import start_new_kernel

from llm_magics import connect
from llm_magics.training.local import STOPPING

pytestmark = pytest.mark.slow

SETUP = """
%load_ext llm_magics
%config LLMMagics.update_interval = 0
from llm_magics import connect, tiny_model
db = connect()
base_path = str(tiny_model('tiny'))
db['docs'].insert_many([{'text': f'### Human: {i} ### Assistant: {i}'} for i in range(30)]);
"""
TRAIN = "%%llm_finetune interrupted -o run\nmodel: {{ base_path }}\ndata: docs\nlora_r: 4\nmax_steps: 100000\n"


def cell_messages(client, msg_id: str) -> list[dict]:
    """The IOPub messages of the cell ``msg_id`` asked to run, until the kernel is idle after it."""
    messages = []
    while True:
        message = client.get_iopub_msg(timeout=30)
        if message["parent_header"].get("msg_id") != msg_id:
            continue
        messages.append(message)
        if message["msg_type"] == "status" and message["content"]["execution_state"] == "idle":
            return messages


def execute(client, code: str, timeout: float = 120) -> dict:
    reply = client.execute_interactive(code, timeout=timeout, output_hook=lambda msg: None)
    return reply["content"]


def test_an_interrupt_saves_a_checkpoint_and_leaves_the_notebook_usable(workdir):
    manager, client = start_new_kernel(kernel_name="python3", cwd=str(workdir))
    try:
        assert execute(client, SETUP)["status"] == "ok"
        training = client.execute(TRAIN)
        db = connect()  # the same embedded store, from this process
        deadline = time.monotonic() + 120
        while not any(run.get("step", 0) >= 3 for run in db.show("run", "interrupted")):
            assert time.monotonic() < deadline, "the run did not start"
            time.sleep(0.2)
        manager.interrupt_kernel()
        reply = client.get_shell_msg(timeout=120)["content"]
        assert reply["status"] == "ok"  # the cell ended normally, after the checkpoint
        # the view said it was stopping (no red line on stderr), then became the summary
        sent = cell_messages(client, training)
        assert not [m for m in sent if m["msg_type"] == "stream" and "interrupt again" in m["content"]["text"]]
        assert [m for m in sent if m["msg_type"] == "comm_msg" and STOPPING in str(m["content"]["data"])]
        (view,) = [
            m["content"] for m in sent if "application/vnd.jupyter.widget-view+json" in m["content"].get("data", {})
        ]
        updates = [m["content"] for m in sent if m["msg_type"] == "update_display_data"]
        (summary,) = [u["data"] for u in updates if u["transient"] == view["transient"]][-1:]
        assert "llm-summary" in summary["text/html"] and "stopped" in summary["text/plain"]
        (run,) = db.show("run", "interrupted")
        assert run["status"] == "stopped"
        (checkpoint,) = db.show("checkpoint", "interrupted")
        assert checkpoint["step"] == run["step"] >= 3
        assert execute(client, "print(run.status, 1 + 1)")["status"] == "ok"
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)


def test_without_a_view_the_stopping_line_becomes_how_the_run_ended(capsys):
    import os
    import signal
    import threading

    from llm_magics.runs.run import Control, RunState
    from llm_magics.training.local import _interrupt_stops

    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signals reach the main thread only")
    state, control = RunState("r1", "m", "kernel", status="running", step=3), Control()
    with _interrupt_stops(state, control):
        os.kill(os.getpid(), signal.SIGINT)  # handled before the next line runs
        assert control.stop.is_set() and state.stopping == STOPPING
        state.status = "stopped"
    # a notebook (and a terminal) shows the line after the carriage return, not the one before it
    said = capsys.readouterr().err
    assert said == "S" + STOPPING[1:] + "\r" + "run r1: stopped at step 3".ljust(len(STOPPING)) + "\n"
