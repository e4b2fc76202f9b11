"""Evaluation by generation in JupyterLab (Chromium through Playwright): a run scored at each save,
%llm_eval scoring its checkpoints with one more metric (its progress bar, its table), and the
checkpoint browser's sortable metric columns and its examples view of two checkpoints side by side."""

from __future__ import annotations

import pytest
from browser_lab import cell_output, current_notebook, open_notebook, screenshot

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(900)]

CELLS = [
    "%load_ext llm_magics",
    "db = %llm_db mongomock://browser-eval\n"
    "from llm_magics import tiny_model\n"
    "base_path = str(tiny_model('tiny'))\n"
    "facts = [('capital of France?', ' Paris'), ('2+2?', ' four'), ('sky color?', ' blue'),\n"
    "         ('ice is?', ' cold'), ('fire is?', ' hot'), ('cats say?', ' meow')]\n"
    "db['facts'].insert_many([{'q': q, 'a': a, '_fold': 'valid' if i == 0 else 'train'}\n"
    "                         for i in range(8) for q, a in facts]);",
    "%%llm_finetune scored -o run\n"
    'model: {{ base_path }}\ndata: facts\nprompt: q\nresponse: a\nprompt_template: "Q: {prompt}\\nA:"\n'
    "max_steps: 60\nsave_steps: 20\neval_steps: 20\neval_strategy: steps\nlearning_rate: 1.0e-2\nlora_r: 8\n"
    "per_device_train_batch_size: 8\nmax_length: 64\n"
    "eval_generate: {metrics: [exact_match, rouge_l], max_new_tokens: 8}\nmetric_for_best_model: rouge_l",
    "%llm_eval scored --all --metrics chrf --max-new-tokens 8",
    "%llm_checkpoints scored",
]


def test_the_checkpoint_table_sorts_by_each_metric_and_shows_the_examples_of_two_checkpoints(page, lab):
    open_notebook(page, lab, "eval.ipynb", CELLS)
    page.evaluate("() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); }")

    # %llm_eval: its progress bar, then the scores of every checkpoint
    scores = cell_output(page, 3).locator("table.llm-evaluation")
    scores.wait_for(timeout=300_000)
    assert cell_output(page, 3).locator(".llm-eval-progress").count() == 1
    assert "chrf" in scores.locator("thead").inner_text() and scores.locator("tbody tr").count() == 3

    # the run's summary charts each metric per checkpoint
    chart = cell_output(page, 2).locator("svg.llm-curve")
    for series in ("eval_exact_match", "eval_rouge_l"):
        lines = chart.locator(f'polyline.llm-series[data-series="{series}"]').all()
        assert sum(line.is_visible() for line in lines) == 1, series  # on the step axis (the time one hidden)
    screenshot(cell_output(page, 2), "eval-summary.png")

    table = current_notebook(page).locator(".llm-checkpoints")
    page.wait_for_function("document.querySelectorAll('.llm-checkpoints tbody tr[data-id]').length === 3")
    headers = table.locator("thead th").all_inner_texts()
    assert [h.strip(" ▲▼") for h in headers[-4:]] == ["exact_match", "rouge_l", "chrf", "flags"], headers
    # a metric's header sorts by it, largest first
    column = headers.index(next(h for h in headers if h.startswith("rouge_l"))) + 1
    cells = f".llm-checkpoints tbody tr td:nth-child({column})"
    table.locator("th[data-column='rouge_l']").click()
    page.wait_for_function(
        f"""() => {{
        const values = [...document.querySelectorAll("{cells}")].map(td => parseFloat(td.textContent));
        return values.length === 3 && values.every((v, i) => i === 0 || values[i - 1] >= v);
    }}"""
    )
    best = table.locator("tbody tr[data-id]").first
    assert best.locator(".llm-badge-best").count() == 1  # @best follows metric_for_best_model: rouge_l
    screenshot(table, "eval-checkpoint-table.png")

    # two checkpoints side by side: the held-out prompts, worst first, differing answers marked
    rows = table.locator("tbody tr[data-id]")
    rows.nth(0).click()
    rows.nth(2).click(modifiers=["Control"])
    page.locator(".llm-examples-button").click()
    examples = page.locator(".llm-output .llm-examples table")
    examples.wait_for(timeout=60_000)
    assert examples.locator("tbody tr").count() == 6
    head = examples.locator("thead").inner_text()
    assert "reference" in head and head.count(":") == 2  # two checkpoints, RUN:STEP each
    assert "worst first by" in page.locator(".llm-output .llm-examples").inner_text()
    assert examples.locator("td.llm-differs").count() >= 2
    screenshot(page.locator(".llm-checkpoint-browser"), "eval-examples.png")
