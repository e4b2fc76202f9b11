"""What a live view leaves for when its kernel is gone (``widgets/kernel_gone``), without a
browser: the note beside the view, what it says, the style that swaps them, the kernel's exit.
JupyterLab itself: tests/test_browser_kernel_gone.py; a real kernel's exit: test_notebook_kernel.py."""

from __future__ import annotations

import atexit

import pytest
from helpers import Shell
from IPython.utils.capture import capture_output

from llm_magics.runs.run import Control, Run, RunState
from llm_magics.widgets.kernel_gone import note_of
from llm_magics.widgets.progress import TrainingView, status_html

WIDGET = "application/vnd.jupyter.widget-view+json"


def live_run(db, backend: str = "thread", *, followed: bool = False, **state) -> Run:
    run = Run(db, "ab12cd34", RunState("ab12cd34", "m", backend, status="running", **state), Control())
    run.followed = followed
    return run


def test_a_followed_run_goes_on_and_a_run_of_this_kernel_stopped_with_it():
    state = RunState("ab12cd34", "m", "process")
    assert note_of(state, followed=True).text == (
        "m · run ab12cd34: this kernel stopped following it; the run goes on — %llm_attach ab12cd34"
    )
    state.backend = "thread"
    assert note_of(state, followed=False).text == (
        "m · run ab12cd34: the run stopped with this kernel, before its first checkpoint: run the cell again to "
        "start over"
    )
    state.checkpoints += [{"step": 20}, {"step": 40}]
    resumed = note_of(state, followed=False)
    assert resumed.text == (
        "m · run ab12cd34: the run stopped with this kernel; %%llm_finetune m --resume ab12cd34:40 (in the same "
        "cell) continues it from step 40"
    )
    assert "<code>%%llm_finetune m --resume ab12cd34:40</code>" in resumed.html("llm-gone-x")


def test_a_hostile_name_in_the_note_is_escaped():
    state = RunState("ab12cd34", "<img src=x onerror=alert(1)>", "process")
    page = note_of(state, followed=True).html("llm-gone-x")
    assert "<img" not in page and "&lt;img" in page


def test_the_view_is_shown_with_its_note_which_its_style_hides_while_it_is_connected(db):
    Shell()  # display() goes through the process's shell
    run = live_run(db, "process", followed=True)
    view = TrainingView(run)
    with capture_output() as shown:
        view.show()
    try:
        (widget, note) = shown.outputs
        assert WIDGET in widget.data and "llm-kernel-gone" in note.data["text/html"]
        assert note.data["text/plain"].endswith("the run goes on — %llm_attach ab12cd34")
        token = view.gone.view_class.removeprefix("llm-view-")
        assert view.gone.view_class in view.widget._dom_classes and f"llm-gone-{token}" in note.data["text/html"]
        style = view.widget.children[0].value
        hidden = f":root:has(.llm-view-{token}:not(.jupyter-widgets-disconnected)) .llm-gone-{token} {{display: none}}"
        assert hidden in style and f".llm-view-{token}.jupyter-widgets-disconnected {{display: none}}" in style

        # the kernel exits: the view's output goes (an empty one), the note stays as it was
        with capture_output() as exiting:
            view.gone.exit()
        (cleared,) = exiting.outputs
        assert cleared.update and cleared.data == {} and cleared.transient == widget.transient
    finally:
        view.gone.remove()


def test_a_run_of_this_kernel_updates_its_note_with_each_checkpoint_and_an_ended_run_leaves_none(db, monkeypatch):
    Shell()
    at_exit = []
    monkeypatch.setattr(atexit, "register", at_exit.append)
    monkeypatch.setattr(atexit, "unregister", at_exit.remove)
    run = live_run(db)
    view = TrainingView(run, update_interval=0)
    with capture_output() as shown:
        view.show()
    (_, note) = shown.outputs
    assert "before its first checkpoint" in note.data["text/plain"]
    with capture_output() as saved:
        run.state.checkpoints.append({"step": 20})
        run.state.changed()
        run.state.changed()  # nothing new to say: no message
    (updated,) = saved.outputs
    assert (
        updated.update and updated.transient == note.transient and "--resume ab12cd34:20" in updated.data["text/plain"]
    )

    assert at_exit == [view.gone.exit]
    with capture_output() as ended:
        run.state.status = "completed"
        run.state.changed()
    (summary, gone) = ended.outputs  # the view becomes the summary, the note goes
    assert "llm-summary" in summary.data["text/html"] and gone.data == {} and gone.transient == note.transient
    assert at_exit == []  # nothing left to do at the kernel's exit


