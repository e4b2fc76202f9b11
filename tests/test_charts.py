"""The run's chart, the probe grid and the metrics the live view lists, without training: what a
user reads on them (issue #18: ticks, log scale, smoothing, the learning rate, hover values, probe
answers over time, GPU memory)."""

from __future__ import annotations

import itertools
import math
import re
import xml.etree.ElementTree as ET
from types import SimpleNamespace

import pytest

from llm_magics.runs.run import Control, Run, RunState
from llm_magics.widgets.curve import ChartOptions, curves_svg, run_chart_svg
from llm_magics.widgets.probes import probe_grid_html
from llm_magics.widgets.progress import TrainingView, metrics_rows, summary_html
from llm_magics.widgets.scales import log_ticks, nice_ticks, smoothed, tick_text

HOSTILE = "<img src=x onerror=alert(1)>"


def history(steps: int = 40, every_eval: int = 10) -> list[dict]:
    """A run's logged rows: a falling loss, a decaying learning rate, an evaluation now and then."""
    rows = []
    for step in range(1, steps + 1):
        row = {"step": step, "loss": 2.0 / step**0.5, "learning_rate": 2e-4 * (1 - step / (steps + 1))}
        if step % every_eval == 0:
            row["eval_loss"] = 2.2 / step**0.5
        rows.append(row)
    return rows


def parse(svg: str) -> ET.Element:
    return ET.fromstring(svg)


def by_class(root: ET.Element, name: str) -> list[ET.Element]:
    return [e for e in root.iter() if name in (e.get("class") or "").split()]


def series(root: ET.Element, name: str) -> list[tuple[float, float]]:
    (line,) = [e for e in by_class(root, "llm-series") if e.get("data-series") == name]
    return [tuple(map(float, point.split(","))) for point in line.get("points", "").split()]


def tips(root: ET.Element) -> list[str]:
    return [point.find("title").text for point in by_class(root, "llm-pt")]


def is_one_two_five(step: float) -> bool:
    mantissa = step / 10 ** math.floor(math.log10(step) + 1e-9)
    return any(math.isclose(mantissa, m) for m in (1, 2, 5))


@pytest.mark.parametrize(
    ("low", "high", "whole"),
    [
        (0.31, 2.74, False),
        (1, 480, True),
        (0.000013, 0.0002, False),
        (-3.5, 12.25, False),
        (7, 7, True),
        (2.5, 2.5, False),
    ],
)
def test_ticks_are_evenly_spaced_1_2_5_numbers_covering_the_data(low, high, whole):
    ticks = nice_ticks(low, high, 5, whole=whole)
    steps = [b - a for a, b in itertools.pairwise(ticks)]
    assert 3 <= len(ticks) <= 8, ticks
    assert ticks[0] <= low and ticks[-1] >= high
    assert all(math.isclose(s, steps[0]) for s in steps) and is_one_two_five(steps[0])
    if whole:
        assert all(t == int(t) for t in ticks)


def test_tick_labels_read_as_the_numbers_they_are():
    assert [tick_text(t, 0.5) for t in nice_ticks(0.3, 2.7, 5)] == ["0", "0.5", "1.0", "1.5", "2.0", "2.5", "3.0"]
    assert [tick_text(t, 5000) for t in (0, 5000, 10000)] == ["0", "5,000", "10,000"]
    assert [tick_text(t, 5e-5) for t in (0, 5e-5, 1e-4, 1.5e-4)] == ["0", "5e-05", "0.0001", "0.00015"]
    assert [tick_text(t) for t in log_ticks(0.3, 3)] == ["0.2", "0.5", "1", "2", "5"]


def test_log_ticks_span_the_data_in_1_2_5_or_powers_of_ten():
    assert log_ticks(0.3, 3) == [0.2, 0.5, 1, 2, 5]
    assert log_ticks(1e-4, 50) == [1e-4, 1e-3, 1e-2, 0.1, 1, 10, 100]  # many decades: the powers alone
    assert log_ticks(1, 1) == [1, 2]


