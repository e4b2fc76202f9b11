"""Taking a run out of its view, and its context, in JupyterLab through Chromium (issue #32, items
11 and 12): the chart as SVG and PNG as the page shows it (the scale the switch chose, the theme's
colours written in), the metrics as CSV, from the summary and from the live view; the
configuration panel unfolds with the keys that were set first; a detached run's view shows its
newest log lines; without a GPU, the process's CPU and memory.

The views are shown from made-up states (tests/test_browser.py trains), so the page is ready in
seconds.
"""

from __future__ import annotations

import csv
import io
import re
import struct
import xml.etree.ElementTree as ET

import pytest
from browser_lab import ARTIFACTS, cell_output, open_notebook, screenshot

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(600)]
SVG = "{http://www.w3.org/2000/svg}"

SETUP = """
%load_ext llm_magics
from pathlib import Path
from IPython.display import display
from llm_magics import connect
from llm_magics.runs.run import Control, Run, RunState
from llm_magics.widgets.progress import TrainingView, summary_bundle

db = connect("mongomock://downloads")
history = [{"step": s, "loss": 2 / s**0.5, "learning_rate": 1e-4 * (1 - s / 41),
            **({"eval_loss": 2.1 / s**0.5} if s % 10 == 0 else {})} for s in range(1, 41)]
config = {"learning_rate": 1e-4, "lora_r": 16, "max_steps": 40, "seed": 42}
log = Path("train.log")
log.write_text("".join(f"2026-12-05 10:00:{s:02d} step {s}/40  loss {2 / s**0.5:.4g}\\n" for s in range(1, 21)))
live = RunState("r1", "my model", "process", status="running", step=20, total_steps=40, history=history[:20],
                log=log, config=config, config_set=["max_steps", "lora_r"])
live.take({"step": 20, "cpu_percent": 187.0, "ram_rss": 1.5 * 2**30, "ram_peak": 1.75 * 2**30})
done = RunState("r2", "my model", "thread", status="completed", step=40, total_steps=40, epoch=2.0,
                history=[{**row, "time": 1000 + 1.5 * row["step"]} for row in history], started=990.0,
                ended=1062.0, loss=0.316, eval_loss=0.332, learning_rate=2.4e-6, tokens_per_s=10450.0,
                checkpoints=[{"step": 20}, {"step": 40}], config=config, config_set=["max_steps", "lora_r"])
"""
CELLS = [
    SETUP,
    "TrainingView(Run(db, 'r1', live, Control()), stoppable=False).show()",
    "display(summary_bundle(done), raw=True)",
]
LIVE, SUMMARY = 1, 2


def saved(page, link) -> tuple[str, bytes]:
    with page.expect_download(timeout=30_000) as download:
        link.click()
    return download.value.suggested_filename, download.value.path().read_bytes()


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n", data[:16]
    return struct.unpack(">II", data[16:24])


def test_the_chart_and_metrics_leave_the_view_as_shown(page, lab):
    open_notebook(page, lab, "downloads.ipynb", CELLS)
    page.evaluate("() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); }")
    for selector in (".llm-training-view", ".llm-summary"):
        page.locator(selector).first.wait_for(timeout=60_000)
    summary, live = cell_output(page, SUMMARY), cell_output(page, LIVE)

    # the CSV: every charted metric at each logged step, from the link itself
    name, data = saved(page, summary.locator(".llm-download-csv"))
    rows = list(csv.reader(io.StringIO(data.decode())))
    assert name == "my_model-r2-metrics.csv" and rows[0] == ["step", "elapsed_s", "loss", "learning_rate", "eval_loss"]
    assert len(rows) == 41 and rows[40][:2] == ["40", "58.5"] and float(rows[40][2]) == pytest.approx(2 / 40**0.5)

    # the SVG as shown: on the linear axis, then on the log one the switch chose; no hover labels,
    # no style sheet (each line carries its computed colour), on the page's background
    name, data = saved(page, summary.locator(".llm-download-svg"))
    chart = ET.fromstring(data)
    assert name == "my_model-r2-chart.svg" and chart.tag == f"{SVG}svg"
    classes = [element.get("class") or "" for element in chart.iter()]
    assert any("llm-scale-linear" in c for c in classes) and not any("llm-scale-log" in c for c in classes)
    assert not any("llm-tip" in c for c in classes) and chart.find(f".//{SVG}style") is None
    lines = [e for e in chart.iter(f"{SVG}polyline") if e.get("data-series") == "loss"]
    assert lines and all("stroke: rgb(" in (e.get("style") or "") for e in lines)
    assert chart[0].tag == f"{SVG}rect" and chart[0].get("fill") == "#ffffff"
    summary.locator(".llm-switch-log").check()
    _, data = saved(page, summary.locator(".llm-download-svg"))
    classes = [element.get("class") or "" for element in ET.fromstring(data).iter()]
    assert any("llm-scale-log" in c for c in classes) and not any("llm-scale-linear" in c for c in classes)

    # the PNG: the same chart drawn at twice its size
    box = summary.locator("svg.llm-curve").first.bounding_box()
    name, data = saved(page, summary.locator(".llm-download-png"))
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "downloaded-chart.png").write_bytes(data)  # to look at
    assert name == "my_model-r2-chart.png" and png_size(data) == (
        2 * int(-(-box["width"] // 1)),
        2 * int(-(-box["height"] // 1)),
    )

    # the live view's links, sent once, find the chart as it is at the click
    name, data = saved(page, live.locator(".llm-download-png"))
    assert name == "my_model-r1-chart.png" and min(png_size(data)) > 100

    # the configuration unfolds, the keys that were set first and in bold
    panel = summary.locator("details.llm-config")
    assert "configuration: 2 keys set (max_steps, lora_r)" in panel.locator("summary").inner_text()
    assert not panel.locator("tr").first.is_visible()
    panel.locator("summary").click()
    keys = panel.locator("tr th").all_inner_texts()
    assert keys[:2] == ["max_steps", "lora_r"] and panel.locator("tr").first.is_visible()
    screenshot(summary, "run-summary.png")  # README's picture of a summary
    live.locator("details.llm-config summary").click()
    assert live.locator("details.llm-config tr").first.is_visible()

    # a detached run's newest log lines, and the process's CPU and memory where there is no GPU
    tail = live.locator(".llm-log-tail pre").inner_text().splitlines()
    assert len(tail) == 6 and tail[-1].endswith("step 20/40  loss 0.4472")
    assert re.search(r"CPU\s+187%\s+RAM\s+1\.50 GiB \(peak 1\.75\)", live.inner_text())
