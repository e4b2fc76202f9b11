"""The summary's chart against time and over a range of steps, in JupyterLab in Chromium (issue
#32, item 9): the "x: time" switch hides the step's ticks and shows the time's (m:ss), the range
menu zooms to the last half or quarter with ticks of its own, and in each of the 24 states of the
switches (smoothing, log scale, x axis, range) every hover point shown sits on the train loss's
line as drawn. The chart is made up (no training), so the page is ready in seconds; the pure
Python half is tests/test_chart_axes.py.
"""

from __future__ import annotations

import itertools

import pytest
from browser_lab import cell_output, open_notebook, screenshot

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(600)]

CELLS = [
    """
import random
from IPython.display import HTML
from llm_magics.widgets.curve import run_chart_html

rng, now, rows = random.Random(0), 1_700_000_000.0, []
for step in range(1, 201):
    now += 3.0 if step <= 50 else 1.0  # a slow start, then faster
    rows.append({"step": step, "loss": 2 / step**0.5 + rng.random() * 0.05, "learning_rate": 1e-4, "time": now})
    if step % 50 == 0:
        now += 20  # an evaluation
        rows.append({"step": step, "eval_loss": 2.1 / step**0.5, "time": now})
HTML(run_chart_html(rows))
"""
]
# where each hover point of the train loss is drawn, against the vertex of the line it belongs to
# (the smoothed line with smoothing on, the raw one off), both in the page's pixels
ON_THE_LINE = """chart => {
  const smooth = chart.querySelector('.llm-switch-smooth').checked;
  const shown = element => {  // no ancestor in the chart hidden by a switch
    for (let e = element; e && e.tagName !== 'svg'; e = e.parentElement) {
      if (getComputedStyle(e).display === 'none') return false;
    }
    return true;
  };
  const lines = [...chart.querySelectorAll(`polyline.${smooth ? 'llm-smoothed' : 'llm-raw'}[data-series=loss]`)];
  const drawn = lines.filter(shown);
  if (drawn.length !== 1) return {lines: drawn.length};
  const line = drawn[0], m = line.getScreenCTM();
  const points = [...chart.querySelector('g[fill=transparent]').querySelectorAll(':scope > .llm-pt')];
  let worst = 0, checked = 0;
  points.slice(0, line.points.length).forEach((point, i) => {
    if (!shown(point)) return;
    const box = point.querySelector('circle').getBoundingClientRect(), v = line.points[i];
    const x = m.a * v.x + m.c * v.y + m.e, y = m.b * v.x + m.d * v.y + m.f;
    worst = Math.max(worst, Math.hypot(box.x + box.width / 2 - x, box.y + box.height / 2 - y));
    checked++;
  });
  return {checked, worst};
}"""


def _centre(locator) -> tuple[float, float]:
    box = locator.bounding_box()
    return box["x"] + box["width"] / 2, box["y"] + box["height"] / 2


def texts(locator) -> list[str]:
    return [element.text_content() for element in locator.all() if element.is_visible()]


def test_the_summary_switches_to_time_and_zooms_and_its_hover_points_follow(page, lab):
    open_notebook(page, lab, "chart_axes.ipynb", CELLS)
    page.evaluate("() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); }")
    chart = cell_output(page, 0).locator(".llm-chart")
    chart.wait_for(timeout=60_000)
    assert "<script" not in chart.inner_html()  # CSS alone: it works in a saved notebook without a kernel
    step_ticks = chart.locator(".llm-x-step .llm-range-all .llm-tick")
    time_ticks = chart.locator(".llm-x-time .llm-range-all .llm-tick")
    assert texts(step_ticks) == ["0", "50", "100", "150", "200"] and texts(time_ticks) == []

    chart.locator(".llm-switch-time").check()
    assert texts(time_ticks) == ["0:00", "2:00", "4:00", "6:00"] and texts(step_ticks) == []
    assert texts(chart.locator(".llm-x-title")) == ["m:ss"]
    # the slow first 50 steps take 2:27 of the axis (step 1 is at 0:00): step 50's point sits there
    centre = {tick.text_content(): _centre(tick)[0] for tick in time_ticks.all()}
    at_50 = _centre(chart.locator("g[fill=transparent] > .llm-pt").nth(49).locator("circle"))[0]
    assert at_50 == pytest.approx(centre["0:00"] + 147 / 120 * (centre["2:00"] - centre["0:00"]), abs=1.5)

    chart.locator("select.llm-range").select_option(label="last quarter")
    quarter_steps = chart.locator(".llm-x-step .llm-range-quarter .llm-tick")
    assert texts(quarter_steps) == [] and texts(chart.locator(".llm-x-time .llm-range-quarter .llm-tick"))
    screenshot(chart, "chart-time-last-quarter.png")
    chart.locator(".llm-switch-time").uncheck()
    assert texts(quarter_steps) == ["160", "170", "180", "190", "200"] and texts(step_ticks) == []

    seen = {}
    for smooth, log, time, zoom in itertools.product(
        (True, False), (False, True), (False, True), ("all steps", "last half", "last quarter")
    ):
        chart.locator(".llm-switch-smooth").set_checked(smooth)
        chart.locator(".llm-switch-log").set_checked(log)
        chart.locator(".llm-switch-time").set_checked(time)
        chart.locator("select.llm-range").select_option(label=zoom)
        seen[smooth, log, time, zoom] = chart.evaluate(ON_THE_LINE)
    print(seen)
    assert all(result.get("checked") and result["worst"] < 1.5 for result in seen.values()), seen
    counts = {
        zoom: {result["checked"] for key, result in seen.items() if key[3] == zoom}
        for zoom in ("all steps", "last quarter")
    }
    assert counts == {"all steps": {200}, "last quarter": {50}}  # the points of the range (151 to 200) only