def test_the_loss_on_a_log_axis_and_back_to_linear_when_a_loss_is_not_above_zero():
    rows = [{"step": 1, "loss": 10.0}, {"step": 2, "loss": 1.0}, {"step": 3, "loss": 0.1}]
    chart = parse(run_chart_svg(rows, ChartOptions(log_scale=True)))
    assert "loss · log scale" in [e.text for e in by_class(chart, "llm-axis-title")]
    (_, y1), (_, y2), (_, y3) = series(chart, "loss")
    assert y1 < y2 < y3 and math.isclose(y2 - y1, y3 - y2, abs_tol=0.15)  # a decade is a decade
    assert {"0.1", "1", "10"} <= {e.text for e in by_class(chart, "llm-tick")}
    linear = parse(run_chart_svg([*rows, {"step": 4, "loss": 0.0}], ChartOptions(log_scale=True)))
    assert "loss · linear: log needs values above 0" in [e.text for e in by_class(linear, "llm-axis-title")]


def test_smoothing_is_tensorboards_debiased_moving_average():
    assert smoothed([1, 2, 3], 0.5) == pytest.approx([1, 1.25 / 0.75, 2.125 / 0.875])
    assert smoothed([4, 4, 4], 0.9) == pytest.approx([4, 4, 4])  # no pull towards zero at the start
    assert smoothed([1, 5, 2], 0) == [1, 5, 2]


def test_a_long_run_is_smoothed_by_default_with_its_raw_line_faint_and_both_values_on_hover():
    long, short = parse(run_chart_svg(history(40))), parse(run_chart_svg(history(20)))
    assert "loss · smoothed 0.6" in [e.text for e in by_class(long, "llm-axis-title")]
    raw = [float(p.split(",")[1]) for p in by_class(long, "llm-raw")[0].get("points").split()]
    drawn = [y for _, y in series(long, "loss")]
    assert raw != drawn and len(raw) == len(drawn) == 40
    assert "step 40 · train loss 0.3162 (smoothed " in tips(long)[39]
    assert not by_class(short, "llm-raw") and "loss" in [e.text for e in by_class(short, "llm-axis-title")]
    assert "step 20 · train loss 0.4472" in tips(short)
    unsmoothed = parse(run_chart_svg(history(40), ChartOptions(smoothing=0)))
    assert not by_class(unsmoothed, "llm-raw") and [y for _, y in series(unsmoothed, "loss")] == raw


def test_the_chart_has_ticks_gridlines_eval_points_joined_and_the_learning_rate_in_its_own_panel():
    chart = parse(run_chart_svg(history(40), ChartOptions(smoothing=0)))
    ticks = [e.text for e in by_class(chart, "llm-tick")]
    assert {"0", "10", "20", "30", "40"} <= set(ticks) and len(ticks) >= 10  # the step axis and two y axes
    assert len(by_class(chart, "llm-grid")) >= 10
    assert len(series(chart, "eval_loss")) == 4  # one line through the 4 evaluations
    assert "step 30 · eval loss 0.4017" in tips(chart)
    titles = [e.text for e in by_class(chart, "llm-axis-title")]
    assert titles == ["loss", "learning rate"]
    (lr_top,) = [float(e.get("y")) for e in by_class(chart, "llm-axis-title") if e.text == "learning rate"]
    assert min(y for _, y in series(chart, "learning_rate")) > lr_top > max(y for _, y in series(chart, "loss"))
    assert f"step 1 · learning rate {2e-4 * 40 / 41:.4g}" in tips(chart)
    no_lr = parse(run_chart_svg([{k: v for k, v in r.items() if k != "learning_rate"} for r in history(40)]))
    assert not [e for e in by_class(no_lr, "llm-series") if e.get("data-series") == "learning_rate"]


def test_accuracies_have_a_panel_and_every_hover_label_names_step_series_and_value():
    rows = [{"step": s, "loss": 1.0 / s, "mean_token_accuracy": 0.5 + s / 100} for s in range(1, 6)]
    rows[-1]["eval_mean_token_accuracy"] = 0.61
    chart = parse(run_chart_svg(rows))
    assert [e.text for e in by_class(chart, "llm-axis-title")] == ["loss", "accuracy"]
    assert tips(chart) == [
        *(f"step {s} · train loss {1.0 / s:.4g}" for s in range(1, 6)),
        *(f"step {s} · token accuracy {0.5 + s / 100:.4g}" for s in range(1, 6)),
        "step 5 · eval token accuracy 0.61",
    ]
    for point in by_class(chart, "llm-pt"):  # the label shown on hover says what the tooltip says
        assert point.find("title").text == by_class(point, "llm-tip")[0].text
    assert ".llm-pt:hover .llm-tip{visibility:visible}" in chart.find("style").text


