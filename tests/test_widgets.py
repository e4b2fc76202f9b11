"""Widget logic without a browser: throttled live view, checkpoint browser actions, probes, runs."""

from __future__ import annotations

import html
import time
from pathlib import Path

import ipywidgets
import pytest
from helpers import Shell, qa_docs, small_config
from IPython.utils.capture import capture_output

from llm_magics import LLM
from llm_magics.runs.run import Control, Run, RunState
from llm_magics.widgets.checkpoints import CheckpointBrowser
from llm_magics.widgets.compare import config_diff
from llm_magics.widgets.progress import TrainingView, summary_html

pytestmark = pytest.mark.slow
HOSTILE = "<img src=x onerror=alert(1)>"


@pytest.fixture
def count_messages(monkeypatch):
    """Counts state messages sent to the browser by widgets."""
    sent = []
    original = ipywidgets.Widget.send_state

    def send_state(self, key=None):
        sent.append((type(self).__name__, key))
        return original(self, key)

    monkeypatch.setattr(ipywidgets.Widget, "send_state", send_state)
    return sent


def fake_run(db, **state) -> Run:
    return Run(db, "r1", RunState("r1", "m", "thread", **state), Control())


def test_the_view_is_throttled_however_fast_the_steps(db, count_messages):
    run = fake_run(db, total_steps=20000)
    view = TrainingView(run, update_interval=0.5)
    count_messages.clear()
    started = time.monotonic()
    for step in range(1, 20001):
        run.state.step = step
        run.state.history.append({"step": step, "loss": 1 / step})
        run.state.changed()
    time.sleep(0.6)  # the pending render arrives once the interval has passed
    elapsed = time.monotonic() - started
    assert view.renders <= 2 + elapsed / 0.5
    assert view.progress.value == 20000
    assert len(count_messages) <= 3 * view.renders  # bar, body and (at the end) button: one message each


def test_a_2000_step_run_sends_about_two_updates_a_second(db, tiny_path, count_messages):
    db["d"].insert_many([{"text": f"t{i}"} for i in range(50)])
    views = []

    def show(run):
        views.append(TrainingView(run, update_interval=0.5, stoppable=False))

    config = small_config(
        max_steps=2000, save_steps=5000, eval_strategy="no", per_device_train_batch_size=1, lora_r=1, max_length=8
    )
    started = time.monotonic()
    run = LLM("fast", tiny_path).fit(select="d", db=db, configuration=config, on_start=show)
    elapsed = time.monotonic() - started
    (view,) = views
    assert run.status == "completed" and view.progress.value == view.progress.max == 2000
    assert view.renders <= 2 + 2 * elapsed, (view.renders, elapsed)
    assert len(count_messages) <= 3 * view.renders + 3


def test_a_live_run_shows_its_view_with_the_configured_interval_and_a_finished_one_its_summary(db):
    shell = Shell({"update_interval": 3.0})
    shell.ns["run"] = run = fake_run(db, total_steps=4)
    _, captured = shell.run("run")
    (shown, _note) = captured.outputs  # the note: what stays if the kernel goes first (test_kernel_gone)
    assert "application/vnd.jupyter.widget-view+json" in shown.data
    (view,) = [listener.__self__ for listener in run.state.listeners]
    assert view.update_interval == 3.0
    run.state.status = "completed"
    with capture_output() as ended:
        run.state.changed()  # the run ends: the shown view is replaced by the static summary
    (replaced, _note_gone) = ended.outputs
    assert replaced.update and replaced.transient["display_id"] == shown.transient["display_id"]
    assert "llm-summary" in replaced.data["text/html"]
    _, captured = shell.run("run")
    (shown,) = captured.outputs
    assert "llm-summary" in shown.data["text/html"] and "application/vnd.jupyter.widget-view+json" not in shown.data


def test_the_summary_escapes_the_error(db):
    run = fake_run(db, status="failed", error=f"bad {HOSTILE}", total_steps=4, step=2)
    page = summary_html(run.state)
    assert HOSTILE not in page and "&lt;img" in page and "failed" in page


@pytest.fixture
def trained(db, tiny_path):
    db["docs"].insert_many(qa_docs(30))
    config = small_config(probe_prompts=[HOSTILE, "### Human: 2 ### Assistant:"], probe_max_new_tokens=4)
    run = LLM("browsed", tiny_path).fit(select="docs", db=db, configuration=config)
    return db, run


def select_step(browser, step):
    browser.table.value = tuple(i for i, r in browser.records.items() if r["step"] == step)


