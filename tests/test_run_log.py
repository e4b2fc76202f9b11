"""A run's log reads like a training log (issue #32): a line per logged step, checkpoint,
evaluation and warning, and the end; Ray's own messages go to the log of the run that drives
Ray, never into a cell. The detached run's log is checked in test_detached.py, the sweep's in
test_sweep.py and, in a real kernel, test_notebooks.py."""

from __future__ import annotations

import logging
import os
import re
import sys
import threading
import warnings

import pytest
from helpers import qa_docs, small_config

from llm_magics.runs import logs
from llm_magics.training.run_log import end_line, event_lines, warnings_as_events

STEP = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d step (\d+)/(\d+)  ", re.M)


def test_each_event_is_a_compact_line():
    row = {"kind": "log", "step": 4, "time": 1.0, "epoch": 0.25, "loss": 1.23456, "learning_rate": 2e-4,
           "grad_norm": 0.5, "tokens_per_s": 12345.6, "num_tokens": 9000, "mean_token_accuracy": 0.5,
           "eval_loss": 1.5}  # fmt: skip
    assert event_lines(row, 12) == [
        "step 4/12  epoch 0.25  loss 1.235  eval_loss 1.5  lr 0.0002  grad_norm 0.5  tokens/s 12,346  "
        "mean_token_accuracy 0.5"
    ]
    checkpoint = {"kind": "checkpoint", "step": 4, "path": "/runs/x/checkpoint-4", "size": 3 << 20}
    assert event_lines(checkpoint, 12) == ["checkpoint 4 saved: /runs/x/checkpoint-4 (3.0 MiB)"]
    scored = {"kind": "evaluation", "step": 4, "key": "k", "record": {"scores": {"rouge_l": 0.25}}, "rows": [{}, {}]}
    assert event_lines(scored, 12) == ["generation scores at step 4 over 2 examples: rouge_l 0.25"]
    warned = {"kind": "warning", "text": "UserWarning: x (a.py:1)"}
    assert event_lines(warned, 12) == ["warning: UserWarning: x (a.py:1)"]
    assert event_lines({"kind": "end", "step": 8, "reason": "no improvement"}, 12) == [
        "training ended at step 8: no improvement"
    ]
    assert event_lines({"kind": "probe", "step": 4, "probes": []}, 12) == []
    from llm_magics.runs.run import RunState

    state = RunState("r1", "m", "ray", status="pruned", step=8, total_steps=24, reason="stopped by ASHA")
    state.ended = state.started + 12.5
    assert end_line(state) == "pruned at step 8/24 after 12.5 s: stopped by ASHA"


def test_the_log_is_appended_to_never_through_a_link(tmp_path):
    log = logs.create(tmp_path / "run")
    logs.append(log, "one\n")
    logs.append(log, "two\n")
    assert log.read_text() == "one\ntwo\n" and logs.tail(log, 1) == ["two"]
    elsewhere = tmp_path / "elsewhere.txt"
    elsewhere.write_text("kept\n")
    link = tmp_path / "linked.log"
    link.symlink_to(elsewhere)
    with pytest.raises(OSError, match="Too many levels of symbolic links"):
        logs.append(link, "planted\n")
    assert elsewhere.read_text() == "kept\n"
    fresh = tmp_path / "fresh.log"
    logs.append(fresh, "x\n")
    assert oct(os.stat(fresh).st_mode & 0o777) == "0o600"


def test_the_training_threads_warnings_become_events_and_other_threads_keep_theirs(caplog, capsys):
    events: list[dict] = []
    lonely = logging.getLogger("llm_magics-test.lonely")  # no handler anywhere: logging's last resort
    lonely.propagate = False
    previous = (warnings.showwarning, logging.lastResort)

    def elsewhere():
        warnings.warn("theirs", UserWarning, stacklevel=1)
        logging.getLogger("somelib").warning("their record")

    with warnings.catch_warnings(record=True) as shown, caplog.at_level(logging.WARNING):
        warnings.simplefilter("always")
        with warnings_as_events(events.append, echo=False):
            warnings.warn("mine", UserWarning, stacklevel=1)
            logging.getLogger("somelib.sub").warning("a library's %s", "warning")
            lonely.error("alone")
            other = threading.Thread(target=elsewhere)
            other.start()
            other.join()
    assert [str(w.message) for w in shown] == ["theirs"]  # echo off: the run's are in its log only
    assert [r.getMessage() for r in caplog.records] == ["their record"]
    assert "alone" not in capsys.readouterr().err
    texts = [e["text"] for e in events]
    assert re.fullmatch(r"UserWarning: mine \(test_run_log\.py:\d+\)", texts[0])
    assert texts[1:] == ["somelib.sub: a library's warning", "llm_magics-test.lonely: alone"]
    assert [e.get("level", "warning") for e in events] == ["warning", "warning", "error"]
    assert (warnings.showwarning, logging.lastResort) == previous
    assert not any(h.filters for h in logging.getLogger().handlers)