def test_values_that_are_not_finite_numbers_are_left_out():
    rows = [
        {"step": 1, "loss": 1.0},
        {"step": 2, "loss": float("nan")},
        {"step": 3, "loss": float("inf"), "learning_rate": True},
        {"step": "4", "loss": 0.5},
        {"step": 5, "loss": None},
        {"step": 6, "loss": 0.25},
    ]
    chart = parse(run_chart_svg(rows))
    assert tips(chart) == ["step 1 · train loss 1", "step 6 · train loss 0.25"]
    assert len(series(chart, "loss")) == 2
    assert "appears with the first logged step" in run_chart_svg([{"step": 1, "loss": float("nan")}])


def test_names_from_records_are_escaped():
    svg = curves_svg({HOSTILE: [(1, 1.0), (2, 0.5)], "ok": [(1, 2.0)]}, title=HOSTILE)
    assert HOSTILE not in svg and "&lt;img src=x" in svg
    chart = parse(svg)  # still well-formed: the name is text, not markup
    assert [e.get("data-series") for e in by_class(chart, "llm-series")] == [HOSTILE, "ok"]
    assert f"step 2 · {HOSTILE} 0.5" in tips(chart)
    rows = [{"step": 1, "loss": 1.0, f"{HOSTILE}accuracy": 0.5}]
    assert HOSTILE not in run_chart_svg(rows)


def test_the_runs_compared_share_the_same_axes_and_hover():
    chart = parse(
        curves_svg({"run-a": [(s, 1 / s) for s in range(1, 50)], "run-b": [(s, 2 / s) for s in range(1, 50)]})
    )
    assert [e.get("data-series") for e in by_class(chart, "llm-series")] == ["run-a", "run-b"]
    assert len(by_class(chart, "llm-tick")) >= 8 and len(by_class(chart, "llm-pt")) == 98
    assert not by_class(chart, "llm-raw")  # compared as logged, not smoothed


def test_a_long_run_is_thinned_to_a_few_hundred_points_per_series():
    chart = parse(run_chart_svg(history(5000, every_eval=50)))
    assert 300 <= len(series(chart, "loss")) <= 401 and len(series(chart, "eval_loss")) == 100
    assert tips(chart)[len(series(chart, "loss")) - 1].startswith("step 5000 · train loss")  # the last kept


def grid(html_text: str) -> list[list[str]]:
    table = ET.fromstring(html_text.replace("&nbsp;", " "))
    return [["".join(cell.itertext()) for cell in row] for row in table.iter("tr")]


def test_the_probe_grid_shows_each_prompt_by_each_step():
    probes = [
        {"step": step, "prompt": prompt, "answer": f"{prompt[-1]}{step}"}
        for step in (100, 200, 300)
        for prompt in ("capital of France?", "2+2=")
    ]
    assert grid(probe_grid_html(probes)) == [
        ["probe prompt", "step 100", "step 200", "step 300"],
        ["capital of France?", "?100", "?200", "?300"],
        ["2+2=", "=100", "=200", "=300"],
    ]
    assert probe_grid_html([]) == ""


def test_the_probe_grid_of_a_long_run_shows_the_first_step_and_the_newest_seven():
    probes = [{"step": step, "prompt": "p", "answer": f"a{step}"} for step in range(10, 130, 10)]
    rows = grid(probe_grid_html(probes))
    assert rows[0] == ["probe prompt", "step 10", "…", *(f"step {s}" for s in range(60, 130, 10))]
    assert rows[1] == ["p", "a10", "…", *(f"a{s}" for s in range(60, 130, 10))]
    assert 'title="4 steps not shown"' in probe_grid_html(probes)


def test_the_probe_grid_escapes_prompts_and_answers_and_marks_a_missing_answer():
    page = probe_grid_html(
        [{"step": 1, "prompt": HOSTILE, "answer": HOSTILE}, {"step": 2, "prompt": "p", "answer": "x"}]
    )
    assert HOSTILE not in page and page.count("&lt;img src=x") == 2
    assert grid(page)[1] == [HOSTILE, HOSTILE, "—"]