def test_probe_answers_are_stored_with_each_checkpoint_and_shown_escaped(trained):
    db, run = trained
    for checkpoint in db.show("checkpoint", "browsed"):
        assert [p["prompt"] for p in checkpoint["probes"]] == [HOSTILE, "### Human: 2 ### Assistant:"]
        assert all(isinstance(p["answer"], str) for p in checkpoint["probes"])
    assert [p["step"] for p in run.state.probes] == [2, 2, 4, 4, 6, 6]  # every checkpoint's, oldest first
    page = summary_html(run.state)
    assert HOSTILE not in page and "&lt;img src=x" in page
    assert 'class="llm-probe-grid"' in page and page.count('<th class="llm-step"') == 3


def test_the_browser_lists_the_checkpoints_with_flags(trained):
    db, _ = trained
    browser = CheckpointBrowser(db, "browsed")
    try:
        assert [r["step"] for r in browser.records.values()] == [2, 4, 6]
        rows = browser.table.rows
        assert [row["cells"]["step"] for row in rows] == ["2", "4", "6"]
        assert ["latest" in row["marks"] for row in rows] == [False, False, True]
        assert rows[-1]["marks"][-1] == "latest" and [row["sort"]["step"] for row in rows] == [2, 4, 6]
        assert {"step", "eval loss", "created (UTC)"} <= {column["label"] for column in browser.table.columns}
        assert "checkpoints of browsed" in browser._repr_mimebundle_()["text/plain"]
    finally:
        browser.close()


def wait_for(condition, what, timeout=120):
    """Waits for what a button's background thread shows."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what()
        time.sleep(0.05)


def button(box, description):
    (found,) = [child for child in box.children if child.description == description]
    return found


def test_selecting_a_row_shows_its_probe_answers_escaped(trained):
    db, _ = trained
    browser = CheckpointBrowser(db, "browsed")
    try:
        for step in (2, 6):
            select_step(browser, step)
            (record,) = [r for r in browser.records.values() if r["step"] == step]
            page = browser.output.value
            assert 'class="llm-probes"' in page and HOSTILE not in page and "&lt;img src=x" in page
            for probe in record["probes"]:
                assert f"<code>{html.escape(probe['answer'])}</code>" in page
            assert page.count(f">{step}</td>") == 2  # one row per probe prompt, of this checkpoint
    finally:
        browser.close()


def test_use_changes_what_predict_uses_and_survives_a_new_handle(trained):
    db, _ = trained
    browser = CheckpointBrowser(db, "browsed")
    try:
        select_step(browser, 4)
        browser.use_button.click()
        assert db.store.checkpoint("browsed")["step"] == 4
        assert "now uses step 4" in browser.message.value
        assert "in use" in browser.table.rows[1]["marks"] and "in use" not in browser.table.rows[2]["marks"]
        from llm_magics import connect

        assert connect(db.uri).store.checkpoint("browsed")["step"] == 4
    finally:
        browser.close()


def test_export_writes_the_selected_checkpoint_with_its_progress_and_says_what_is_missing(trained, tmp_path):
    """The browser's Export (its GGUF path, with llama.cpp, is in tests/test_gguf.py)."""
    import json

    db, _ = trained
    browser = CheckpointBrowser(db, "browsed")
    panel, target = browser.exporter, tmp_path / "exported"
    shown = []
    panel.status.observe(lambda change: shown.append(change.new), names="value")
    try:
        panel.start().join()
        assert "write the directory to export to first" in panel.status.value and panel.progress.bar_style == "danger"
        panel.path.value = str(target)
        browser.table.value = tuple(browser.records)[:2]
        panel.start().join()
        assert "select one checkpoint to export" in panel.status.value and not target.exists()
        select_step(browser, 4)
        panel.format.value = "merged"
        shown.clear()
        assert panel.start().join() is None and not panel.button.disabled
        assert shown[0].startswith("browsed@") and shown[0].endswith(":4: 1/1 merging the adapter into its base…")
        assert f"saved as a standalone model in <code>{target}</code>" in panel.status.value
        assert (panel.progress.value, panel.progress.bar_style) == (1, "success")
        assert json.loads((target / "llm_magics.json").read_text())["step"] == 4
        panel.start().join()
        assert "exists and is not empty" in panel.status.value and panel.progress.bar_style == "danger"
    finally:
        browser.close()


