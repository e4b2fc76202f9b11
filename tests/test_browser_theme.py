"""The views in JupyterLab's light and dark themes, driven in Debian's Chromium (issue #32, items 6
to 8): text readable on every row and in the charts (the WCAG contrast ratio, at least 4.5,
measured from the computed colours), a Stop and chart controls that are off say why beside them,
the summary's smoothing and log-scale switches work without a kernel, "Compare runs" keeps its
heading apart from its message, "eval loss" sorts lowest first, and probe answers wrap, left-aligned
and padded, in the live view, the summary and the checkpoint browser.

The views are shown from made-up states (no training: tests/test_browser.py trains), so that the
page is ready in seconds.
"""

from __future__ import annotations

import re

import pytest
from browser_lab import ARTIFACTS, cell_output, change_theme, contrasts, open_notebook

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(600)]
WORD = "x" * 400  # an answer with no place to break: wrapped anyway, never cut

SETUP = f"""
%load_ext llm_magics
import ipywidgets as w
from IPython.display import HTML, display
from llm_magics import connect
from llm_magics.runs.run import Control, Run, RunState
from llm_magics.widgets.checkpoints import table_columns
from llm_magics.widgets.compare import runs_comparison_html
from llm_magics.widgets.probes import probes_html
from llm_magics.widgets.progress import TrainingView, summary_bundle
from llm_magics.widgets.sweep import sweep_html
from llm_magics.widgets.table import Table

db = connect("mongomock://theme")
prompt = "### Human: What is the capital of France? ### Assistant:"
probes = [{{"step": s, "prompt": prompt, "answer": "Paris is the capital. " * 6 + "{WORD}"}} for s in (10, 20)]
history = [{{"step": s, "loss": 2 / s**0.5, "learning_rate": 1e-4 * (1 - s / 41),
            **({{"eval_loss": 2.1 / s**0.5}} if s % 10 == 0 else {{}})}} for s in range(1, 41)]
live = RunState("r1", "theme-model", "kernel", status="running", step=20, total_steps=40, probes=probes,
                history=history[:20])
done = RunState("r2", "theme-model", "thread", status="completed", step=40, total_steps=40, probes=probes,
                history=history, config={{"lora_r": 16, "seed": 42}}, config_set=["lora_r"])
for run_id in ("a", "b"):
    db.store.runs.insert_one({{"_id": run_id, "model": "theme-model", "config": {{"lr": 1}}, "status": "completed"}})
"""
CELLS = [
    SETUP,
    # a run training in this kernel: its Stop and chart controls are off
    "TrainingView(Run(db, 'r1', live, Control()), stoppable=False).show()",
    "display(summary_bundle(done), raw=True)",
    # the checkpoint table: one row selected, one marked best
    "table = Table(columns=table_columns(['bleu']), marks_column='flags')\n"
    "table.rows = [{'id': str(i), 'cells': {'run': 'r2', 'step': str(s), 'eval loss': str(e), 'bleu': str(b)},\n"
    "               'sort': {'step': s, 'eval loss': e, 'bleu': b}, 'marks': ['best'] if i == 1 else []}\n"
    "              for i, (s, e, b) in enumerate([(10, 0.9, 20.0), (20, 0.5, 35.0), (30, 0.7, 30.0)])]\n"
    "table.value = ['2']\n"
    "table.add_class('llm-checkpoints')\n"
    "table",
    "states = [RunState(f't{i}', 'theme-model', 'thread', status='completed',\n"
    "                   history=[{'step': 1, 'eval_loss': loss}]) for i, loss in enumerate((0.9, 0.4, 0.6))]\n"
    "HTML(sweep_html(states, [{'lr': 1e-4}, {'lr': 3e-4}, {'lr': 1e-3}], 'eval_loss', 'min'))",
    "HTML(runs_comparison_html(db.store, ['a', 'b']))",
    "box = w.HTML(probes_html(probes[:1]))\nbox.add_class('llm-output')\nbox",
]
LIVE, SUMMARY, TABLE, SWEEP, COMPARE, PROBES = range(1, 7)
# each text the issue found unreadable, and the rest of the views' text
READ = {
    "selected row": ".llm-checkpoints tr.llm-chosen td",
    "best badge": ".llm-checkpoints .llm-badge-best",
    "table head": ".llm-checkpoints th",
    "best sweep row": "tr.llm-trial[style] td",
    "chart titles": "svg.llm-curve .llm-axis-title",
    "legend": "svg.llm-curve .llm-legend",
    "ticks": "svg.llm-curve .llm-tick",
    "status": ".llm-status",
    "why the stop is off": ".llm-stop-why span",
    "why the chart's controls are off": ".llm-chart-why span",
    "probe answers": "table.llm-probe-grid td",
    "downloads": ".llm-downloads a",
    "configuration": "details.llm-config summary",
    "chart switches": ".llm-chart-switches label",
}


def title_shown(output) -> str:
    """The loss panel's title as shown: its notes that a switch hides left out."""
    return output.locator(".llm-axis-title").first.evaluate(
        "title => [...title.childNodes].filter(node => node.nodeType === Node.TEXT_NODE"
        " || getComputedStyle(node).display !== 'none').map(node => node.textContent).join('')"
    )


