"""Comparing runs on any metric in JupyterLab through Chromium (issue #32, item 10): choosing a
metric shows its chart and hides train loss's, with no kernel call or script, and two comparisons
on one page choose apart.

The runs are made-up records (no training), so the page is ready in seconds.
"""

from __future__ import annotations

import pytest
from browser_lab import cell_output, open_notebook

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(600)]

SETUP = """
from IPython.display import HTML
from llm_magics import connect
from llm_magics.store.records import now
from llm_magics.widgets.compare import runs_comparison_html

db = connect("mongomock://compare")
for run_id, scale in (("run-a", 2.0), ("run-b", 3.0)):
    db.store.add_run({"_id": run_id, "model": "m", "status": "completed", "config": {}, "started": now()})
    db.store.add_metrics([{"run": run_id, "step": s, "loss": scale / s, "learning_rate": 1e-4,
                           **({"eval_loss": scale / s + 0.1} if s % 5 == 0 else {})} for s in range(1, 21)])
"""
COMPARE = "HTML(runs_comparison_html(db.store, ['run-a', 'run-b']))"
CELLS = [SETUP, COMPARE, COMPARE]
FIRST, SECOND = 1, 2


def test_choosing_a_metric_shows_its_chart_and_hides_the_loss(page, lab):
    open_notebook(page, lab, "compare.ipynb", CELLS)
    page.evaluate("() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); }")
    first, second = cell_output(page, FIRST), cell_output(page, SECOND)
    second.locator(".llm-run-comparison").wait_for(timeout=60_000)

    def chart(output, metric: str):
        return output.locator(f".llm-metric-chart[data-metric='{metric}']")

    assert chart(first, "loss").is_visible() and not chart(first, "eval_loss").is_visible()
    assert not chart(first, "learning_rate").is_visible()
    first.locator("label", has_text="eval loss").click()
    assert chart(first, "eval_loss").is_visible() and not chart(first, "loss").is_visible()
    lines = chart(first, "eval_loss").locator("polyline.llm-series")
    assert [line.get_attribute("data-series") for line in lines.all()] == ["run-a", "run-b"]
    assert all(line.is_visible() for line in lines.all())
    # the other comparison on the page keeps its own choice
    assert chart(second, "loss").is_visible() and not chart(second, "eval_loss").is_visible()
    second.locator("label", has_text="learning rate").click()
    assert chart(second, "learning_rate").is_visible() and chart(first, "eval_loss").is_visible()
