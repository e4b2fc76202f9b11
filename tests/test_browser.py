"""The widgets in JupyterLab, driven in Debian's Chromium through Playwright.

A notebook trains the tiny model; the test checks in the DOM that the live view shows the first
checkpoint, the grid of its probe answers and a chart with ticks and the learning rate, reached its
total and left a summary whose chart shows a point's value on hover and whose grid has every
checkpoint's probe answers, that
the checkpoint browser lists the checkpoints and shows a selected one's probe answers, that *Use*
changes the checkpoint `%llm_predict NAME` answers with (its answers become those of NAME@STEP),
that a prompt holding HTML is shown as text and runs no script, and that *Export* offers the byte-level
model no GGUF, saying why, and forgets a failure when another checkpoint is selected. Screenshots go to
test-artifacts/ (and to docs/ with LLM_MAGICS_SCREENSHOTS=docs).
"""

from __future__ import annotations

import pytest
from browser_lab import cell_output, open_notebook, run_cell, screenshot

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(1200)]  # minutes more under load
HOSTILE = "<img src=x onerror=window.__xss=1>"
HOSTILE_MAGIC = "<img src=x onerror=window.__xss2=1>"
PROBE = "### Human: What is the capital of France? ### Assistant: "
PROMPTS = '"### Human: What is the capital of Japan? ### Assistant: " "### Human: What is 3?" "zzz"'

CELLS = [
    "%load_ext llm_magics\n%config LLMMagics.update_interval = 0.2",
    # the demo's documents (four capitals): the tiny model learns them, so the answers shown are real
    "db = %llm_db mongomock://browser\n"
    "from llm_magics import tiny_model\n"
    "from llm_magics.models.tiny import documents\n"
    "base_path = str(tiny_model('tiny'))\n"
    "db['docs'].insert_many(documents(64));",
    "%llm_checkpoints",
    "%%llm_finetune browser-model -o run\n"
    "model: {{ base_path }}\ndata: docs\nbits: 4\nlora_r: 16\nlora_alpha: 32\nlearning_rate: 0.003\n"
    "max_length: 96\nper_device_train_batch_size: 8\n"
    f"max_steps: 480\nsave_steps: 160\neval_steps: 160\neval_strategy: steps\nprobe_prompts: ['{PROBE}']\n"
    "probe_max_new_tokens: 8",
    # which checkpoint %llm_predict NAME uses: its greedy answers against those of steps 160 and 480
    "\n".join(
        f"{name} = %llm_predict browser-model{ref} {PROMPTS} --max-new-tokens 8"
        for name, ref in (("default", ""), ("at_160", "@160"), ("at_480", "@480"))
    )
    + "\nprint('%llm_predict browser-model answers as step', [s for s, a in ((160, at_160), (480, at_480))"
    " if a == default], '; steps 160 and 480 answer differently:', at_160 != at_480)",
    f'%llm_predict browser-model "{HOSTILE_MAGIC}" --compare @160 @480 --max-new-tokens 3',
]
USES_CELL = 4

# Records the widest the live progress bar got before the view was replaced by its summary.
WATCH_PROGRESS = """
window.__maxProgress = 0;
new MutationObserver(() => {
  for (const bar of document.querySelectorAll('.llm-progress .progress-bar')) {
    window.__maxProgress = Math.max(window.__maxProgress, parseFloat(bar.style.width) || 0);
  }
}).observe(document.body, {subtree: true, childList: true, attributes: true, attributeFilter: ['style']});
"""