def test_export_offers_gguf_only_where_the_tokenizer_can_become_one_and_a_new_selection_clears_its_error(
    trained, tmp_path
):
    """The byte-level tiny model: the GGUF types disabled before a click, the reason beside them,
    the merged model chosen; a SentencePiece model's checkpoints offer them again. A failure is one
    line, gone when another checkpoint is selected."""
    import traitlets

    from llm_magics.export.gguf_tokenizer import gguf_refusal
    from llm_magics.models.tiny import tiny_sentencepiece_model

    db, _ = trained
    spm = tiny_sentencepiece_model(tmp_path / "spm")
    LLM("spm", str(spm)).fit(select="docs", db=db, configuration=small_config(max_steps=2, eval_strategy="no"))
    browser = CheckpointBrowser(db, "browsed")
    panel = browser.exporter
    try:
        reason = gguf_refusal(db.store.run_base(next(iter(browser.records.values()))["run"])["model"])
        assert "(ByT5Tokenizer) has no vocabulary file" in reason and panel.refusal == reason
        assert panel.format.value == "merged" and html.escape(reason) in panel.why.value
        disabled = [o["value"] for o in panel.format.options if o["disabled"]]
        assert "q8_0" in disabled and "f16" in disabled and "merged" not in disabled and len(disabled) == 15
        with pytest.raises(traitlets.TraitError, match="'q8_0' is not an enabled choice: merged"):
            panel.format.value = "q8_0"
        select_step(browser, 4)  # a selected checkpoint: the same base, the same reason
        assert panel.format.value == "merged" and panel.refusal == reason

        def broken(name, ref):
            raise RuntimeError("the disk is full\n  while writing model.safetensors")

        panel.path.value, panel.load = str(tmp_path / "out"), broken
        panel.start().join()
        assert panel.status.value.endswith(
            ">export failed: RuntimeError: the disk is full while writing model.safetensors</span>"
        )
        assert panel.progress.bar_style == "danger" and panel.progress.layout.display == "flex"
        select_step(browser, 2)
        assert (panel.status.value, panel.output.value, panel.progress.layout.display) == ("", "", "none")

        browser.model.value = "spm"  # its tokenizer.model becomes a GGUF: every type offered, q8_0 chosen
        assert panel.refusal is None and panel.why.value == "" and panel.format.value == "q8_0"
        assert not [o for o in panel.format.options if o["disabled"]]
        panel.format.value = "q4_k_m"
        browser.refresh()  # the user's choice stays
        assert panel.format.value == "q4_k_m"
    finally:
        browser.close()


def stored_steps(db):
    return [c["step"] for c in db.show("checkpoint", "browsed")]


def test_delete_asks_first_then_removes_files_and_record(trained):
    """Every delete is confirmed (as the README says; before, an unselected one went at once), and
    a new selection clears the question, the message and the answer of the old one (issue #18)."""
    db, _ = trained
    browser = CheckpointBrowser(db, "browsed")
    try:
        select_step(browser, 2)
        path = Path(browser.records[browser.table.value[0]]["path"])
        browser.delete_button.click()
        assert browser.confirm.layout.display == "flex" and "steps 2: their files and records?" in (
            browser.confirm.children[0].value
        )
        assert stored_steps(db) == [2, 4, 6] and path.exists()  # asked, nothing deleted yet
        browser.output.value, browser.message.value = "<pre>an old answer</pre>", "an old message"
        select_step(browser, 4)  # another selection: the question and the old texts go
        assert browser.confirm.layout.display == "none" and browser.message.value == ""
        assert "an old answer" not in browser.output.value  # the new selection's probe answers, if any
        select_step(browser, 2)
        browser.delete_button.click()
        button(browser.confirm, "Yes, delete").click()
        assert stored_steps(db) == [4, 6] and not path.exists() and len(browser.table.rows) == 2
        assert browser.confirm.layout.display == "none"
        select_step(browser, 4)
        browser.use_button.click()
        select_step(browser, 4)
        browser.delete_button.click()
        assert "One of them is the checkpoint %llm_predict uses." in browser.confirm.children[0].value
        assert stored_steps(db) == [4, 6]
        button(browser.confirm, "Cancel").click()
        assert browser.confirm.layout.display == "none"
        assert stored_steps(db) == [4, 6] and db.store.checkpoint("browsed")["step"] == 4
        browser.delete_button.click()
        button(browser.confirm, "Yes, delete").click()
        assert stored_steps(db) == [6] and browser.confirm.layout.display == "none"
        assert db.store.model("browsed")["selected"] is None
        assert [row["cells"]["step"] for row in browser.table.rows] == ["6"]
    finally:
        browser.close()


