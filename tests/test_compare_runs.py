"""Comparing runs on any metric they logged (issue #32, item 10): every metric the runs logged is
offered, train loss shown first, one line per run that logged the chosen metric, the runs that did
not named; the choice is radio buttons that CSS reads, so a saved notebook keeps it; the checkpoint
browser's comparison follows its runs' selection."""

from __future__ import annotations

import html
import re
from html.parser import HTMLParser

import pytest

from llm_magics.store.records import now
from llm_magics.widgets.compare import logged_metrics, metric_label, runs_comparison_html

HOSTILE = "<img src=x onerror=alert(1)>"
_VOID = {"input", "br", "img", "hr", "meta", "link"}


class Node:
    def __init__(self, tag: str, attrs: dict[str, str | None], parent: Node | None):
        self.tag, self.attrs, self.parent = tag, attrs, parent
        self.children: list[Node] = []
        self.texts: list[str] = []

    def classes(self) -> list[str]:
        return (self.attrs.get("class") or "").split()

    def all(self, css_class: str) -> list[Node]:
        """The descendants with that class, in document order."""
        found = []
        for child in self.children:
            found += [child] if css_class in child.classes() else []
            found += child.all(css_class)
        return found

    def text(self) -> str:
        return "".join(self.texts) + "".join(child.text() for child in self.children)


class Tree(HTMLParser):
    """The page as a tree of elements, the attributes unescaped as a browser reads them."""

    def __init__(self, page: str):
        super().__init__(convert_charrefs=True)
        self.root = self.at = Node("", {}, None)
        self.feed(page)

    def handle_starttag(self, tag, attrs):
        node = Node(tag, dict(attrs), self.at)
        self.at.children.append(node)
        if tag not in _VOID:
            self.at = node

    def handle_startendtag(self, tag, attrs):
        self.at.children.append(Node(tag, dict(attrs), self.at))

    def handle_endtag(self, tag):
        node = self.at
        while node.parent is not None and node.tag != tag:
            node = node.parent
        if node.parent is not None:
            self.at = node.parent

    def handle_data(self, data):
        self.at.texts.append(data)


def add_run(db, run_id: str, rows: list[dict], **config) -> None:
    db.store.add_run({"_id": run_id, "model": "m", "status": "completed", "config": config, "started": now()})
    db.store.add_metrics([{"run": run_id, **row} for row in rows])


def sft_rows(scale: float) -> list[dict]:
    """A run's logged rows: train numbers each step, an evaluation every 5, and the numbers that are
    not metrics (where it is, its speed, the machine's load)."""
    return [
        {
            "step": s,
            "epoch": s / 10,
            "time": 1e9 + s,
            "num_tokens": 100 * s,
            "tokens_per_s": 2000.0,
            "gpu_memory_allocated": 2**30,
            "cpu_percent": 90.0,
            "ram_rss": 2**31,
            "loss": scale / s,
            "learning_rate": 1e-4,
            "mean_token_accuracy": 0.5 + s / 100,
            **({"eval_loss": scale / s + 0.1, "eval_rouge_l": s / 20} if s % 5 == 0 else {}),
        }
        for s in range(1, 21)
    ]


def charts(page: str) -> dict[str, Node]:
    return {chart.attrs["data-metric"]: chart for chart in Tree(page).root.all("llm-metric-chart")}


def series(chart: Node) -> list[str]:
    return [line.attrs["data-series"] for line in chart.all("llm-series")]


@pytest.fixture
def compared(db):
    add_run(db, "sft-a", sft_rows(2.0), lr=1e-4)
    add_run(db, "sft-b", sft_rows(3.0), lr=3e-4)
    dpo = [{"step": s, "loss": 0.7 / s, "learning_rate": 5e-6, "rewards/margins": s / 10} for s in range(1, 11)]
    add_run(db, "dpo-c", dpo, lr=5e-6)
    return db


def test_every_logged_metric_is_offered_by_its_name_and_train_loss_is_shown_first(compared):
    page = runs_comparison_html(compared.store, ["sft-a", "sft-b", "dpo-c"])
    picks = Tree(page).root.all("llm-pick")
    offered = [pick.attrs["value"] for pick in picks]
    assert offered == [
        "loss",
        "eval_loss",
        "learning_rate",
        "mean_token_accuracy",
        "rewards/margins",
        "eval_rouge_l",
    ]  # and nothing that is not a metric: no step, epoch, time, tokens, speed, memory or CPU
    labels = [pick.parent.text().strip() for pick in picks]
    assert labels == ["train loss", "eval loss", "learning rate", "token accuracy", "reward margin", "eval rouge_l"]
    assert [pick.attrs["value"] for pick in picks if "checked" in pick.attrs] == ["loss"]
    shown = [name for name, chart in charts(page).items() if "data-default" in chart.attrs]
    assert shown == ["loss"] and list(charts(page)) == offered  # a chart for each metric offered
    assert "metrics of runs sft-a, sft-b, dpo-c" in page


