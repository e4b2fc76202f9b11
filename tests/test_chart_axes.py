"""The run's chart against time and over a range of steps (issue #32, item 9): a time axis whose
ticks read as a clock and place each step when it was logged, a zoom that draws only its steps
with ticks inside them, and the summary's "x: time" switch and range menu, drawn so that every
state of its switches shows a chart whose hover points sit on its lines. The browser half is
tests/test_browser_chart_axes.py."""

from __future__ import annotations

import random
import re
import xml.etree.ElementTree as ET
from typing import Any

import pytest
from test_charts import by_class, history, series, switches, tips

from llm_magics.runs.run import RunState, chart_point
from llm_magics.widgets.chart_axes import elapsed, x_axis
from llm_magics.widgets.chart_panel import LEFT
from llm_magics.widgets.curve import ChartOptions, _run_panels, chart_svg, run_chart_html, run_chart_svg
from llm_magics.widgets.scales import clock_text, clock_unit, time_ticks

START = 1_700_000_000.0  # epoch seconds, as the recorder logs them
RIGHT = 480 - 14  # the plot's right edge in a chart of the default width
# the seconds each of 10 steps was logged at: a slow start, a pause at step 5 (an evaluation), fast after
UNEVEN = [0, 5, 10, 15, 60, 65, 70, 130, 135, 140]


def timed(seconds: list[float] = UNEVEN) -> list[dict]:
    return [{"step": i + 1, "loss": 2.0 / (i + 1), "time": START + s} for i, s in enumerate(seconds)]


def long_run(steps: int = 1000) -> list[dict]:
    """A run's chart points: train loss, learning rate and token accuracy every step, an
    evaluation every 100, each row logged a second or so after the one before."""
    rng, now, rows = random.Random(0), START, []
    for step in range(1, steps + 1):
        now += rng.uniform(0.8, 1.6)
        loss = 2 / step**0.5 + rng.random() * 0.05
        rows.append({"step": step, "loss": loss, "learning_rate": 2e-4 * (1 - step / (steps + 1)), "time": now})
        rows[-1]["mean_token_accuracy"] = 0.5 + step / 4000
        if step % 100 == 0:
            now += 20
            rows.append({"step": step, "eval_loss": 2.1 / step**0.5, "eval_mean_token_accuracy": 0.6, "time": now})
    return rows


def parse(page: str) -> ET.Element:
    return ET.fromstring(re.search(r"<svg.*?</svg>", page, re.DOTALL).group(0))


def x_ticks(root: ET.Element) -> list[tuple[float, str]]:
    """The x axis' tick labels (those in the row under the last panel) and their pixels."""
    bottom = max(float(e.get("y")) for e in by_class(root, "llm-tick"))
    return [(float(e.get("x")), e.text) for e in by_class(root, "llm-tick") if float(e.get("y")) == bottom]


def group(root: ET.Element, *classes: str) -> ET.Element:
    """The one group with all ``classes`` (the first where several are)."""
    return next(e for e in root.iter() if set(classes) <= set((e.get("class") or "").split()) and e.tag == "g")


def under(chart: ET.Element, axis: str) -> ET.Element:
    """An x axis' ticks under the last panel: its group among the chart's last."""
    return [e for e in chart if axis in (e.get("class") or "").split()][-1]


def offsets(point: ET.Element) -> dict[str, float]:
    return {key: float(value) for key, value in re.findall(r"--(\w+):(-?[\d.]+)px", point.get("style", ""))}


def test_time_ticks_read_as_a_clock_at_round_intervals():
    def labels(low: float, high: float, count: int = 7) -> tuple[str, list[str]]:
        ticks = time_ticks(low, high, count)
        unit = clock_unit(ticks)
        return unit, [clock_text(t, unit) for t in ticks]

    assert labels(0, 130) == ("m:ss", ["0:00", "0:30", "1:00", "1:30", "2:00", "2:30"])
    assert labels(0, 1500) == ("m:ss", ["0:00", "5:00", "10:00", "15:00", "20:00", "25:00"])
    assert labels(0, 3 * 3600) == ("h:mm", ["0:00", "0:30", "1:00", "1:30", "2:00", "2:30", "3:00"])
    assert labels(3700, 3790, 4) == ("h:mm:ss", ["1:01:30", "1:02:00", "1:02:30", "1:03:00", "1:03:30"])
    assert labels(0, 2.5, 5) == ("s", ["0", "0.5", "1", "1.5", "2", "2.5"])  # a tiny run's steps
    assert labels(0, 5 * 86400, 4) == ("h:mm", ["0:00", "48:00", "96:00", "144:00"])  # whole days apart