def test_live_view_and_checkpoint_browser(page, lab):
    open_notebook(page, lab, "widgets.ipynb", CELLS)
    page.evaluate(WATCH_PROGRESS)
    # not awaited: the command's promise settles only when every cell has run
    page.evaluate("() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); }")

    # the live view while it trains, after its first checkpoint: the checkpoint, the grid of its
    # probe answers, a chart with ticks and the learning rate under the loss
    view = page.locator(".llm-training-view")
    view.wait_for(timeout=120_000)
    view.locator("table.llm-probe-grid").wait_for(timeout=120_000)
    assert PROBE.strip() in view.locator("table.llm-probe-grid").inner_text()
    assert "160" in view.locator("tr", has_text="checkpoints").inner_text()
    assert "completed" not in view.inner_text()
    chart = view.locator("svg.llm-curve")
    assert chart.locator(".llm-tick").count() >= 4 and chart.locator(".llm-grid").count() >= 4
    assert chart.locator("polyline.llm-series[data-series=learning_rate]").count() == 1
    assert view.locator(".llm-chart-controls input[type=checkbox]").is_disabled()  # the kernel is busy training
    assert "switch in the summary when the run ends" in view.locator(".llm-chart-why").inner_text()  # said, not hidden
    assert "interrupt it (■" in view.locator(".llm-stop-why").inner_text() and view.locator(".llm-stop").is_disabled()
    screenshot(cell_output(page, 3), "live-view.png")

    # the run ends: the bar reached its total, then the view became the static summary
    summary = page.locator(".llm-summary")
    summary.wait_for(timeout=600_000)  # minutes when other processes load the machine
    assert page.evaluate("window.__maxProgress") == 100
    text = summary.inner_text()
    assert "completed" in text and "480 / 480" in text
    series = summary.locator("svg.llm-curve polyline.llm-series:visible")
    assert sorted(series.evaluate_all("lines => lines.map(line => line.dataset.series)")) == [
        "eval_loss",
        "eval_mean_token_accuracy",
        "learning_rate",
        "loss",
        "mean_token_accuracy",
    ]  # one line each shown: the loss, the learning rate, trl's token accuracies (the log axis' wait for its switch)
    # hovering a point shows its step and value (CSS only: the summary runs no script)
    point = summary.locator(".llm-pt").last  # the topmost: no other point's target covers it
    tip = point.locator(".llm-tip")
    assert not tip.is_visible()
    point.locator(".llm-hit").hover(force=True)
    tip.wait_for(state="visible", timeout=10_000)
    assert "step" in tip.text_content()
    # the probe answers of the 3 checkpoints, a column each
    probes = summary.locator("table.llm-probe-grid")
    assert probes.locator("th.llm-step").all_inner_texts() == ["step 160", "step 320", "step 480"]
    assert PROBE.strip() in probes.inner_text()

    # the checkpoint browser, opened before the run, lists the checkpoints it recorded in a table
    rows = page.locator(".llm-checkpoints tbody tr[data-id]")
    page.wait_for_function("document.querySelectorAll('.llm-checkpoints tbody tr[data-id]').length === 3")
    assert steps_shown(page) == ["160", "320", "480"]
    assert rows.nth(2).locator(".llm-badge-latest").count() == 1 and rows.nth(0).locator(".llm-badge").count() == 0
    differ = "; steps 160 and 480 answer differently: True"
    # nothing selected yet: %llm_predict NAME answers with the latest checkpoint
    cell_output(page, USES_CELL).get_by_text(f"answers as step [480] {differ}").wait_for(timeout=120_000)

    # a header sorts by its column (numbers as numbers, largest first), a second click reverses it
    step_header = page.locator(".llm-checkpoints th[data-column='step']")
    step_header.click()
    page.wait_for_function("document.querySelector('.llm-checkpoints tbody tr td:nth-child(2)').textContent === '480'")
    assert steps_shown(page) == ["480", "320", "160"] and "▼" in step_header.inner_text()
    step_header.click()
    page.wait_for_function("document.querySelector('.llm-checkpoints tbody tr td:nth-child(2)').textContent === '160'")

    # clicking a row selects it and shows that checkpoint's probe answers
    rows.nth(0).click()
    probes = page.locator(".llm-output table.llm-probes")
    probes.wait_for()
    assert PROBE.strip() in probes.inner_text() and probes.locator("tbody td").first.inner_text() == "160"
    assert rows.nth(0).get_attribute("aria-selected") == "true"
    screenshot(cell_output(page, 2), "checkpoint-browser.png")

    # Use on step 160 changes what %llm_predict uses, and its row says so
    page.locator(".llm-use").click()
    page.locator(".llm-message").get_by_text("now uses step 160").wait_for()
    rows.nth(0).locator(".llm-badge-in-use").wait_for()
    run_cell(page, USES_CELL)
    cell_output(page, USES_CELL).get_by_text(f"answers as step [160] {differ}").wait_for(timeout=60_000)

    # Ctrl-click adds a row: two selected compare; a prompt with HTML is shown as text and runs nothing
    page.locator(".llm-prompt textarea").fill(HOSTILE)
    rows.nth(2).click(modifiers=["Control"])
    page.wait_for_function("document.querySelectorAll('.llm-checkpoints tr[aria-selected=true]').length === 2")
    page.locator(".llm-compare").click()
    compared = page.locator(".llm-output table.llm-comparison")
    compared.wait_for(timeout=60_000)
    assert HOSTILE in compared.inner_text() and "@" in compared.locator("th").nth(2).inner_text()
    assert page.locator(".llm-output img").count() == 0
    magic_output = cell_output(page, 5).locator("table.llm-comparison")
    assert HOSTILE_MAGIC in magic_output.inner_text()
    assert cell_output(page, 5).locator("img").count() == 0
    assert page.evaluate("window.__xss === undefined && window.__xss2 === undefined")

    # the runs table lists the run, completed
    run_row = page.locator(".llm-runs-select tbody tr[data-id]")
    assert run_row.count() == 1 and "completed" in run_row.inner_text() and "480/480" in run_row.inner_text()

    # generate with one checkpoint (a plain click selects it alone)
    rows.nth(2).click()
    page.wait_for_function("document.querySelectorAll('.llm-checkpoints tr[aria-selected=true]').length === 1")
    page.locator(".llm-prompt textarea").fill(PROBE)
    page.locator(".llm-generate").click()
    page.locator(".llm-output .llm-answer").get_by_text("Paris.").wait_for(timeout=60_000)  # it learned
    screenshot(cell_output(page, 2), "checkpoint-browser-answer.png")

    # the byte-level tokenizer cannot become a GGUF, known before a click: the GGUF types greyed out,
    # the reason beside them, the merged model chosen; a failed export's line goes with a new selection
    export = cell_output(page, 2)
    choice = export.locator(".llm-export-format select")
    assert choice.input_value() == "merged" and choice.locator("option[value=q8_0]").evaluate("o => o.disabled")
    assert "(ByT5Tokenizer) has no vocabulary file" in export.locator(".llm-export-why").inner_text()
    export.locator(".llm-export").click()
    export.locator(".llm-export-status").get_by_text("write the directory to export to first").wait_for()
    rows.nth(0).click()
    page.wait_for_function("document.querySelector('.llm-export-status').innerText.trim() === ''")


def steps_shown(page) -> list[str]:
    """The step column of the checkpoint table, in the order shown."""
    return page.locator(".llm-checkpoints tbody tr[data-id] td:nth-child(2)").all_inner_texts()