def test_each_metric_has_a_line_per_run_that_logged_it_and_names_the_others(compared):
    page = charts(runs_comparison_html(compared.store, ["sft-a", "sft-b", "dpo-c"]))
    for name in ("loss", "learning_rate"):
        assert series(page[name]) == ["sft-a", "sft-b", "dpo-c"]
        assert not page[name].all("llm-not-logged")
    for name in ("eval_loss", "mean_token_accuracy", "eval_rouge_l"):
        assert series(page[name]) == ["sft-a", "sft-b"]
        assert [note.text() for note in page[name].all("llm-not-logged")] == ["not logged by run dpo-c"]
    assert series(page["rewards/margins"]) == ["dpo-c"]
    assert page["rewards/margins"].all("llm-not-logged")[0].text() == "not logged by runs sft-a, sft-b"
    # the chart is titled with the metric, and each run keeps its colour from chart to chart
    assert "eval rouge_l" in page["eval_rouge_l"].text()
    colours = {
        name: {line.attrs["data-series"]: line.attrs["style"] for line in chart.all("llm-series")}
        for name, chart in page.items()
    }
    assert colours["loss"]["dpo-c"] == colours["rewards/margins"]["dpo-c"] != colours["loss"]["sft-a"]
    assert all("var(--jp-" in style for lines in colours.values() for style in lines.values())  # the theme's


def test_the_choice_shows_the_chosen_metric_s_chart_without_a_script(compared):
    page = runs_comparison_html(compared.store, ["sft-a", "sft-b"])
    tree = Tree(page).root
    picks, shown = tree.all("llm-pick"), tree.all("llm-metric-chart")
    assert "<script" not in page and len({pick.attrs["name"] for pick in picks}) == 1
    assert all(pick.attrs["type"] == "radio" for pick in picks)
    for pick, chart in zip(picks, shown, strict=True):
        i = re.fullmatch(r"llm-pick-(\d+)", pick.classes()[1]).group(1)
        assert f"llm-metric-{i}" in chart.classes() and chart.attrs["data-metric"] == pick.attrs["value"]
        assert f".llm-run-comparison:has(.llm-pick-{i}:checked) .llm-metric-{i}" in page
    assert ".llm-metric-chart{display:none}" in page
    # two comparisons on one page are radio groups of their own
    again = Tree(runs_comparison_html(compared.store, ["sft-a", "sft-b"])).root.all("llm-pick")
    assert again[0].attrs["name"] != picks[0].attrs["name"]


def test_without_a_train_loss_the_first_metric_is_shown(db):
    for run_id in ("a", "b"):
        add_run(db, run_id, [{"step": 10, "eval_loss": 0.5, "eval_accuracy": 0.7}])
    page = charts(runs_comparison_html(db.store, ["a", "b"]))
    assert list(page) == ["eval_loss", "eval_accuracy"]
    assert "data-default" in page["eval_loss"].attrs and series(page["eval_accuracy"]) == ["a", "b"]


def test_runs_that_logged_nothing_say_so(db):
    add_run(db, "a", [{"step": 1, "epoch": 0.1, "time": 5.0, "tokens_per_s": 900.0}])
    add_run(db, "b", [])
    page = runs_comparison_html(db.store, ["a", "b"])
    assert "the runs logged no metrics yet" in Tree(page).root.text() and "llm-metric-chart" not in page
    assert logged_metrics({"a": db.store.run_metrics("a"), "b": []}) == {}


def test_a_hostile_run_id_and_metric_name_are_shown_as_text(db):
    rows = [{"step": s, "loss": 1 / s, HOSTILE: 0.5, "bad": HOSTILE, "flag": True} for s in (1, 2)]
    add_run(db, HOSTILE, rows)
    add_run(db, "plain", [{"step": 1, "loss": 1.0}, {"step": HOSTILE, "loss": 2.0}])
    page = runs_comparison_html(db.store, [HOSTILE, "plain"])
    assert "<img" not in page and html.escape(HOSTILE) in page
    found = charts(page)
    assert list(found) == ["loss", HOSTILE]  # a text or a flag where a number belongs is no metric
    assert series(found["loss"]) == [HOSTILE, "plain"] and series(found[HOSTILE]) == [HOSTILE]
    assert found[HOSTILE].all("llm-not-logged")[0].text() == "not logged by run plain"
    assert [pick.parent.text().strip() for pick in Tree(page).root.all("llm-pick")] == ["train loss", HOSTILE]


def test_metric_names_read_as_people_say_them():
    names = ["loss", "eval_loss", "mean_token_accuracy", "eval_mean_token_accuracy", "eval_rewards/margins", "kl"]
    assert [metric_label(name) for name in names] == [
        "train loss",
        "eval loss",
        "token accuracy",
        "eval token accuracy",
        "eval reward margin",
        "kl",
    ]


def test_the_browser_s_comparison_follows_the_runs_selected(compared):
    from llm_magics.widgets.checkpoints import CheckpointBrowser

    compared.store.save_model("m")
    browser = CheckpointBrowser(compared, "m", refresh_interval=60)
    try:
        browser.runs.value = ["sft-a", "sft-b", "dpo-c"]
        assert browser.runs_output.value == ""  # nothing compared until asked
        browser.runs.value = ["sft-a"]
        browser.compare_runs_button.click()
        assert Tree(browser.runs_output.value).root.text() == "select two or more runs to compare"
        browser.runs.value = ["sft-a", "dpo-c"]
        assert series(charts(browser.runs_output.value)["loss"]) == ["sft-a", "dpo-c"]
        browser.runs.value = ["sft-a", "sft-b", "dpo-c"]
        assert series(charts(browser.runs_output.value)["loss"]) == ["sft-a", "sft-b", "dpo-c"]
        browser.runs.value = ["sft-b"]
        assert "llm-metric-chart" not in browser.runs_output.value
        assert "select two or more runs to compare" in browser.runs_output.value
    finally:
        browser.close()
