"""What a new user met in the views (issue #32, items 6 to 8), in a kernel: every colour from
JupyterLab's theme, a control that is off says why beside it, the summary keeps smoothing and log
scale as switches that work without a kernel, a heading never runs into what follows it, a
column's first sort puts the best first, and text cells are left-aligned, padded and wrapped.

The browser half, in the light and the dark theme with the contrast measured, is
tests/test_browser_theme.py.
"""

from __future__ import annotations

import io
import re
import tokenize
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path
from typing import ClassVar

import pytest
from test_charts import history, switches

import llm_magics
from llm_magics.runs.run import Control, Run, RunState
from llm_magics.widgets.curve import ChartOptions, curves_svg, run_chart_html, run_chart_svg
from llm_magics.widgets.progress import TrainingView, status_html, summary_html

PACKAGE = Path(llm_magics.__file__).parent
# a colour written out: #abc, #aabbcc, rgb(...), rgba(...), white, black (not white-space)
COLOUR = re.compile(r"#[0-9a-fA-F]{6}\b|#[0-9a-fA-F]{3}\b|\brgba?\(|(?<![\w-])(?:white|black)(?![\w-])")
# a theme variable with its fallback (which may hold an rgba(...))
THEME_VARIABLE = re.compile(r"var\(--jp-[\w-]+(?:,\s*(?:[^()]|\([^()]*\))*)?\)")


def outside_the_theme(text: str) -> list[str]:
    """The colours in ``text`` that are not a ``--jp-*`` variable's fallback."""
    return COLOUR.findall(THEME_VARIABLE.sub("", text))


def view_modules() -> list[Path]:
    return [
        *sorted((PACKAGE / "widgets").glob("*.py")),
        PACKAGE / "core" / "tables.py",
        PACKAGE / "data" / "report_html.py",
        PACKAGE / "export" / "gguf_check.py",
    ]


@pytest.mark.parametrize("module", view_modules(), ids=lambda path: f"{path.parent.name}/{path.name}")
def test_no_view_writes_a_colour_of_its_own(module):
    """Every colour in a view's HTML, CSS or SVG is one of JupyterLab's theme variables (through
    core/theme): a colour written out suits one theme only (white on pale green in the dark one)."""
    strings = [
        token.string
        for token in tokenize.generate_tokens(io.StringIO(module.read_text()).readline)
        if token.type == tokenize.STRING  # f-strings too (Python 3.11)
    ]
    found = {string[:80]: outside_the_theme(string) for string in strings if outside_the_theme(string)}
    assert not found, f"colours outside the theme in {module.name}: {found}"


def fake_run(db, run_id="r1", backend="thread", **state) -> Run:
    return Run(db, run_id, RunState(run_id, "m", backend, **state), Control())


def rendered_views(db) -> dict[str, str]:
    """What the views render of a run, a sweep, probes and the rest, by name."""
    from llm_magics.data import report_html
    from llm_magics.widgets import choice, evaluation, export, probes, sweep, table
    from llm_magics.widgets.completions import completions_html

    probe_rows = [{"step": 10, "prompt": "capital?", "answer": "Paris."}]
    states = [
        RunState(f"r{i}", "m", "thread", history=[{"step": 1, "eval_loss": loss}]) for i, loss in enumerate((2, 1))
    ]
    examples = [{"index": 0, "prompt": "p", "reference": "r", "prediction": "a", "scores": {"exact_match": 0}}]
    other = [{**examples[0], "prediction": "b"}]
    view = TrainingView(fake_run(db, status="running", history=history(40), probes=probe_rows, reason="a reason"))
    return {
        "table css": table.Table()._css,
        "choice css": choice.Choice()._css,
        "run chart": run_chart_svg(history(40), ChartOptions(log_scale=True)),
        "summary chart": run_chart_html(history(40)),
        "curves": curves_svg({"a": [(1, 1.0), (2, 0.5)], "b": [(1, 2.0), (2, 1.0)]}),
        "statuses": "".join(status_html(RunState("r", "m", "thread", status=s)) for s in ("running", "failed", "x")),
        "stalled": status_html(RunState("r", "m", "thread", status="running", stalled_for=90, error="boom")),
        "live view": view.body.value + view.stop_why.value + view.chart_why.value,
        "summary": summary_html(view.state),
        "sweep": sweep.sweep_html(states, [{"lr": 1}, {"lr": 2}], "eval_loss", "min"),
        "probes": probes.probes_html(probe_rows) + probes.probe_grid_html(probe_rows),
        "completions": completions_html([{"step": 1, "prompt": "p", "completion": "c", "rewards": {"f": 1.0}}]),
        "examples": evaluation.examples_html({"one": examples, "two": other}),
        "export": export._RED.format("failed"),
        "data report": report_html.histogram_svg([5, 50, 500], 100)
        + report_html._preview([("trained", True), ("masked", False)]),
    }