def test_a_runs_probe_answers_accumulate_step_by_step():
    state = RunState("r", "m", "thread")
    state.add_probes(2, [{"prompt": "p", "answer": "noise"}])
    state.add_probes(4, [{"prompt": "p", "answer": "Paris."}, "not a probe"])
    state.add_probes(4, [{"prompt": "p", "answer": "Paris"}])  # a step probed again: its answers replaced
    assert state.probes == [
        {"prompt": "p", "answer": "noise", "step": 2},
        {"prompt": "p", "answer": "Paris", "step": 4},
    ]
    assert grid(probe_grid_html(state.probes))[1] == ["p", "noise", "Paris"]


def test_gpu_memory_and_samples_per_second_show_only_when_logged():
    state = RunState("r", "m", "thread")
    state.take({"step": 1, "loss": 1.0, "learning_rate": 1e-4, "num_tokens": 10, "time": 1.0})
    names = [name for name, _ in metrics_rows(state)]
    assert names == ["train loss", "eval loss", "learning rate", "tokens/s"]  # a CPU run: nothing of a GPU
    gib = 2**30
    state.take(
        {
            "step": 2,
            "loss": 0.9,
            "samples_per_s": 123.4,
            "gpu_memory_allocated": int(1.2 * gib),
            "gpu_memory_reserved": int(1.5 * gib),
            "gpu_memory_peak": int(1.4 * gib),
        }
    )
    rows = dict(metrics_rows(state))
    assert rows["GPU memory"] == "1.2 / 1.5 GiB (peak 1.4 GiB)" and rows["samples/s"] == "123"
    assert list(rows)[-3:] == ["tokens/s", "samples/s", "GPU memory"]
    state.latest.update(gpu_memory_allocated=300 * 2**20, gpu_memory_reserved=512 * 2**20, gpu_memory_peak=400 * 2**20)
    assert dict(metrics_rows(state))["GPU memory"] == "300.0 / 512.0 MiB (peak 400.0 MiB)"


def test_token_accuracy_and_every_eval_metric_show_live():
    state = RunState("r", "m", "thread")
    state.take({"step": 1, "loss": 1.0, "mean_token_accuracy": 0.4567, "entropy": 2.0})
    state.take(
        {"step": 1, "eval_loss": 1.1, "eval_mean_token_accuracy": 0.5, "eval_entropy": 1.9, "eval_num_tokens": 9}
    )
    rows = dict(metrics_rows(state))
    assert rows["token accuracy"] == "45.7%" and rows["eval token accuracy"] == "50.0%"
    assert rows["eval entropy"] == "1.9" and rows["eval loss"] == "1.1"
    assert "eval num tokens" not in rows and "entropy" not in rows
    assert state.history == [
        {"step": 1, "loss": 1.0, "mean_token_accuracy": 0.4567},
        {"step": 1, "eval_loss": 1.1, "eval_mean_token_accuracy": 0.5, "eval_entropy": 1.9, "eval_num_tokens": 9},
    ]


def test_a_run_from_the_store_has_the_same_chart_metrics_and_probes_as_live(db):
    """A finished run's summary, a followed run's view and the live view are built from the same rows."""
    from llm_magics.runs.follow import Follower
    from llm_magics.store.records import now

    rows = [
        {"step": 1, "loss": 1.0, "learning_rate": 1e-4, "mean_token_accuracy": 0.4, "time": 1.0},
        {"step": 2, "loss": 0.8, "learning_rate": 5e-5, "eval_loss": 0.9, "eval_entropy": 1.5, "time": 2.0},
        {"step": 3, "loss": 0.7, "learning_rate": 0.0, "gpu_memory_allocated": 5, "time": 3.0},
    ]
    live = RunState("r1", "m", "thread")
    for row in rows:
        live.take(row)
    live.add_probes(2, [{"prompt": "p", "answer": "a2"}])
    live.add_probes(3, [{"prompt": "p", "answer": "a3"}])
    db.store.save_model("m")
    db.store.runs.insert_one({"_id": "r1", "model": "m", "status": "completed", "step": 3, "started": now()})
    db.store.metrics.insert_many([{"run": "r1", "model": "m", **row} for row in rows])
    for step in (2, 3):
        db.store.checkpoints.insert_one(
            {
                "_id": f"c{step}",
                "model": "m",
                "run": "r1",
                "step": step,
                "probes": [{"prompt": "p", "answer": f"a{step}"}],
            }
        )
    for stored in (Run(db, "r1").stored_state(), Follower(db, "r1").state):
        assert stored.history == live.history and stored.latest == live.latest
        assert stored.probes == live.probes and stored.learning_rate == 0.0
        assert run_chart_svg(stored.history) == run_chart_svg(live.history)


