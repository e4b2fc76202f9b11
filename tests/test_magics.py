"""The magics through a real IPython shell: parsing, errors, the Run handle, predict, runs."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time

import pytest
from helpers import Shell, qa_docs
from IPython.core.error import UsageError

pytestmark = pytest.mark.slow

CELL = """%%llm_finetune my-model -o run
model: {{ base_path }}
data: docs
bits: 4
lora_r: 4
max_steps: 6
save_steps: 2
max_length: 64
"""


@pytest.fixture
def trained(shell, db):
    db["docs"].insert_many(qa_docs(30))
    shell.run(CELL)
    return shell


def test_load_ext_imports_nothing_heavy():
    code = textwrap.dedent("""
        import sys, time
        from IPython.core.interactiveshell import InteractiveShell
        ip = InteractiveShell.instance()
        started = time.perf_counter()
        ip.run_line_magic("load_ext", "llm_magics")
        elapsed = time.perf_counter() - started
        heavy = [m for m in ("torch", "transformers", "peft", "trl", "ray", "pymongo", "bitsandbytes", "datasets")
                 if m in sys.modules]
        print(heavy, elapsed)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    heavy, elapsed = out.stdout.strip().rsplit(" ", 1)
    assert heavy == "[]"
    assert float(elapsed) < 0.3