def test_generate_and_compare_escape_the_prompt_and_answers(trained):
    db, _ = trained
    browser = CheckpointBrowser(db, "browsed")
    try:
        browser.prompt.value = HOSTILE
        browser.max_new_tokens.value = 4
        select_step(browser, 2)
        (record,) = [browser.records[i] for i in browser.table.value]
        browser.generate_button.click()
        wait_for(lambda: browser.message.value.startswith("answer of"), lambda: browser.message.value)
        expected = db.load("model", "browsed", checkpoint=f"{record['run']}:2").predict(HOSTILE, max_new_tokens=4)
        assert browser.output.value == (
            f'<pre class="llm-answer" style="white-space:pre-wrap">{html.escape(expected)}</pre>'
        )
        browser.table.value = tuple(browser.records)[:2]
        browser.compare_button.click()
        wait_for(lambda: browser.message.value == "compared", lambda: browser.message.value)
        page = browser.output.value
        assert HOSTILE not in page and "&lt;img src=x" in page
        assert page.count("browsed@") == 2 and f"browsed@{record['run']}:4" in page
    finally:
        browser.close()


def test_generating_with_a_checkpoint_pruned_meanwhile_says_so_and_refreshes(trained):
    db, _ = trained
    browser = CheckpointBrowser(db, "browsed", refresh_interval=3600)  # no polling: the list is stale
    try:
        browser.prompt.value = "hi"
        select_step(browser, 2)
        (record,) = [browser.records[i] for i in browser.table.value]
        db.store.remove_checkpoint(record)  # save_total_limit, or another kernel, removes it
        browser.generate_button.click()
        wait_for(lambda: "is gone" in browser.message.value, lambda: browser.message.value)
        assert f"checkpoint {record['run']}:2 is gone (pruned or deleted" in browser.message.value
        assert record["_id"] not in {row["id"] for row in browser.table.rows}
        assert "llm-answer" not in browser.output.value
    finally:
        browser.close()


def test_the_browser_refreshes_when_a_background_run_records_checkpoints(trained, tiny_path):
    db, _ = trained
    browser = CheckpointBrowser(db, "browsed", refresh_interval=0.2)
    try:
        config = small_config(max_steps=4, save_steps=2, eval_strategy="no")
        run = LLM("browsed", tiny_path).fit(select="docs", db=db, configuration=config, backend="thread")
        run.wait(60)
        deadline = time.monotonic() + 10
        while len(browser.table.rows) < 5 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(browser.table.rows) == 5
    finally:
        browser.close()


def test_runs_are_compared_by_curves_and_configuration(trained, tiny_path):
    db, first = trained
    second = LLM("browsed", tiny_path).fit(select="docs", db=db, configuration=small_config(lora_r=2))
    diff = dict(config_diff([first.record, second.record]))
    assert diff["lora_r"] == [4, 2] and "max_steps" not in diff
    browser = CheckpointBrowser(db, "browsed")
    try:
        browser.runs.value = (first.id, second.id)
        browser.compare_runs_button.click()
        page = browser.runs_output.value
        charts = page.count('class="llm-metric-chart ')
        assert charts >= 3 and page.count('class="llm-series"') == 2 * charts  # each metric, both runs
        assert 'data-metric="loss"' in page and 'data-metric="eval_loss"' in page and "lora_r" in page
    finally:
        browser.close()


def test_a_run_loaded_from_the_store_displays_its_summary(trained):
    from IPython.display import display

    db, run = trained
    stored = Run(db, run.id)
    Shell()  # a notebook's shell with the extension loaded: it tells IPython how a Run displays
    with capture_output() as captured:
        display(stored)
    (output,) = captured.outputs
    bundle = output.data
    assert "llm-summary" in bundle["text/html"] and "completed" in bundle["text/plain"]
    assert "<polyline" in bundle["text/html"]


def test_probe_steps_answer_between_saves_in_the_live_state(db, tiny_path):
    db["docs"].insert_many(qa_docs(20))
    seen = []

    def watch(run):
        run.state.listeners.append(lambda state: seen.append(tuple(p["step"] for p in state.probes)))

    config = small_config(
        max_steps=6, save_steps=6, eval_strategy="no", probe_prompts=["hi"], probe_steps=2, probe_max_new_tokens=2
    )
    LLM("probed", tiny_path).fit(select="docs", db=db, configuration=config, on_start=watch)
    assert {(2,), (2, 4), (2, 4, 6)} <= set(seen)  # each probed step's answers join the earlier ones