def test_every_view_draws_in_the_themes_colours(db):
    views = rendered_views(db)
    assert {name: outside_the_theme(page) for name, page in views.items() if outside_the_theme(page)} == {}
    # the rows that were unreadable in the dark theme: a hue under the theme's text, mixed into its page colour
    (best,) = re.findall(r'<tr class="llm-trial" style="([^"]*)"', views["sweep"])
    assert "color-mix(in srgb, var(--jp-success-color1" in best and "var(--jp-layout-color0" in best
    assert "color:var(--jp-ui-font-color1" in best
    chosen = re.search(r"tr\.llm-chosen \{ background: ([^;]*);", views["table css"]).group(1)
    assert chosen.startswith("color-mix(in srgb, var(--jp-brand-color1") and "var(--jp-layout-color0" in chosen
    # chart text: titles and ticks in the theme's text colours, the legend's halo in its page colour
    style = ET.fromstring(views["run chart"]).find("style").text
    assert ".llm-axis-title{fill:var(--jp-ui-font-color1" in style and "text{fill:var(--jp-ui-font-color2" in style
    assert ".llm-legend{paint-order:stroke;stroke:var(--jp-layout-color0" in style


def test_a_stop_that_cannot_stop_looks_it_and_says_why_beside_it(db):
    blocking = TrainingView(fake_run(db, "r2", "kernel", status="running"), stoppable=False)
    assert blocking.stop_button.disabled and blocking.stop_button.button_style == ""  # not a pale orange
    assert blocking.stop_why.layout.display != "none" and "interrupt it (■" in blocking.stop_why.value
    # the chart's controls too: greyed, and why in text beside them
    assert blocking.smoothing.disabled and blocking.log_scale.disabled
    assert blocking.chart_why.layout.display != "none"
    assert "smoothing and log scale switch in the summary when the run ends" in blocking.chart_why.value

    background = TrainingView(fake_run(db, status="running"))
    assert background.stop_button.button_style == "warning" and not background.stop_button.disabled
    assert background.stop_why.layout.display == "none" and background.chart_why.layout.display == "none"
    assert not background.smoothing.disabled and not background.log_scale.disabled

    followed = fake_run(db, "r3", status="running")
    followed.followed = True  # a thread run of another kernel: this one cannot stop it
    elsewhere = TrainingView(followed, stoppable=False)
    assert "trains in another kernel" in elsewhere.stop_why.value and elsewhere.stop_button.button_style == ""

    background.state.status = "completed"
    background.render()  # an ended run's Stop is off, and looks it
    assert background.stop_button.disabled and background.stop_button.button_style == ""
    stopping = TrainingView(fake_run(db, "r4", status="running"))
    stopping.stop_button.click()
    assert stopping.stop_button.description == "Stopping…" and stopping.stop_button.button_style == ""


def chart_of(page: str) -> ET.Element:
    return ET.fromstring(re.search(r"<svg.*?</svg>", page, re.DOTALL).group(0))


def polyline(group: ET.Element, kind: str, name: str) -> list[float]:
    """The y pixels of a line in a group: ``kind`` 'llm-smoothed', 'llm-raw' or 'llm-series'."""
    (line,) = [e for e in group.iter("polyline") if kind in e.get("class").split() and e.get("data-series") == name]
    return [float(point.split(",")[1]) for point in line.get("points").split()]


def test_the_summary_keeps_smoothing_and_log_scale_as_switches_that_need_no_kernel(db):
    """A run trained in the kernel could not change its chart while it trained; its summary can:
    checkboxes whose state CSS reads, over the loss drawn on both axes, smoothed and raw."""
    page = run_chart_html(history(40))
    assert switches(page) == {"smooth": " checked", "log": ""} and "smoothing 0.6" in page
    assert "<script" not in page and ".llm-chart:has(.llm-switch-log:checked) .llm-scale-linear" in page
    chart = chart_of(page)
    groups = {e.get("class"): e for e in chart.iter("g") if "llm-scale" in (e.get("class") or "")}
    linear, log = groups["llm-scale-linear"], groups["llm-scale-log"]
    assert {"0.5", "1", "2"} <= {e.text for e in log.iter("text")}  # the log axis' own ticks
    smooth_linear, raw_linear = polyline(linear, "llm-smoothed", "loss"), polyline(linear, "llm-raw", "loss")
    smooth_log, raw_log = polyline(log, "llm-smoothed", "loss"), polyline(log, "llm-raw", "loss")
    # a hover point sits on the smoothed line and carries its offsets to the other three
    points = [e for e in chart.iter("g") if e.get("class") == "llm-pt"][:40]  # the train loss's, in order
    for i, point in enumerate(points):
        y = float(point.find("circle").get("cy"))
        offsets = dict(re.findall(r"--(\w+):(-?[\d.]+)px", point.get("style", "")))
        assert y == pytest.approx(smooth_linear[i], abs=0.6)
        assert y + float(offsets.get("r", 0)) == pytest.approx(raw_linear[i], abs=0.6)
        assert y + float(offsets.get("l", 0)) == pytest.approx(smooth_log[i], abs=0.6)
        assert y + float(offsets.get("rl", 0)) == pytest.approx(raw_log[i], abs=0.6)
    title = next(e for e in chart.iter("text") if e.get("class") == "llm-axis-title")
    assert [t.get("class") for t in title] == ["llm-note-log", "llm-note-smooth"]

    # the live view's choices carry over; a weight of 0 leaves the switch off at the default weight
    assert switches(run_chart_html(history(40), ChartOptions(smoothing=0, log_scale=True))) == {
        "smooth": "",
        "log": " checked",
    }
    assert "smoothing 0.9" in run_chart_html(history(40), ChartOptions(smoothing=0.9))
    assert switches(run_chart_html(history(10))) == {"smooth": "", "log": ""}  # short: raw by default
    nonpositive = run_chart_html([*history(10), {"step": 11, "loss": 0.0}])
    assert switches(nonpositive)["log"] == " disabled" and "log scale (log needs values above 0)" in nonpositive
    assert 'class="llm-scale-log"' not in nonpositive
    assert switches(run_chart_html([{"step": 1, "loss": 1.0}]))["smooth"] == " disabled"  # one point

    # the summary a run leaves, with the options its live view had
    view = TrainingView(fake_run(db, status="running", history=history(40)))
    view.log_scale.value = True
    assert switches(summary_html(view.state, view.options)) == {"smooth": " checked", "log": " checked"}