def test_the_time_axis_places_each_step_when_it_was_logged():
    chart = ET.fromstring(run_chart_svg(timed(), ChartOptions(x_axis="time")))
    ticks = x_ticks(chart)
    assert [label for _, label in ticks] == ["0:00", "0:30", "1:00", "1:30", "2:00"]
    pixel_per_second = (RIGHT - LEFT) / 140  # the axis spans the run's 2:20
    assert [x for x, _ in ticks] == pytest.approx([LEFT + s * pixel_per_second for s in (0, 30, 60, 90, 120)], abs=0.06)
    xs = [x for x, _ in series(chart, "loss")]
    assert xs == pytest.approx([LEFT + s * pixel_per_second for s in UNEVEN], abs=0.06)  # not evenly by step
    assert [e.text for e in by_class(chart, "llm-x-title")] == ["m:ss"]
    assert tips(chart)[4] == "step 5 · train loss 0.4"  # the hover label still names the step
    # the step axis, as before: evenly by step
    by_step = ET.fromstring(run_chart_svg(timed()))
    steps = [x for x, _ in series(by_step, "loss")]
    assert steps[1] - steps[0] == pytest.approx(steps[9] - steps[8], abs=0.11)
    assert [e.text for e in by_class(by_step, "llm-x-title")] == ["step"]


def test_a_row_without_a_time_sits_between_the_rows_around_it():
    rows = timed()
    del rows[7]["time"]  # step 8: between step 7 (70 s) and step 9 (135 s)
    rows.insert(5, {"step": 5, "eval_loss": 0.5})  # an evaluation without a time: at its step's, 60 s
    of = elapsed(rows)
    assert of is not None and of(rows[8]) == pytest.approx(102.5) and of(rows[5]) == pytest.approx(60)
    assert elapsed([{"step": 1, "loss": 1.0, "time": START}]) is None  # one time: no time axis
    assert "m:ss" not in run_chart_svg(history(10), ChartOptions(x_axis="time"))  # none: the step axis
    with pytest.raises(ValueError, match="x_axis is one of step, time, not 'epoch'"):
        ChartOptions(x_axis="epoch")


def test_logged_times_are_kept_in_the_charts_points_without_being_a_series():
    assert chart_point({"step": 3, "loss": 1.0, "time": START, "epoch": 0.1}) == {
        "step": 3,
        "loss": 1.0,
        "time": START,
    }
    assert chart_point({"step": 3, "time": START, "epoch": 0.1}) is None  # nothing charted
    state = RunState("r", "m", "thread")
    for row in timed():
        state.take(row)
    assert all("time" in point for point in state.history)
    chart = ET.fromstring(run_chart_svg(state.history))
    assert {e.get("data-series") for e in by_class(chart, "llm-series")} == {"loss"}


def test_a_zoom_draws_only_its_steps_with_ticks_inside_them():
    rows = history(100)
    chart = ET.fromstring(run_chart_svg(rows, ChartOptions(smoothing=0, zoom=(40, 60))))
    ticks = x_ticks(chart)
    assert [label for _, label in ticks] == ["40", "45", "50", "55", "60"]
    assert ticks[0][0] == LEFT and ticks[-1][0] == RIGHT  # the range fills the width
    loss = series(chart, "loss")
    assert len(loss) == 21 and loss[0][0] == LEFT and loss[-1][0] == RIGHT
    steps = {int(tip.split()[1]) for tip in tips(chart)}
    assert min(steps) == 40 and max(steps) == 60
    # the y axis over the values in the range: its top tick well under the first steps' loss
    loss_ticks = [float(e.text) for e in by_class(chart, "llm-tick") if float(e.get("x")) == LEFT - 4][:6]
    assert max(loss_ticks) < 0.4 < rows[0]["loss"]
    # the same range on the time axis: ticks inside its times; a range with nothing in it says so
    zoomed = ET.fromstring(run_chart_svg(long_run(), ChartOptions(x_axis="time", zoom=(600, 900))))
    seconds = [x for x, _ in x_ticks(zoomed)]
    assert min(seconds) >= LEFT and max(seconds) <= RIGHT
    assert "nothing was logged from step 200 to 300" in run_chart_svg(rows[:10], ChartOptions(zoom=(300, 200)))


