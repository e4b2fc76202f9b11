"""Interrupting the kernel while a run trains in the cell: a final checkpoint, then 'stopped'."""

from __future__ import annotations

import time

import pytest
from jupyter_client.manager import start_new_kernel

from llm_magics import connect

pytestmark = pytest.mark.slow

SETUP = """
%load_ext llm_magics
from llm_magics import connect, tiny_model
db = connect()
base_path = str(tiny_model('tiny'))
db['docs'].insert_many([{'text': f'### Human: {i} ### Assistant: {i}'} for i in range(30)]);
"""
TRAIN = "%%llm_finetune interrupted -o run\nmodel: {{ base_path }}\ndata: docs\nlora_r: 4\nmax_steps: 100000\n"


def execute(client, code: str, timeout: float = 120) -> dict:
    reply = client.execute_interactive(code, timeout=timeout, output_hook=lambda msg: None)
    return reply["content"]


def test_an_interrupt_saves_a_checkpoint_and_leaves_the_notebook_usable(workdir):
    manager, client = start_new_kernel(kernel_name="python3", cwd=str(workdir))
    try:
        assert execute(client, SETUP)["status"] == "ok"
        client.execute(TRAIN)
        db = connect()  # the same embedded store, from this process
        deadline = time.monotonic() + 120
        while not any(run.get("step", 0) >= 3 for run in db.show("run", "interrupted")):
            assert time.monotonic() < deadline, "the run did not start"
            time.sleep(0.2)
        manager.interrupt_kernel()
        reply = client.get_shell_msg(timeout=120)["content"]
        assert reply["status"] == "ok"  # the cell ended normally, after the checkpoint
        (run,) = db.show("run", "interrupted")
        assert run["status"] == "stopped"
        (checkpoint,) = db.show("checkpoint", "interrupted")
        assert checkpoint["step"] == run["step"] >= 3
        assert execute(client, "print(run.status, 1 + 1)")["status"] == "ok"
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)