class Blocks(HTMLParser):
    """The text of an HTML page, a line per block element (as a browser's innerText lays it out)."""

    BLOCKS: ClassVar[set[str]] = {"div", "p", "table", "tr", "h1", "h2", "h3", "h4", "br"}

    def __init__(self, page: str):
        super().__init__()
        self.lines = [""]
        self.feed(page)

    def handle_starttag(self, tag, attrs):
        if tag in self.BLOCKS:
            self.lines.append("")

    def handle_endtag(self, tag):
        if tag in self.BLOCKS:
            self.lines.append("")

    def handle_data(self, data):
        self.lines[-1] += data

    def text(self) -> list[str]:
        return [line for line in self.lines if line.strip()]


def test_compare_runs_puts_each_heading_on_a_line_of_its_own(db):
    from llm_magics.widgets.compare import runs_comparison_html
    from llm_magics.widgets.display import Table

    for run_id in ("a", "b"):
        db.store.runs.insert_one({"_id": run_id, "model": "m", "config": {"lr": 1}, "status": "completed"})
    lines = Blocks(runs_comparison_html(db.store, ["a", "b"])).text()
    assert lines[-2:] == ["configuration keys that differ", "the runs have the same configuration"]
    assert Blocks(Table(["run"], [], title="runs in x")._repr_html_()).text() == ["runs in x", "(none)"]


def test_the_first_click_on_a_column_sorts_the_best_first():
    from llm_magics.widgets.checkpoints import _RUN_COLUMNS, _columns, table_columns
    from llm_magics.widgets.table import Table, lower_is_better

    table = Table(columns=table_columns(["bleu", "rouge_l", "exact_match", "reward", "perplexity"]))
    first = {column["label"]: column["first"] for column in table.columns}
    assert first["eval loss"] == first["train loss"] == first["perplexity"] == "ascending"  # lower is better
    assert {first[name] for name in ("bleu", "rouge_l", "exact_match", "reward")} == {"descending"}
    assert first["step"] == first["size"] == "descending" and first["run"] == "ascending"  # numbers / text
    runs = {column["label"]: column["first"] for column in Table(columns=_columns(_RUN_COLUMNS)).columns}
    assert runs["last loss"] == "ascending" and runs["status"] == "ascending"
    assert (
        Table(columns=[{"key": "x", "label": "eval loss", "numeric": True, "first": "descending"}]).columns[0]["first"]
        == "descending"
    )  # a column that says its order keeps it
    assert [lower_is_better(name) for name in ("eval_loss", "wer", "eval accuracy", "bleu", "chrf")] == [
        True,
        True,
        False,
        False,
        False,
    ]
    assert 'column.first === "descending"' in table._esm


def test_text_cells_are_left_aligned_padded_and_wrapped_everywhere():
    """The cell's own style, so a cell's output (whose stylesheet right-aligns) and a widget (which
    would neither pad nor wrap) show a prompt and its answer alike."""
    from llm_magics.widgets.completions import completions_html
    from llm_magics.widgets.evaluation import examples_html
    from llm_magics.widgets.probes import probe_grid_html, probes_html

    long = "x" * 300  # one word longer than any column
    probes = [{"step": 10, "prompt": "capital?", "answer": long}]
    examples = [{"index": 0, "prompt": "p", "reference": "r", "prediction": long, "scores": {}}]
    pages = {
        "grid": probe_grid_html(probes),
        "probes": probes_html(probes),
        "completions": completions_html([{"step": 1, "prompt": "p", "completion": long, "rewards": {}}]),
        "examples": examples_html({"one": examples}),
    }
    for name, page in pages.items():
        cells = re.findall(r"<t[dh] ([^>]*)>", page)
        assert cells, name
        for cell in cells:
            assert all(
                rule in cell
                for rule in ("text-align:left", "padding:2px 8px", "white-space:pre-wrap", "overflow-wrap:anywhere")
            ), (name, cell)