def test_a_zoom_keeps_the_smoothing_of_the_whole_run():
    rows = history(100)
    whole = ET.fromstring(run_chart_svg(rows, ChartOptions(smoothing=0.9)))
    zoomed = ET.fromstring(run_chart_svg(rows, ChartOptions(smoothing=0.9, zoom=(50, 100))))
    assert tips(zoomed)[0] == tips(whole)[49]  # "step 50 · train loss ... (smoothed ...)": the same average


def test_the_summary_has_a_time_switch_and_a_range_menu_over_every_variant():
    page = run_chart_html(long_run())
    assert switches(page) == {"smooth": " checked", "log": "", "time": ""}
    menu = re.search(r'<select class="llm-range">(.*?)</select>', page).group(1)
    assert re.findall(r'class="llm-switch-(\w+)">([^<]*)', menu) == [
        ("all", "all steps"),
        ("half", "last half"),
        ("quarter", "last quarter"),
    ]
    assert ".llm-chart:has(.llm-switch-time:checked) .llm-x-step" in page
    assert ".llm-chart:has(.llm-switch-time:not(:checked)) .llm-x-time" in page
    chart = parse(page)
    # the loss on each y axis and each x axis, smoothed and raw
    for scale in ("llm-scale-linear", "llm-scale-log"):
        for axis in ("llm-x-step", "llm-x-time"):
            lines = group(group(chart, scale), axis, "llm-zoomed")
            kinds = sorted(e.get("class") for e in lines.iter("polyline") if e.get("data-series") == "loss")
            assert kinds == ["llm-raw", "llm-series llm-smoothed"]
    # the x ticks of each axis over every step and each range; the time's read as a clock
    for axis in ("llm-x-step", "llm-x-time"):
        for name in ("all", "half", "quarter"):
            assert by_class(group(under(chart, axis), f"llm-range-{name}"), "llm-tick")
    on_time = under(chart, "llm-x-time")
    assert [e.text for e in by_class(group(on_time, "llm-range-all"), "llm-tick")][:3] == ["0:00", "5:00", "10:00"]
    assert [e.text for e in by_class(group(on_time, "llm-range-quarter"), "llm-x-title")] == ["m:ss"]
    quarter = group(under(chart, "llm-x-step"), "llm-range-quarter")
    assert min(float(e.text.replace(",", "")) for e in by_class(quarter, "llm-tick")) >= 750  # its own ticks
    # the live view's choices carry over; a run that logged no times has no time switch
    assert switches(run_chart_html(long_run(), ChartOptions(x_axis="time")))["time"] == " checked"
    untimed, short = run_chart_html(history(40)), run_chart_html(timed())
    assert "time" not in switches(untimed) and '<g class="llm-x-time' not in untimed
    assert "<select" not in short and 'class="llm-range-half' not in short  # a short run: nothing to zoom to


def test_each_hover_point_carries_its_place_on_the_time_axis():
    chart = parse(run_chart_html(long_run()))
    linear = group(chart, "llm-scale-linear")
    on_time = [x for x, _ in _polyline(group(linear, "llm-x-time"), "llm-smoothed")]
    on_step = [x for x, _ in _polyline(group(linear, "llm-x-step"), "llm-smoothed")]
    points = [e for e in chart.iter("g") if e.get("class") == "llm-pt"][: len(on_step)]  # the train loss's
    for i, point in enumerate(points):
        x = float(point.find("circle").get("cx"))
        assert x == pytest.approx(on_step[i], abs=0.6)
        assert x + offsets(point).get("t", 0) == pytest.approx(on_time[i], abs=0.6)
        assert offsets(point)["x"] == pytest.approx(on_step[i], abs=0.06)  # its pixel, for a range's map
    step_of = [int(point.find("title").text.split()[1]) for point in points]
    ranges = [point.get("data-range") for point in points]
    assert {r for s, r in zip(step_of, ranges, strict=True) if s < 500} == {None}
    assert {r for s, r in zip(step_of, ranges, strict=True) if 500 <= s < 750} == {"half"}
    assert {r for s, r in zip(step_of, ranges, strict=True) if s >= 750} == {"quarter"}