def test_listing_runs_imports_no_deep_learning_library(tmp_path):
    """``%llm_runs`` reads the store only: a table of runs costs no torch, transformers or Ray import."""
    code = textwrap.dedent("""
        import sys
        from IPython.core.interactiveshell import InteractiveShell
        ip = InteractiveShell.instance()
        ip.run_line_magic("load_ext", "llm_magics")
        print(ip.run_line_magic("llm_runs", ""))
        print([m for m in ("torch", "transformers", "peft", "trl", "ray", "datasets") if m in sys.modules])
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "runs in embedded://" in out.stdout and out.stdout.strip().endswith("[]"), out.stdout


def test_unload_removes_the_magics():
    testing = Shell()
    testing.run("%unload_ext llm_magics")
    with pytest.raises(UsageError, match="Line magic function `%llm_runs` not found"):
        testing.run("%llm_runs")


def test_a_cell_trains_and_gives_the_run_handle(trained, db):
    run = trained.ns["run"]
    assert run.status == "completed" and run.id
    assert [c["step"] for c in run.checkpoints] == [2, 4, 6]
    metrics = run.metrics
    assert list(metrics["step"]) == [1, 2, 3, 4, 5, 6] and metrics["loss"].notna().all()
    assert run.wait(timeout=1) is run


def test_the_line_form_reads_a_yaml_file_and_returns_the_run(shell, db, workdir):
    db["docs"].insert_many(qa_docs(20))
    (workdir / "run.yaml").write_text("model: {{ base_path }}\ndata: docs\nmax_steps: 2\nlora_r: 4\n")
    result, _ = shell.run("x = %llm_finetune file-model --config run.yaml\nx")
    assert result.status == "completed" and shell.ns["x"] is result


def test_the_cell_adds_to_the_file(shell, db, workdir):
    db["docs"].insert_many(qa_docs(20))
    (workdir / "base.yaml").write_text("model: {{ base_path }}\ndata: docs\nmax_steps: 4\nlora_r: 4\n")
    shell.run("%%llm_finetune both --config base.yaml -o r\nmax_steps: 2\n")
    assert shell.ns["r"].record["config"]["max_steps"] == 2


def test_the_live_view_and_then_the_static_summary_are_shown(shell, db):
    db["docs"].insert_many(qa_docs(20))
    _, captured = shell.run(CELL.replace("my-model", "viewed"))
    kinds = [set(output.data) for output in captured.outputs]
    assert "application/vnd.jupyter.widget-view+json" in kinds[0]
    (final,) = [output.data for output in captured.outputs if output.update and output.data][-1:]
    assert "llm-summary" in final["text/html"] and "completed" in final["text/plain"]


def test_predict_returns_text_and_a_list_for_several_prompts(trained):
    one, _ = trained.run('%llm_predict my-model "### Human: hi ### Assistant:" --max-new-tokens 4')
    several, _ = trained.run("%llm_predict my-model@2 \"first\" 'second' --max-new-tokens 4")
    cell, _ = trained.run("%%llm_predict my-model@latest --max-new-tokens 4\na prompt\non two lines")
    assert isinstance(one, str) and isinstance(cell, str)
    assert isinstance(several, list) and len(several) == 2


@pytest.mark.parametrize("target", ["my-model", "my-model@2", "my-model@latest"])
def test_predict_resolves_its_checkpoint_once_without_listing_every_one(trained, db, monkeypatch, target):
    from llm_magics.store.records import Store

    calls = {"checkpoint": 0, "list_checkpoints": 0}
    for name in calls:
        original = getattr(Store, name)
        monkeypatch.setattr(
            Store, name, lambda *a, _o=original, _n=name, **k: calls.__setitem__(_n, calls[_n] + 1) or _o(*a, **k)
        )
    trained.run(f'%llm_predict {target} "hi" --max-new-tokens 2')
    assert calls == {"checkpoint": 1, "list_checkpoints": 0}


def test_unquoted_words_are_one_prompt(trained):
    answer, _ = trained.run("%llm_predict my-model hello there --max-new-tokens 3")
    assert isinstance(answer, str)
    answer, _ = trained.run("%llm_predict my-model --max-new-tokens 3 What is X?")  # not IPython's help on X
    assert isinstance(answer, str)


def test_a_prompt_ending_in_a_question_mark_reaches_the_magic_whole(shell, monkeypatch):
    """IPython reads a line ending in '?' as help (``X?``: "Object `X` not found") before any
    magic runs; the extension's input transformer leaves such a line to %llm_predict."""
    from llm_magics import commands

    asked = []
    monkeypatch.setattr(commands, "predict", lambda db, target, prompts, **_: asked.append((target, prompts)) or "ok")
    answer, shown = shell.run("%llm_predict m What is X?")
    assert answer == "ok" and asked[-1] == ("m", ["What is X?"]) and "not found" not in shown.stdout
    shell.run("y = 1\nif y:\n    a = %llm_predict m@best Where is Y??\n")
    assert shell.ns["a"] == "ok" and asked[-1] == ("m@best", ["Where is Y??"])
    shell.run('s = """\n%llm_predict m in a string?\n"""')
    assert shell.ns["s"] == "\n%llm_predict m in a string?\n" and len(asked) == 2
    _, shown = shell.run("%llm_predict?")  # help on the magic stays help
    assert "Generates with a model's" in shown.stdout and len(asked) == 2
    monkeypatch.undo()
    with pytest.raises(UsageError, match="no model named 'nosuch'"):
        shell.run("%llm_predict nosuch What is X?")


def test_unload_removes_the_input_transformer_too():
    from llm_magics.core.magic_line import question_lines

    testing = Shell()
    testing.run("%reload_ext llm_magics")
    assert testing.ip.input_transformers_cleanup.count(question_lines) == 1
    testing.run("%unload_ext llm_magics")
    assert question_lines not in testing.ip.input_transformers_cleanup


def test_compare_shows_checkpoints_side_by_side_escaped(trained):
    comparison, _ = trained.run(
        '%llm_predict my-model "<img src=x onerror=alert(1)>" --compare @2 @6 --max-new-tokens 3'
    )
    page = comparison._repr_html_()
    assert "my-model@2" in page and "my-model@6" in page
    assert "<img" not in page and "&lt;img src=x onerror=alert(1)&gt;" in page
    assert "my-model@2" in repr(comparison)


def test_base_generates_without_the_adapter(trained):
    base, _ = trained.run('%llm_predict my-model "### Human: hi" --base --max-new-tokens 4')
    tuned_base, _ = trained.run('%llm_predict my-model "### Human: hi" --base --max-new-tokens 4')
    assert base == tuned_base


def test_runs_lists_the_runs(trained):
    table, _ = trained.run("%llm_runs")
    columns = ["name", "run", "status", "backend", "steps", "last loss", "ETA", "started (UTC)", "duration"]
    assert table.columns == columns
    assert table.rows[0][:5] == ["my-model", trained.ns["run"].id, "completed", "kernel", "6/6"]
    assert "<table" in table._repr_html_() and "my-model" in repr(table)


def test_dry_run_shows_the_plan_and_trains_nothing(shell, db, workdir):
    db["docs"].insert_many(qa_docs(30))
    report, _ = shell.run(CELL.replace("-o run", "--dry-run"))
    text = repr(report)
    assert "27 train · 3 valid" in text and "trainable 8,192" in text and "memory (estimate)" in text
    assert "lora_r: 4" in text
    assert db.show("model") == [] and db.show("run") == []
    assert not (workdir / ".llm_magics").exists()


def test_stop_ends_a_background_run_with_a_checkpoint(shell, db):
    db["docs"].insert_many(qa_docs(30))
    shell.run(CELL.replace("max_steps: 6", "max_steps: 100000").replace("-o run", "--async -o run"))
    run = shell.ns["run"]
    while run.step < 3:
        time.sleep(0.05)
    shell.run(f"%llm_stop {run.id}")
    run.wait(timeout=60)
    assert run.status == "stopped"
    assert run.checkpoints[-1]["step"] == run.record["step"] >= 3


def test_stop_of_a_run_that_is_not_training_says_so(trained):
    with pytest.raises(UsageError, match=r"run \w+ is not training \(status: completed\)"):
        trained.run(f"%llm_stop {trained.ns['run'].id}")


def test_settings_come_from_the_config(db, tiny_path):
    testing = Shell({"database": db.uri, "default_model": tiny_path, "update_interval": 0.25})
    db["docs"].insert_many(qa_docs(20))
    testing.run("%%llm_finetune from-config -o r\ndata: docs\nmax_steps: 2\nlora_r: 4\n")
    assert testing.ns["r"].record["config"]["model"] == tiny_path
    testing.run("%config LLMMagics.short_errors = False")
    with pytest.raises(Exception, match="unknown key") as raised:
        testing.run("%%llm_finetune x\nlorar: 4\n")
    assert type(raised.value).__name__ == "ConfigError"  # the full error, not the short UsageError


def test_help_is_printed(shell):
    _, captured = shell.run("%llm_finetune --help")
    assert "--dry-run" in captured.stdout and "--resume" in captured.stdout


@pytest.mark.parametrize(
    ("magic", "option"),
    [
        ("%llm_finetune", "--dry-run"),
        ("%llm_predict", "--compare"),
        ("%llm_db", "uri"),
        ("%llm_runs", "name"),
        ("%llm_stop", "target"),
        ("%llm_checkpoints", "name"),
        ("%llm_export", "directory"),
    ],
)
def test_every_magic_prints_its_help(shell, magic, option):
    _, captured = shell.run(f"{magic} -h")
    assert option in captured.stdout


def test_a_quoted_prompt_may_say_dash_h(trained):
    answer, captured = trained.run('%llm_predict my-model "explain the -h flag" --max-new-tokens 2')
    assert isinstance(answer, str) and "usage" not in captured.stdout


def test_the_predict_cell_compares_checkpoints(trained):
    comparison, _ = trained.run("%%llm_predict my-model --compare @2 @6 --max-new-tokens 3\n### Human: a\nb c\n")
    assert comparison.prompts == ["### Human: a\nb c"]
    assert set(comparison.answers) == {"2", "6"}


def test_runs_of_an_unknown_model_is_an_error(trained):
    with pytest.raises(UsageError, match=r"no model named 'my-modle' — did you mean 'my-model'\?"):
        trained.run("%llm_runs my-modle")


def test_a_background_backend_set_in_the_config_is_used(db, tiny_path):
    testing = Shell({"database": db.uri, "backend": "thread"})
    db["docs"].insert_many(qa_docs(20))
    testing.run(f"%%llm_finetune bg -o r\nmodel: {tiny_path}\ndata: docs\nmax_steps: 2\nlora_r: 4\n")
    run = testing.ns["r"]
    run.wait(timeout=120)
    assert run.record["backend"] == "thread" and run.status == "completed"


@pytest.mark.parametrize(
    ("flags", "body", "settings", "expected"),
    [
        ("", {}, {}, ("kernel", None)),
        ("", {}, {"backend": "ray", "ray_address": "ray://head:10001"}, ("ray", "ray://head:10001")),
        ("", {"ray_address": "ray://body:10001"}, {}, ("ray", "ray://body:10001")),
        ("", {"on_ray": True}, {"ray_address": "ray://set:10001"}, ("ray", "ray://set:10001")),
        ("--ray-address ray://flag:10001", {"ray_address": "ray://body:10001"}, {}, ("ray", "ray://flag:10001")),
        ("--async", {"backend": "ray"}, {"backend": "ray"}, ("thread", None)),
        ("", {"backend": "kernel"}, {"backend": "thread"}, ("kernel", None)),
    ],
)
def test_flags_then_the_body_then_the_settings_decide_where_it_trains(flags, body, settings, expected):
    from llm_magics import LLMTrainingConfiguration
    from llm_magics.core.magic_line import parse_line as _parse
    from llm_magics.magics import LLMMagics, flagged_placement
    from llm_magics.training.launch import Placement, placement

    magics = LLMMagics(shell=None, **settings)
    args = _parse(magics.llm_finetune, f"m {flags}")
    where = placement(
        LLMTrainingConfiguration(**body),
        **flagged_placement(args),
        settings=Placement(magics.backend, magics.ray_address),
    )
    assert (where.backend, where.ray_address) == expected


def test_the_runs_table_shows_the_step_this_kernels_live_view_shows(db):
    """The record is written every few seconds; for a run training in this kernel %llm_runs shows
    the live step, as the view does (issue #18: they disagreed while training)."""
    from llm_magics import commands
    from llm_magics.runs.run import Control, Run, RunState
    from llm_magics.store.records import now

    db.store.add_run({"_id": "live1", "model": "m", "status": "running", "backend": "thread", "started": now(),
                      "step": 10, "total_steps": 100})  # fmt: skip
    run = Run(
        db, "live1", RunState("live1", "m", "thread", status="running", step=37, total_steps=100, loss=1.5), Control()
    )
    try:
        (row,) = commands.runs_table(db).rows
        assert row[4] == "37/100" and row[5] == "1.5"
    finally:
        run.finished()


def planted(db, run_id: str, minutes_ago: float, status: str = "completed", **fields) -> None:
    """A run of model 'capitals-slow' started ``minutes_ago``, owned by this process (alive)."""
    import datetime as dt

    from llm_magics.store.records import now

    db.store.save_model("capitals-slow")
    started = now() - dt.timedelta(minutes=minutes_ago)
    db.store.add_run({"_id": run_id, "model": "capitals-slow", "status": status, "backend": "process",
                      "started": started, **fields})  # fmt: skip


def test_a_model_name_is_taken_wherever_a_run_id_is_and_says_which_run(shell, db, workdir):
    from llm_magics.runs.logs import LOG
    from llm_magics.store.run_dirs import claim

    own = claim(workdir / "runs" / "2d34974b", "2d34974b")
    (own / LOG).write_text("step 1\nstep 2\n")
    planted(db, "0aaa0001", 30)
    planted(db, "2d34974b", 20, status="running", output_dir=str(own), log=str(own / LOG))
    planted(db, "0aaa0003", 10)  # the latest, but ended: the active one is meant
    _, shown = shell.run("%llm_logs capitals-slow --tail 1")
    assert shown.stdout == "capitals-slow: run 2d34974b\nstep 2\n"
    assert db.run("capitals-slow").id == "2d34974b"
    _, shown = shell.run("%llm_stop capitals-slow")
    assert shown.stdout.startswith("capitals-slow: run 2d34974b\nrun 2d34974b: stopping")
    assert db.store.runs.find_one({"_id": "2d34974b"})["stop_requested"]
    _, shown = shell.run("%llm_logs 2d34974b --tail 1")
    assert shown.stdout == "step 2\n"  # an id needs no note
    db.store.update_run("2d34974b", status="stopped")
    found, shown = shell.run("%llm_attach capitals-slow")  # none active: the latest
    assert found.id == "0aaa0003" and shown.stdout.startswith("capitals-slow: run 0aaa0003\n")
    ended = r"^model 'capitals-slow' has no active run: its latest, 0aaa0003, is completed$"
    with pytest.raises(UsageError, match=ended):
        shell.run("%llm_stop capitals-slow")


def test_only_a_close_run_id_or_name_is_suggested(shell, db):
    planted(db, "2d34974b", 10)
    with pytest.raises(UsageError, match=r"^'1234abcd' is neither a run id nor a model name; %llm_runs lists both$"):
        shell.run("%llm_attach 1234abcd")
    with pytest.raises(UsageError, match=r"^'2d34974c' is neither .* — did you mean '2d34974b'\?$"):
        shell.run("%llm_stop 2d34974c")
    with pytest.raises(UsageError, match=r"— did you mean 'capitals-slow'\?$"):
        shell.run("%llm_logs capitals-slw")
    from llm_magics.core.errors import RunError

    with pytest.raises(RunError, match=r"^no run with id '1234abcd'$"):
        db.store.run("1234abcd")
