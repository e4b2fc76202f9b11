"""GRPO's live view in JupyterLab (Chromium through Playwright): reward functions written in a
cell, the curve of each function's reward and the total while it trains, and beside the probe grid
the newest sampled completions with each function's reward; the summary keeps them at the end."""

from __future__ import annotations

import pytest
from browser_lab import cell_output, open_notebook, screenshot

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(1200)]

CELLS = [
    "%load_ext llm_magics\n%config LLMMagics.update_interval = 0.2",
    "db = %llm_db mongomock://browser-grpo\n"
    "from llm_magics import tiny_model\n"
    "base_path = str(tiny_model('tiny'))\n"
    "db['prompts'].insert_many([{'q': f'say a {i}', 'answer': 'a'} for i in range(32)])\n\n"
    "def share_of_a(completions, **kwargs):\n"
    "    return [c.count('a') / max(1, len(c)) for c in completions]\n\n"
    "def names_the_answer(completions, answer, **kwargs):\n"
    "    return [1.0 if a in c else 0.0 for c, a in zip(completions, answer, strict=True)]",
    "%%llm_finetune grpo-view -o run\n"
    "method: grpo\nmodel: {{ base_path }}\ndata: prompts\nprompt: q\n"
    "reward_funcs: [{{ share_of_a }}, {{ names_the_answer }}]\nnum_generations: 4\nmax_completion_length: 12\n"
    "per_device_train_batch_size: 8\nlearning_rate: 5.0e-3\nlora_modules_to_save: [lm_head]\n"
    "max_steps: 120\nsave_steps: 40\nlogging_steps: 5",
]


def test_the_grpo_live_view_charts_each_reward_and_shows_the_sampled_completions(page, lab):
    open_notebook(page, lab, "grpo.ipynb", CELLS)
    page.evaluate("() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); }")

    view = page.locator(".llm-training-view")
    view.wait_for(timeout=120_000)
    completions = view.locator(".llm-completions")
    completions.wait_for(timeout=120_000)  # the first logging step's samples, while it trains
    assert "completed" not in view.inner_text()
    chart = view.locator("svg.llm-curve")
    chart.locator('polyline.llm-series[data-series="reward"]').wait_for(timeout=120_000)  # a line: two points
    for series in ("reward", "rewards/share_of_a/mean", "rewards/names_the_answer/mean"):
        assert chart.locator(f'polyline.llm-series[data-series="{series}"]').count() == 1, series
    header = completions.locator("thead").inner_text()
    assert "share_of_a" in header and "names_the_answer" in header
    assert completions.locator("tbody tr").count() == 8 and "say a" in completions.locator("tbody").inner_text()
    screenshot(cell_output(page, 2), "grpo-live-view.png")

    summary = page.locator(".llm-summary")
    summary.wait_for(timeout=600_000)
    assert "completed" in summary.inner_text() and "120 / 120" in summary.inner_text()
    assert summary.locator(".llm-completions").inner_text().startswith("Sampled completions at step 120")
    legend = summary.locator("svg.llm-curve").text_content()
    assert "share_of_a" in legend and "names_the_answer" in legend  # each curve named by its function
    screenshot(cell_output(page, 2), "grpo-summary.png")