def read_everything(page, theme: str) -> None:
    change_theme(page, theme)
    low = {}
    for name, selector in READ.items():
        ratios = contrasts(page.locator(selector))
        assert ratios, f"{name}: nothing shown in {theme}"
        low[name] = round(min(ratios), 2)
    print(theme, low)  # the lowest ratio of each, for the record (pytest -s)
    assert all(ratio >= 4.5 for ratio in low.values()), f"{theme}: {low}"
    ARTIFACTS.mkdir(exist_ok=True)
    page.add_style_tag(content=".Toastify { display: none !important; }")  # JupyterLab's news question
    for name, index in (("live", LIVE), ("summary", SUMMARY), ("table", TABLE), ("sweep", SWEEP)):
        cell_output(page, index).screenshot(path=ARTIFACTS / f"theme-{theme.split()[-1].lower()}-{name}.png")


def test_the_views_read_in_both_themes_and_say_why_a_control_is_off(page, lab):
    open_notebook(page, lab, "theme.ipynb", CELLS)
    page.evaluate("() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); }")
    for selector in (".llm-training-view", ".llm-summary", ".llm-checkpoints tbody tr", ".llm-sweep"):
        page.locator(selector).first.wait_for(timeout=60_000)
    page.locator(".llm-probes").wait_for(timeout=60_000)
    try:
        read_everything(page, "JupyterLab Dark")
        read_everything(page, "JupyterLab Light")
    finally:
        change_theme(page, "JupyterLab Light")

    # a Stop that cannot stop is not coloured as if it could, and says why in text beside it
    live = cell_output(page, LIVE)
    stop = live.locator(".llm-stop")
    assert stop.is_disabled() and "mod-warning" not in stop.get_attribute("class")
    assert "interrupt it (■ in the toolbar) to stop" in live.locator(".llm-stop-why").inner_text()
    assert live.locator(".llm-chart-controls input[type=checkbox]").is_disabled()
    assert "switch in the summary when the run ends" in live.locator(".llm-chart-why").inner_text()

    # the summary's switches work without a kernel: the loss on a log axis, the raw curve
    summary = cell_output(page, SUMMARY)
    linear, log = summary.locator(".llm-scale-linear"), summary.locator(".llm-scale-log")
    smoothed = summary.locator("polyline.llm-smoothed[data-series=loss]").first
    assert linear.is_visible() and not log.is_visible() and smoothed.is_visible()
    point = summary.locator(".llm-pt").first
    at = point.bounding_box()["y"]
    summary.locator(".llm-switch-log").check()
    assert log.is_visible() and not linear.is_visible()
    assert title_shown(summary) == "loss · log scale · smoothed 0.6"
    assert point.bounding_box()["y"] != at  # the hover points moved onto the log curve
    summary.locator(".llm-switch-smooth").uncheck()
    assert not smoothed.is_visible() and title_shown(summary) == "loss · log scale"
    raw = summary.locator(".llm-scale-log polyline.llm-raw[data-series=loss]")
    assert raw.evaluate("line => getComputedStyle(line).strokeOpacity") == "1"

    # the first click on "eval loss" sorts the lowest first; on "bleu" the highest
    table = cell_output(page, TABLE)
    table.locator("th[data-column='eval loss']").click()
    page.wait_for_function("document.querySelector('.llm-checkpoints tbody td:nth-child(5)').textContent === '0.5'")
    assert table.locator("tbody td:nth-child(5)").all_inner_texts() == ["0.5", "0.7", "0.9"]  # eval loss
    assert "▲" in table.locator("th[data-column='eval loss']").inner_text()
    table.locator("th[data-column='bleu']").click()
    page.wait_for_function("document.querySelector('.llm-checkpoints tbody td:nth-child(8)').textContent === '35.0'")
    assert table.locator("tbody td:nth-child(8)").all_inner_texts() == ["35.0", "30.0", "20.0"]  # bleu

    # the comparison's heading and its message on lines of their own
    compared = cell_output(page, COMPARE).inner_text()
    assert re.search(r"configuration keys that differ\n+the runs have the same configuration", compared), compared

    # probe answers: left-aligned, padded, wrapped (the one long word too), in all three places
    for where, cells in (
        ("live", cell_output(page, LIVE).locator("table.llm-probe-grid td")),
        ("summary", cell_output(page, SUMMARY).locator("table.llm-probe-grid td")),
        ("browser", cell_output(page, PROBES).locator("table.llm-probes td")),
    ):
        for cell in cells.all():
            shape = cell.evaluate(
                """cell => {
                  const style = getComputedStyle(cell), box = cell.getBoundingClientRect();
                  const area = cell.closest('.jp-OutputArea-output').getBoundingClientRect();
                  return {align: style.textAlign, left: style.paddingLeft, right: style.paddingRight,
                          overflows: cell.scrollWidth > cell.clientWidth + 1, inside: box.right <= area.right + 1};
                }"""
            )
            assert shape == {"align": "left", "left": "8px", "right": "8px", "overflows": False, "inside": True}, (
                where,
                shape,
            )
