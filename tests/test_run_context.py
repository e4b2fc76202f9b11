"""What a view says around a run's numbers (issue #32, items 11 and 12): the process's CPU and
memory where there is no GPU, the configuration it trains with, the newest lines of a detached
run's log, and the chart's metrics as CSV. The browser half (downloads, the panel unfolding) is
tests/test_browser_downloads.py; a real run's figures are checked in test_run_log.py."""

from __future__ import annotations

import csv
import io
import re
import time
from urllib.parse import unquote

from llm_magics.runs.run import RunState
from llm_magics.training.host import HostUsage
from llm_magics.widgets.downloads import downloads_html, file_stem, metrics_csv
from llm_magics.widgets.progress import TrainingView, body_html, host_rows, metrics_rows, summary_html
from llm_magics.widgets.run_context import config_html, log_tail_html


def test_the_process_usage_is_its_own_cpu_share_since_the_last_reading_and_its_memory():
    usage = HostUsage()
    wall, cpu = time.monotonic(), time.process_time()
    while time.process_time() < cpu + 0.3:  # as busy as the machine lets one thread be
        pass
    values = usage.read()
    share = 100 * (time.process_time() - cpu) / (time.monotonic() - wall)
    assert abs(values["cpu_percent"] - share) < 10, (values, share)
    held = bytearray(64 << 20)  # 64 MiB more, touched
    held[::4096] = b"x" * len(held[::4096])
    time.sleep(0.2)
    after = usage.read()
    assert after["cpu_percent"] < 50, after  # a reading covers the time since the last one: idle
    assert after["ram_rss"] - values["ram_rss"] > 60 << 20 and after["ram_peak"] >= after["ram_rss"]
    del held


def test_without_a_gpu_the_view_shows_cpu_and_ram_and_with_one_the_gpu():
    state = RunState("r1", "m", "kernel")
    state.take({"step": 1, "loss": 2.0, "cpu_percent": 183.4, "ram_rss": 1.25 * 2**30, "ram_peak": 1.5 * 2**30})
    rows = dict(metrics_rows(state))
    assert rows["CPU"] == "183%" and rows["RAM"] == "1.25 GiB (peak 1.50)"
    assert host_rows({}) == []
    state.take({"step": 2, "gpu_memory_allocated": 2**30, "gpu_memory_reserved": 2**31, "gpu_memory_peak": 2**30})
    rows = dict(metrics_rows(state))
    assert "GPU memory" in rows and "CPU" not in rows and "RAM" not in rows


def config_state(**config):
    state = RunState("r1", "m", "thread", status="completed")
    state.config = {"learning_rate": 2e-4, "lora_r": 16, "max_steps": 200, "seed": 42, **config}
    state.config_set = ["max_steps", "lora_r", *config]
    return state


def test_the_configuration_panel_lists_the_keys_set_first_then_the_defaults_muted():
    panel = config_html(config_state(note="<script>alert(1)</script>"))
    assert "configuration: 3 keys set (max_steps, lora_r, note)" in panel
    assert "<script>" not in panel and "&lt;script&gt;" in panel  # a record's value, escaped
    keys = re.findall(r'<tr class="llm-config-(\w+)"[^>]*><th[^>]*>(?:<b>)?(\w+)', panel)
    set_first = [("set", "max_steps"), ("set", "lora_r"), ("set", "note")]
    assert keys == [*set_first, ("default", "learning_rate"), ("default", "seed")]
    assert config_html(RunState("r1", "m", "thread")) == ""  # a record without a configuration: no panel
    # the summary carries it folded; the live view as a widget of its own, set once (it keeps its state)
    assert '<details class="llm-config">' in summary_html(config_state())


def test_the_live_view_of_a_detached_run_shows_its_newest_log_lines(tmp_path):
    log = tmp_path / "train.log"
    log.write_text("".join(f"2026-12-05 10:00:{i:02d} step {i}/50  loss {3 - i / 10:.4g}\n" for i in range(1, 21)))
    state = RunState("abcd1234", "m", "process", status="running", log=log)
    tail = log_tail_html(state)
    assert re.findall(r"step (\d+)/50", tail) == ["15", "16", "17", "18", "19", "20"]
    assert "%llm_logs abcd1234" in tail and tail in body_html(state)
    for other in (RunState("r", "m", "kernel", status="running", log=log), RunState("r", "m", "process", log=None)):
        assert log_tail_html(other) == ""  # a run in this kernel shows its cell; no log, no tail
    state.status = "completed"
    assert log_tail_html(state) == ""  # the summary says how it ended


def test_the_charts_metrics_as_csv_one_row_per_logged_step():
    points = [{"step": 1, "loss": 2.5, "learning_rate": 1e-4}, {"step": 2, "loss": 2.25}, {"step": 2, "eval_loss": 2.4}]
    points.append({"step": 3, "=HYPERLINK(1)": 1.0})  # a name from a record does not become a formula
    rows = list(csv.reader(io.StringIO(metrics_csv(points))))
    assert rows == [
        ["step", "loss", "learning_rate", "eval_loss", "'=HYPERLINK(1)"],
        ["1", "2.5", "0.0001", "", ""],
        ["2", "2.25", "", "", ""],
        ["2", "", "", "2.4", ""],
        ["3", "", "", "", "1.0"],
    ]
    timed = [{"step": 1, "time": 1000.0, "loss": 2.5}, {"step": 2, "time": 1002.25, "loss": 2.0}, {"step": 2}]
    assert metrics_csv(timed).splitlines() == ["step,elapsed_s,loss", "1,0.0,2.5", "2,2.25,2.0", "2,,"]
    html = downloads_html(points, file_stem("my/model", "r1"))
    link = re.search(r'download="([^"]+)" href="data:text/csv;charset=utf-8,([^"]+)"', html)
    assert link and link[1] == "my_model-r1-metrics.csv" and unquote(link[2]) == metrics_csv(points)
    assert 'data-file="my_model-r1-chart.svg"' in html and 'data-file="my_model-r1-chart.png"' in html
    assert downloads_html([], "x") == ""  # no chart, nothing to take


def test_the_summary_and_the_live_view_offer_the_downloads(db):
    from llm_magics.runs.run import Control, Run

    state = config_state()
    state.status = "running"
    for step in range(1, 11):
        state.take({"step": step, "loss": 3 - step / 10})
    summary = summary_html(state)
    assert summary.count("llm-download-") == 3 and 'class="llm-downloadable"' in summary
    view = TrainingView(Run(db, "r1", state, Control()), stoppable=False)
    links = [child for child in view.widget.children[3].children if "llm-chart-links" in child._dom_classes]
    assert len(links) == 1 and "llm-download-png" in links[0].value
    assert "llm-config" in view.config.value