def test_a_ranges_maps_put_its_steps_and_values_inside_the_plot():
    """The map of the last quarter (scale, shift) takes the step axis' pixel of its first step to
    the plot's left edge and of the last to its right; and the loss's values in it inside the panel."""
    rows = long_run()
    chart = parse(run_chart_html(rows))
    maps = {key: float(value) for key, value in re.findall(r"--([\w-]+):(-?[\d.]+)(?:px)?", chart.get("style"))}
    on_step = _polyline(group(group(chart, "llm-scale-linear"), "llm-x-step"), "llm-smoothed")
    first = next(i for i, point in enumerate(on_step) if point[0] >= on_step[-1][0] - (on_step[-1][0] - LEFT) / 4)
    scale, shift = maps["sx-step-quarter"], maps["bx-step-quarter"]
    assert on_step[first][0] * scale + shift == pytest.approx(LEFT, abs=scale * 2)
    assert on_step[-1][0] * scale + shift == pytest.approx(RIGHT, abs=0.1)
    panel = next(e for e in chart.iter("g") if e.get("class") == "llm-panel")  # the loss's
    frame = next(e for e in panel.iter("rect") if e.get("class") == "llm-frame")
    top, bottom = float(frame.get("y")), float(frame.get("y")) + float(frame.get("height"))
    style = {key: float(value) for key, value in re.findall(r"--([\w-]+):(-?[\d.]+)(?:px)?", panel.get("style"))}
    ys = [style["sy-linear-quarter"] * y + style["by-linear-quarter"] for _, y in on_step[first:]]
    assert top <= min(ys) and max(ys) <= bottom and max(ys) - min(ys) > (bottom - top) / 3  # magnified
    assert set(style) >= {
        f"{m}-{scale}-{name}" for m in ("sy", "by") for scale in ("linear", "log") for name in ("half", "quarter")
    }


def test_the_time_axis_and_the_ranges_cost_a_fifth_each_at_most():
    """A 1000-step run's summary chart: drawn on both x axes and with the range menu, it stays
    within 40% of the chart without them (a second chart would double it)."""
    rows = long_run()
    panels = _run_panels(rows, ChartOptions(), (), switches=True)[1]

    def size(**drawn: Any) -> int:
        return len(chart_svg(panels, **drawn))

    plain, with_time = size(), size(x_axes=("step", "time"))
    with_ranges, both = size(ranges=True), size(x_axes=("step", "time"), ranges=True)
    print(
        f"a 1000-step run's chart: {plain:,} plain, {with_time:,} with time, {with_ranges:,} with ranges, {both:,} both"
    )
    assert with_time < 1.2 * plain and with_ranges < 1.2 * plain and both < 1.4 * plain
    assert len(run_chart_html(rows)) < both + 8000  # the switches, the menu and their CSS


def test_an_axis_over_a_range_has_ticks_inside_it():
    axis = x_axis("step", 437, 912, LEFT, RIGHT, exact=True)
    assert axis.ticks == [500, 600, 700, 800, 900] and axis.at(437) == LEFT and axis.at(912) == RIGHT
    spanning = x_axis("step", 437, 912, LEFT, RIGHT)
    assert spanning.ticks[0] <= 437 and spanning.ticks[-1] >= 912 and spanning.at(spanning.ticks[0]) == LEFT


def _polyline(scope: ET.Element, kind: str) -> list[tuple[float, float]]:
    (line,) = [e for e in scope.iter("polyline") if kind in e.get("class").split() and e.get("data-series") == "loss"]
    return [tuple(map(float, point.split(","))) for point in line.get("points").split()]


def test_the_live_views_axis_and_range_controls_redraw_its_chart(db):
    """A run the kernel is not busy training (followed, or in a thread): the x-axis menu and the
    step-range slider redraw the chart; the slider's whole span follows the run's total."""
    from llm_magics.runs.run import Control, Run
    from llm_magics.widgets.progress import TrainingView

    state = RunState("r1", "m", "thread", status="running", step=100, total_steps=200)
    for row in long_run(100):
        state.take(row)
    view = TrainingView(Run(db, "r1", state, Control()), update_interval=0)
    assert view.zoom.value == (0, 200) and not view.zoom.disabled and view.options.zoom is None
    view.zoom.value = (40, 60)
    ticks = [label for _, label in x_ticks(parse(view.body.value))]
    assert view.options.zoom == (40, 60) and ticks == ["40", "45", "50", "55", "60"]
    view.x_axis.value = "time"
    assert view.options.x_axis == "time" and [e.text for e in by_class(parse(view.body.value), "llm-x-title")] == [
        "m:ss"
    ]
    view.zoom.value = (0, 200)  # the whole span: every step again
    assert view.options.zoom is None
    state.total_steps = 400
    view.render()
    assert view.zoom.value == (0, 400)  # a slider at its whole span grows with the run
