"""A live view outlives its kernel in JupyterLab (Chromium through Playwright), and says so.

A detached run's view, then the kernel restarts: JupyterLab marks the view disconnected (its
broken-link icons), and the view gives way to its note, which names ``%llm_attach RUN``; the new
kernel attaches to the run, which went on, and stops it. A run training in a thread of the new
kernel, then the kernel shuts down: the view's output goes at the kernel's exit and the note says
the run stopped with the kernel and how to resume it from its last checkpoint. Opened again, the
saved notebook shows both notes.
"""

from __future__ import annotations

import json
import re

import pytest
from browser_lab import cell_output, current_notebook, open_notebook, run_cell, screenshot

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(900)]

SETUP = (
    "%load_ext llm_magics\n%config LLMMagics.update_interval = 0.2\n"
    "db = %llm_db embedded://gone-store\n"
    "from llm_magics import tiny_model\n"
    "base_path = str(tiny_model('tiny'))\n"
    "if not db['docs'].count_documents({}):\n"
    "    db['docs'].insert_many([{'text': f'### Human: {i}? ### Assistant: {i}'} for i in range(40)])"
)
TRAIN = "model: {{ base_path }}\ndata: docs\nlora_r: 4\nmax_length: 64\nmax_steps: 100000\nsave_total_limit: 2\n"
CELLS = [
    SETUP,
    f"%%llm_finetune gone-detached --detach\n{TRAIN}save_steps: 500\n",
    "%llm_attach gone-detached",
    "%llm_stop gone-detached",
    f"%%llm_finetune gone-here --async\n{TRAIN}save_steps: 20\n",
]
VIEW, NOTE = ".llm-training-view", ".llm-kernel-gone"


def kernel(page, action: str) -> None:
    page.evaluate(f"() => window.jupyterapp.shell.currentWidget.sessionContext.{action}")


def wait_idle(page) -> None:
    page.wait_for_function(
        "window.jupyterapp.shell.currentWidget.sessionContext.session?.kernel?.status === 'idle'", timeout=120_000
    )


def until(page, found, timeout: float = 180.0):
    """Polls ``found()`` until it gives something true; returns it."""
    for _ in range(int(timeout * 4)):
        if value := found():
            return value
        page.wait_for_timeout(250)
    raise AssertionError("timed out")


def step_of(view) -> int:
    """The step a live view shows (0 before it shows one)."""
    shown = view.locator(".llm-steps")
    return int(re.search(r"\d+", shown.inner_text()).group()) if shown.count() else 0


def test_a_view_becomes_a_note_when_its_kernel_restarts_or_shuts_down(page, lab):
    open_notebook(page, lab, "gone.ipynb", CELLS)
    run_cell(page, 0)
    wait_idle(page)
    run_cell(page, 1)
    detached = cell_output(page, 1)
    view, note = detached.locator(VIEW), detached.locator(NOTE)
    before = until(page, lambda: step_of(view))
    assert view.is_visible() and note.count() == 1 and not note.is_visible()  # the note waits, hidden
    run_id = re.search(r"run (\w+)", view.inner_text()).group(1)

    # a restart: JupyterLab marks the view disconnected; the note takes its place, sent by no one
    kernel(page, "session.kernel.restart()")
    note.wait_for(state="visible", timeout=60_000)
    assert not view.is_visible() and detached.locator(".jupyter-widgets-disconnected").count() >= 1
    assert note.inner_text() == (
        f"gone-detached · run {run_id}: this kernel stopped following it; the run goes on — %llm_attach {run_id}"
    )
    screenshot(detached, "kernel-gone-detached.png")

    # the run went on: the new kernel attaches to it, sees it further on, and stops it
    wait_idle(page)
    run_cell(page, 0)
    run_cell(page, 2)
    attached = cell_output(page, 2).locator(VIEW)
    attached.wait_for(timeout=120_000)
    assert run_id in attached.inner_text() and "running" in attached.inner_text()
    assert until(page, lambda: step_of(attached)) > before
    run_cell(page, 3)
    summary = cell_output(page, 2).locator(".llm-summary")
    summary.wait_for(timeout=180_000)  # it stopped: the attached view became the summary
    assert "stopped" in summary.inner_text()
    assert cell_output(page, 2).locator(NOTE).count() == 0  # a view whose run ended leaves no note

    # a run in this kernel, then the kernel shuts down: at its exit the view goes, the note stays
    run_cell(page, 4)
    here = cell_output(page, 4)
    here.locator(VIEW).wait_for(timeout=120_000)
    until(page, lambda: re.search(r"checkpoints\s+\d", here.locator(VIEW).inner_text()))
    kernel(page, "shutdown()")
    here.locator(NOTE).wait_for(state="visible", timeout=60_000)
    assert here.locator(VIEW).count() == 0  # the output itself went, not only hidden
    said = here.locator(NOTE).inner_text()
    assert re.fullmatch(
        r"gone-here · run (\w+): the run stopped with this kernel; %%llm_finetune gone-here --resume \1:(\d+) "
        r"\(in the same cell\) continues it from step \2",
        said,
    ), said
    screenshot(here, "kernel-gone-here.png")

    # saved and opened again: each note, also where the widget can no longer be drawn
    page.evaluate("() => window.jupyterapp.commands.execute('docmanager:save')")
    page.wait_for_function("!window.jupyterapp.shell.currentWidget.context.model.dirty", timeout=30_000)
    saved = json.loads((lab["root"] / "gone.ipynb").read_text())
    (kept,) = [output["data"] for output in saved["cells"][4]["outputs"] if output.get("data")]
    assert set(kept) == {"text/html", "text/plain"} and "the run stopped with this kernel" in "".join(
        kept["text/plain"]
    )
    page.reload()
    notes = current_notebook(page).locator(NOTE)
    notes.nth(1).wait_for(state="visible", timeout=120_000)
    assert notes.count() == 2 and "%llm_attach" in notes.nth(0).inner_text()
