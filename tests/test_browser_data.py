"""The data report in JupyterLab (Chromium through Playwright): a file ingested with its progress
bar, then %llm_data with the tiny model's tokenizer: the findings, the token-length histogram with
the share cut at max_length, and the first documents with their trained tokens marked."""

from __future__ import annotations

import pytest
from browser_lab import cell_output, open_notebook, screenshot

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(600)]

CELLS = [
    "%load_ext llm_magics",
    "import json\n"
    "db = %llm_db mongomock://browser-data\n"
    "from llm_magics import tiny_model\n"
    "base_path = str(tiny_model('tiny'))\n"
    "rows = [{'conversations': [{'from': 'human', 'value': f'question {i} ' * (1 + i % 9)},\n"
    "                           {'from': 'gpt', 'value': f'answer {i}'}]} for i in range(40)]\n"
    "rows.append(rows[0])\n"
    "open('chats.jsonl', 'w').write('\\n'.join(json.dumps(r) for r in rows))",
    "%llm_ingest chats.jsonl chats",
    "%llm_data chats --model {base_path} --max-length 96",
]


def test_the_data_report_shows_the_histogram_and_what_trains(page, lab):
    open_notebook(page, lab, "data.ipynb", CELLS)
    page.evaluate("() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); }")
    report = cell_output(page, 3).locator(".llm-data-report")
    report.wait_for(timeout=180_000)
    ingested = cell_output(page, 2)
    assert ingested.locator(".llm-ingest-progress").count() == 1
    assert "41 documents into 'chats'" in ingested.inner_text() and "messages: conversations" in ingested.inner_text()
    text = report.inner_text()
    assert "ShareGPT" in text and "exact duplicates" in text
    histogram = report.locator("svg.llm-length-histogram")
    assert histogram.locator("rect.llm-bin").count() > 3 and histogram.locator("line.llm-max-length").count() == 1
    assert report.locator("rect.llm-bin.llm-over").count() >= 1  # the bins past max_length
    masks = report.locator("pre.llm-label-mask")
    assert masks.count() == 3
    assert "answer 0" in masks.first.locator(".llm-trained").all_inner_texts()[0]
    assert "question 0" in " ".join(masks.first.locator(".llm-masked").all_inner_texts())
    screenshot(report, "data-report.png")