def fake_view(db, **state) -> TrainingView:
    return TrainingView(Run(db, "r1", RunState("r1", "m", "thread", **state), Control()), update_interval=0)


def test_the_live_views_controls_change_the_chart_and_the_summary_keeps_them(db):
    view = fake_view(db, status="running", total_steps=100, step=40, history=history(40))
    view.state.add_probes(20, [{"prompt": "capital?", "answer": "Paris."}])
    view.render()
    assert "loss · smoothed 0.6" in view.body.value and "llm-probe-grid" in view.body.value
    view.log_scale.value = True
    assert "loss · log scale · smoothed 0.6" in view.body.value
    view.smoothing.value = 0.9
    assert "loss · log scale · smoothed 0.9" in view.body.value
    view.smoothing.value = 0
    assert "llm-raw" not in view.body.value and "loss · log scale<" in view.body.value
    # the summary keeps them, as switches that work without a kernel (tests/test_view_details.py)
    assert switches(summary_html(view.state, view.options)) == {"smooth": "", "log": " checked"}
    assert switches(summary_html(view.state)) == {"smooth": " checked", "log": ""}  # without a view: the defaults
    blocking = TrainingView(Run(db, "r2", RunState("r2", "m", "kernel"), Control()), stoppable=False)
    assert blocking.log_scale.disabled and blocking.smoothing.disabled  # the kernel trains: it reads no change
    assert "the kernel is training" in blocking.chart_why.value and not view.log_scale.disabled


def switches(page: str) -> dict[str, str]:
    """The chart switches of a page: name -> ' checked', ' disabled' or ''."""
    return dict(re.findall(r'<input type="checkbox" class="llm-switch-(\w+)"([^>]*)>', page))


@pytest.fixture
def callback():
    from llm_magics.training.callbacks import ProgressCallback

    events = []
    args = SimpleNamespace(num_train_epochs=1, train_batch_size=4, gradient_accumulation_steps=2, world_size=1)
    state = SimpleNamespace(is_world_process_zero=True, global_step=0, max_steps=100, epoch=0.0)
    progress = ProgressCallback(events.append)
    progress.on_train_begin(args, state, None)

    def log(step: int, **logs: float) -> dict:
        state.global_step, state.epoch = step, step / 100
        progress.on_log(args, state, None, logs=logs)
        progress.on_step_begin(args, state, None)
        return events[-1]

    return progress, log


@pytest.mark.skipif("__import__('torch').cuda.is_available()", reason="checks a run without CUDA")
def test_logged_rows_carry_samples_per_second_and_nothing_of_a_gpu_without_cuda(callback):
    _, log = callback
    log(10, loss=1.0, num_tokens=100)
    row = log(20, loss=0.9, num_tokens=300)
    assert row["samples_per_s"] > 0 and row["tokens_per_s"] > 0
    assert row["tokens_per_s"] / row["samples_per_s"] == pytest.approx(200 / (10 * 4 * 2), rel=1e-6)
    assert not [key for key in row if key.startswith("gpu")]


def test_with_cuda_each_logged_row_carries_the_gpus_memory(callback, monkeypatch):
    """The CUDA branch, with torch's allocator counters stood in for (two devices: their sum)."""
    import torch

    progress, log = callback
    progress._cuda = True
    counters = {"memory_allocated": 100, "memory_reserved": 300, "max_memory_allocated": 200}
    for name, value in counters.items():
        monkeypatch.setattr(torch.cuda, name, lambda device, value=value: value + device)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    row = log(10, loss=1.0)
    assert (row["gpu_memory_allocated"], row["gpu_memory_reserved"], row["gpu_memory_peak"]) == (201, 601, 401)