def test_every_view_escapes_a_hostile_record_and_still_shows(db, shell):
    """Records come from a database others may write to: a value where a number belongs is shown as
    text, escaped, in the summary saved with the notebook, the live view, the runs table and the
    browser; nothing fails on it."""
    from llm_magics.store.records import now
    from llm_magics.widgets.progress import run_bundle

    evil = dict.fromkeys(("step", "total_steps", "epoch", "last_loss", "last_eval_loss", "duration"), HOSTILE)
    owner = {"host": "elsewhere", "pid": 1}
    common = {"model": "m", "started": now(), "heartbeat": now(), "owner": owner, "backend": HOSTILE}
    db.store.save_model("m")
    db.store.runs.insert_one(
        {"_id": "r1", "status": "failed", "error": HOSTILE, "config": {"lr": HOSTILE}, **common, **evil}
    )
    db.store.runs.insert_one({"_id": "r2", "status": HOSTILE, "step": 3, "config": {"lr": 1}, **common})
    db.store.metrics.insert_many(
        [{"run": "r1", "step": HOSTILE, "loss": HOSTILE}, {"run": "r1", "step": 1, "loss": 0.5, "eval_loss": HOSTILE}]
    )
    db.store.checkpoints.insert_one(
        {
            "_id": "c1",
            "model": "m",
            "run": "r1",
            "step": HOSTILE,
            "epoch": HOSTILE,
            "size": HOSTILE,
            "created": HOSTILE,
            "metrics": {"loss": HOSTILE, "eval_loss": HOSTILE},
            "probes": [{"prompt": HOSTILE, "answer": HOSTILE}],
            "path": "/nowhere",
            "files": [],
        }
    )
    pages = [run_bundle(Run(db, "r1"))["text/html"]]
    live = Run(db, "r1", Run(db, "r1").stored_state(), Control())
    pages.append(TrainingView(live).body.value)
    table, _ = shell.run("%llm_runs")
    pages.append(table._repr_html_())
    browser = CheckpointBrowser(db, "m")
    try:
        # table cells are set as text in the browser (textContent), so they hold the value as it is
        assert browser.table.rows[0]["cells"]["step"] == HOSTILE and browser.runs.rows[0]["cells"]["run"] == "r1"
        browser.table.value = ("c1",)  # shows its probe answers
        pages.append(browser.output.value)
        browser.use()
        pages.append(browser.message.value)
        browser.runs.value = ("r1", "r2")
        browser.compare_runs()
        pages.append(browser.runs_output.value)
        browser.delete(confirmed=True)
        pages.append(browser.message.value)
    finally:
        browser.close()
    assert all(HOSTILE not in page for page in pages)
    assert all(html.escape(HOSTILE) in page for page in pages[:3])  # shown, as text


def test_the_eta_and_the_token_rate_follow_the_newest_steps_and_read_as_numbers():
    """The ETA uses the pace of the newest logged steps, not an average over a slow start, so it
    does not jump; tokens/s is measured over the same window, live and in the summary, and reads
    as 20,000, not 2e+04 (issue #18)."""
    import time

    from llm_magics.runs.run import RunState
    from llm_magics.widgets.progress import eta, metrics_rows

    state = RunState("r", "m", "thread", status="running", step=40, total_steps=100, first_step=0)
    state.train_started = time.time() - 1000  # the first steps were slow (loading, warm-up)
    for step in range(21, 41):
        state.logged({"time": 100.0 + step * 0.5, "step": step, "num_tokens": step * 10_000})
    assert eta(state) == pytest.approx(0.5 * 60)
    assert dict(metrics_rows(state))["tokens/s"] == "20,000"
    state.recent.clear()
    state.tokens_per_s = 84.64
    assert dict(metrics_rows(state))["tokens/s"] == "84.6"


def test_a_refresh_keeps_what_the_selection_shows(trained):
    """New checkpoints arriving (a refresh) leave the selection's answer and message alone."""
    db, _ = trained
    browser = CheckpointBrowser(db, "browsed")
    try:
        select_step(browser, 4)
        browser.output.value, browser.message.value = "<pre>an answer</pre>", "answer of browsed@4"
        browser.refresh()
        assert browser.output.value == "<pre>an answer</pre>" and browser.message.value == "answer of browsed@4"
        assert [browser.records[i]["step"] for i in browser.table.value] == [4]
    finally:
        browser.close()


def test_a_table_selects_only_rows_it_shows():
    """The kernel sets a selection as a user could: ids of shown rows only (a row deleted
    meanwhile drops out rather than being acted on)."""
    from llm_magics.widgets.table import Table

    table = Table(columns=[{"key": "step", "label": "step", "numeric": True}])
    table.rows = [{"id": "a", "cells": {"step": "2"}}, {"id": "b", "cells": {"step": "4"}}]
    table.value = ("b", "gone", "a")
    assert table.value == ["b", "a"]