def test_a_kernel_that_exits_just_after_the_end_leaves_the_summary_not_the_note(db, monkeypatch):
    """The end is known (a sweep's last trial, a run's final state) but the summary's update has not
    gone out when the kernel shuts down: its exit puts the summary in the view's place."""
    Shell()
    monkeypatch.setattr(atexit, "register", lambda hook: None)
    monkeypatch.setattr(atexit, "unregister", lambda hook: None)
    run = live_run(db)
    view = TrainingView(run, update_interval=0)
    with capture_output() as shown:
        view.show()
    (widget, note) = shown.outputs
    run.state.status = "completed"  # ended; the view's own finish has not run yet
    with capture_output() as exiting:
        view.gone.exit()
        view.gone.exit()  # once only
    (summary, gone) = exiting.outputs
    assert summary.transient == widget.transient and "llm-summary" in summary.data["text/html"]
    assert gone.transient == note.transient and gone.data == {}
    with capture_output() as later:
        view.finish()  # the view's own finish, too late: a summary again, never the note
    assert all("llm-kernel-gone" not in str(o.data) for o in later.outputs)


@pytest.mark.parametrize("status", ["running", "stopped"])
def test_an_interrupted_run_says_it_is_stopping_until_it_has_stopped(status):
    state = RunState("r1", "m", "kernel", status=status, stopping="stopping after this step (interrupt again)…")
    assert ("stopping after this step" in status_html(state)) == (status == "running")


def one_trial_sweep(db, model: str, detached: bool):
    """A running sweep ``sw1`` of one trial (run ``gone0001``): the trial's Run and the SweepRun,
    driven by this kernel (not ``detached``) or followed through the store."""
    from llm_magics.store.records import now
    from llm_magics.training.sweeps import SweepRun

    db.store.add_run({"_id": "gone0001", "model": model, "status": "running", "backend": "ray", "sweep": "sw1"})
    db.store.sweeps.insert_one({"_id": "sw1", "model": model, "status": "running", "metric": "eval_loss",
                                "mode": "min", "scheduler": "asha", "trials": ["gone0001"], "values": [{"lora_r": 8}],
                                "started": now(), "detached": detached})  # fmt: skip
    run = Run(db, "gone0001", RunState("gone0001", model, "ray", status="running"), Control())
    return run, SweepRun(db, "sw1", [run], None if detached else Control())


@pytest.mark.parametrize("detached", [True, False])
def test_a_sweeps_view_leaves_its_note_too(db, detached):
    """A detached sweep goes on in its process; one this kernel drives on Ray Tune stops with it."""
    from llm_magics.widgets.sweep import SweepView

    Shell()
    view = SweepView(one_trial_sweep(db, "<b>swept</b>", detached)[1])
    with capture_output() as shown:
        view.show()
    try:
        (widget, note) = shown.outputs
        assert WIDGET in widget.data and view.gone.view_class in view.widget._dom_classes
        assert "&lt;b&gt;swept&lt;/b&gt; · sweep sw1:" in note.data["text/html"]  # a record's name, escaped
        said = note.data["text/plain"]
        if detached:
            assert said.endswith("this kernel stopped following it; the sweep goes on — %llm_attach sw1")
        else:
            assert said.endswith(
                "the sweep stopped with this kernel; its trials' checkpoints are kept — %llm_runs <b>swept</b>"
            )
    finally:
        view.gone.remove()


def test_a_sweeps_wait_returns_once_its_view_shows_the_summary(db):
    """The summary goes out while the cell that waits still runs: a notebook run headless
    (nbclient, papermill) keeps only what a cell sends while it runs, and else kept the live
    view with the note that the sweep stopped with the kernel."""
    import threading
    import time

    from llm_magics.store.records import now
    from llm_magics.widgets.sweep import SweepView

    Shell()
    run, sweep = one_trial_sweep(db, "swept", detached=False)
    view = SweepView(sweep)

    def the_trial_then_the_sweep_end() -> None:  # as training/tune.py ends them
        run.state.status = "completed"
        for listener in run.state.listeners:
            listener(run.state)
        run.finished()
        time.sleep(0.25)  # the sweep's end is recorded a moment after its last trial's
        db.store.sweeps.update_one({"_id": "sw1"}, {"$set": {"status": "completed", "ended": now()}})
        sweep.control.done.set()

    with capture_output() as shown:
        view.show()
        threading.Thread(target=the_trial_then_the_sweep_end).start()
        sweep.wait(30)
        assert view.gone._done  # the view is its summary already
        sent = [output.data.get("text/html", "") for output in shown.outputs]
        assert any("llm-sweep-summary" in html for html in sent)  # and it went out before wait() returned
    view.gone.remove()