def test_echoed_warnings_still_show_where_they_showed(caplog):
    events: list[dict] = []
    with warnings.catch_warnings(record=True) as shown, caplog.at_level(logging.WARNING):
        warnings.simplefilter("always")
        with warnings_as_events(events.append):
            warnings.warn("shown too", UserWarning, stacklevel=1)
            logging.getLogger("somelib").warning("logged too")
    assert [str(w.message) for w in shown] == ["shown too"]
    assert [r.getMessage() for r in caplog.records] == ["logged too"] and len(events) == 2


@pytest.mark.slow
def test_a_run_in_the_kernel_keeps_a_log_with_its_steps_checkpoints_and_warnings(db, tiny_path, monkeypatch):
    """The same lines as a detached run's; a warning while it trains shows in the cell as before."""
    from llm_magics import LLM, commands
    from llm_magics.training.callbacks import ProgressCallback

    saved = ProgressCallback.on_save

    def on_save(self, args, state, control, **kwargs):
        warnings.warn(f"saving at step {state.global_step}", UserWarning, stacklevel=1)
        return saved(self, args, state, control, **kwargs)

    monkeypatch.setattr(ProgressCallback, "on_save", on_save)
    db["docs"].insert_many(qa_docs(40))
    config = small_config(max_steps=8, save_steps=4, eval_steps=4, logging_steps=3)
    with pytest.warns(UserWarning, match="saving at step"):
        run = LLM("logged", tiny_path).fit(select="docs", db=db, configuration=config)
    lines = commands.log_lines(db, run.id, 100)
    text = "\n".join(lines)
    assert [int(step) for step, _ in STEP.findall(text)] == [3, 4, 6, 8]  # logging steps and evaluations only
    assert "  loss " in text and "eval_loss" in text and "  lr " in text
    assert re.findall(r"checkpoint (\d+) saved", text) == ["4", "8"]
    assert "warning: UserWarning: saving at step 4 (test_run_log.py:" in text
    assert lines[-1].split(" ", 2)[2].startswith("completed at step 8/8 after ")
    # without a GPU, each logged step says the process's CPU and memory, and so does the view
    assert re.search(r"step 3/8  .*  cpu \d+%  ram \d+\.\d\d GiB$", text, re.M), text
    from llm_magics.widgets.progress import summary_html

    latest = run.state.latest
    assert latest["cpu_percent"] > 0 and 2**20 < latest["ram_rss"] <= latest["ram_peak"]
    summary = summary_html(run.state)
    assert re.search(r"CPU</th><td>\d+%</td>.*RAM</th><td>\d+\.\d\d GiB \(peak \d+\.\d\d\)", summary)
    # its configuration, the keys the cell set first (small_config's and the test's)
    assert "configuration: 10 keys set (per_device_train_batch_size, max_steps, logging_steps, eval_strategy" in summary
    assert re.search(r"<b>max_steps</b></th><td[^>]*>8</td>", summary)


# In a process of its own: another test's run may still drive Ray in this one, keeping Ray's log routed.
RAY_LOG = """
import json, logging, sys, threading
from pathlib import Path
import ray
from llm_magics.runs import logs
from llm_magics.training.ray_log import ray_logged, stderr_logged

ray_logger, tune = logging.getLogger("ray"), logging.getLogger("ray.tune")
tune_own = logging.StreamHandler(sys.stderr)  # once a sweep has run, Tune's logger has one of its own
tune.addHandler(tune_own)
before = list(ray_logger.handlers)
first, second = logs.create(Path(sys.argv[1]) / "a"), logs.create(Path(sys.argv[1]) / "b")
with ray_logged(first):
    tune.warning("Started a local Ray instance.")
    with stderr_logged():
        print("written while Ray starts", file=sys.stderr)
        other = threading.Thread(target=lambda: print("another thread's", file=sys.stderr))
        other.start()
        other.join()
    # ray.init(logging_config=...) sets Ray's handlers anew while this run drives Ray: the next run
    # takes them over again
    for handler in list(ray_logger.handlers):
        ray_logger.removeHandler(handler)
    fresh = logging.StreamHandler(sys.stderr)
    ray_logger.addHandler(fresh)
    with ray_logged(second):
        ray_logger.warning("while two runs drive Ray")
restored = ray_logger.handlers == [*before, fresh] and tune.handlers == [tune_own]
ray_logger.warning("after the runs")
with ray_logged(None):  # a process whose output is the log already: Ray's handlers stay
    unchanged = ray_logger.handlers == [*before, fresh]
texts = {"first": first.read_text(), "second": second.read_text()}
print(json.dumps({**texts, "restored": restored, "unchanged": unchanged}))
"""


def test_rays_own_log_goes_to_the_runs_log_while_it_drives_ray(tmp_path):
    import json
    import subprocess

    done = subprocess.run(
        [sys.executable, "-c", RAY_LOG, str(tmp_path)], capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    first, second, err = out["first"], out["second"], done.stderr
    assert "WARNING ray.tune: Started a local Ray instance." in first and "written while Ray starts" in first
    assert "WARNING ray: while two runs drive Ray" in first and "WARNING ray: while two runs drive Ray" in second
    assert "Started a local Ray" not in err and "written while" not in err and "while two runs" not in err
    assert "another thread's" in err and "another thread's" not in first
    assert out["restored"] and out["unchanged"] and "after the runs" in err and "after the runs" not in first
