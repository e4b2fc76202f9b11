"""Faults: the database going away mid-run, hostile input, pickles, secrets."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import string
import traceback
from pathlib import Path

import pytest
from helpers import Outage, custom_code_model, qa_docs, small_config
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from IPython.core.error import UsageError

from llm_magics import LLM, Database, LLMTrainingConfiguration
from llm_magics.config.cell import parse_cell
from llm_magics.config.configuration import ALIASES
from llm_magics.core.errors import ConfigError, ModelError, RunError
from llm_magics.store.records import now


@pytest.fixture
def flaky(db):
    outage = Outage(db.mongo_db)
    handle = Database(outage, db.uri, db.artifacts)
    handle.retry_seconds = 0.5
    return handle, outage


def test_training_goes_on_while_the_database_is_away_and_nothing_is_lost(flaky, tiny_path):
    db, outage = flaky
    db["d"].insert_many(qa_docs(20))

    def outage_between_steps_2_and_5(run):
        run.state.listeners.append(lambda state: setattr(outage, "down", 2 <= state.step < 5))

    run = LLM("flaky", tiny_path).fit(
        select="d", db=db, configuration=small_config(eval_strategy="no"), on_start=outage_between_steps_2_and_5
    )
    outage.down = False
    assert run.status == "completed" and run.error is None
    assert [c["step"] for c in db.show("checkpoint", "flaky")] == [2, 4, 6]
    assert run.metrics["step"].tolist() == [1, 2, 3, 4, 5, 6]
    assert run.record["status"] == "completed"


def test_a_database_that_never_returns_ends_the_run_with_a_clear_error_and_a_file(flaky, tiny_path):
    db, outage = flaky
    db["d"].insert_many(qa_docs(20))
    run = LLM("gone", tiny_path).fit(
        select="d",
        db=db,
        configuration=small_config(eval_strategy="no"),
        on_start=lambda r: r.state.listeners.append(lambda s: setattr(outage, "down", outage.down or s.step >= 3)),
    )
    assert "the database did not answer" in run.error and "record(s) were not written" in run.error
    kept = Path(run.error.rsplit("kept in ", 1)[1].split(";")[0])
    lines = kept.read_text().splitlines()
    assert any('"add_checkpoint"' in line for line in lines) and any('"add_metrics"' in line for line in lines)
    outage.down = False
    # the database is back: the next look at the runs writes what the file kept, once
    assert db.store.run(run.id)["status"] == "completed"
    assert [c["step"] for c in db.show("checkpoint", "gone")] == [2, 4, 6]
    assert len(db.store.run_metrics(run.id)) == 6
    assert not kept.exists() and kept.with_name(kept.name + ".written").exists()
    db.store.reap()
    assert len(db.store.run_metrics(run.id)) == 6  # not twice


def test_a_pickle_only_model_is_refused(workdir, tiny_path):
    import torch
    from transformers import AutoConfig

    from llm_magics.models.loader import load_tokenizer

    pickled = workdir / "pickled"
    pickled.mkdir()
    AutoConfig.from_pretrained(tiny_path).save_pretrained(pickled)
    load_tokenizer(tiny_path).save_pretrained(pickled)
    torch.save({}, pickled / "pytorch_model.bin")
    with pytest.raises(ModelError, match="has no safetensors weights; pickle files"):
        LLM("p", str(pickled)).predict("hi")


def test_a_pickle_only_adapter_is_refused(db, tiny_path, workdir):
    from llm_magics.store.artifacts import check_adapter

    adapter = workdir / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("{}")
    (adapter / "adapter_model.bin").write_bytes(b"not loaded")
    with pytest.raises(ModelError, match=r"has no adapter_model\.safetensors; pickle files"):
        check_adapter(adapter)
    db["d"].insert_many(qa_docs(10))
    with pytest.raises(ModelError, match=r"adapter_model\.safetensors"):
        LLM("a", tiny_path, adapter_id=str(adapter)).fit(select="d", db=db, configuration=small_config())
    assert db.show("run") == []


def test_remote_code_is_not_run_unless_asked(workdir, tiny_path):
    from transformers import AutoModelForCausalLM

    marker = workdir / "custom-code-ran"
    custom = custom_code_model(tiny_path, workdir / "custom", marker)
    with pytest.raises(ModelError, match=r"comes with its own Python code .* set trust_remote_code: true") as raised:
        LLM("c", str(custom)).predict("hi", max_new_tokens=2)
    assert len(str(raised.value)) < 250
    assert not marker.exists()
    # the directory is a real custom-code model: loading it with the protection off runs its code
    AutoModelForCausalLM.from_pretrained(custom, trust_remote_code=True)
    assert marker.exists()


# every key a user can write (and 'self', the name of __init__'s own argument), or any text
KEYS = st.sampled_from(
    sorted({f.name for f in dataclasses.fields(LLMTrainingConfiguration)} | set(ALIASES) | {"self"})
) | st.text(max_size=12)
VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()  # nan and inf included
    | st.text(max_size=20)
    | st.sampled_from(["steps", "epoch", "no", "db", "ray", "text-classification", "{prompt}", 4, 8, -1, 0]),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=6,
)
MAPPING = st.dictionaries(KEYS, VALUES, max_size=8)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(MAPPING)
def test_random_mappings_only_ever_raise_our_validation_error(mapping):
    try:
        config = LLMTrainingConfiguration.from_dict(mapping)
    except ConfigError:  # anything else fails the test
        return
    repr(config), config.to_dict()  # and what builds can be shown and stored


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=string.printable + "{}!&*|>:-—é", max_size=80))
@example("0b_")  # YAML 1.1's integer pattern takes it; its constructor raised ValueError
@example("max_steps: 0x_")
def test_random_cell_text_only_ever_raises_our_validation_error(text):
    with contextlib.suppress(ConfigError):  # anything else fails the test
        LLMTrainingConfiguration.from_dict(parse_cell(text, {"x": 1}))


@st.composite
def aliased_yaml(draw):
    """YAML whose values repeat earlier ones through aliases (*aN), nested any number of times and
    sometimes inside what they repeat: what a hostile cell can do with a few hundred bytes."""
    lines = []
    for level in range(draw(st.integers(1, 12))):
        width = draw(st.integers(1, 12))
        items = [
            draw(st.sampled_from([f"*a{draw(st.integers(0, level))}", "x", "{k: *a0}", "[*a0, 1]"])) if level else "x"
            for _ in range(width)
        ]
        key = draw(st.sampled_from([f"a{level}", "model_kwargs", "lora_target_modules", "select"]))
        lines.append(f"{key}: &a{level} [{', '.join(items)}]")
    return "\n".join(lines)


@settings(max_examples=200, deadline=None)
@given(aliased_yaml())
def test_cells_with_aliases_only_ever_raise_our_validation_error(text):
    with contextlib.suppress(ConfigError):  # anything else fails the test (a RecursionError, a MemoryError)
        LLMTrainingConfiguration.from_dict(parse_cell(text, {"x": 1}))


def test_a_few_hundred_bytes_of_nested_aliases_are_refused_not_expanded(shell, workdir):
    """Nine levels of ten aliases each would be 10**9 values: the cell and the file are refused
    at once, with nothing expanded (before: 6 levels took 6 s and 229 MB, 9 ran out of memory)."""
    levels = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    levels += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 10)]
    bomb = "\n".join(levels)
    assert len(bomb) < 600
    with pytest.raises(UsageError, match=r"the YAML expands to more than 100,000 values through its aliases"):
        shell.run(f"%%llm_finetune m\n{bomb}")
    (workdir / "bomb.yaml").write_text(bomb)
    with pytest.raises(UsageError, match=r"the YAML expands to more than"):
        shell.run(f"%llm_finetune m --config {workdir / 'bomb.yaml'}")
    with pytest.raises(UsageError, match=r"the YAML refers to itself: an alias"):
        shell.run("%%llm_finetune m\nmodel_kwargs: &a {x: *a}")
    assert parse_cell("base: &b {lr: 1}\nother: *b") == {"base": {"lr": 1}, "other": {"lr": 1}}  # aliases work


SECRET = "hunter2-secret"


def test_passwords_never_show_in_displays_settings_or_errors(shell):
    import pymongo

    from llm_magics import connect
    from llm_magics.core.errors import DatabaseError

    uri = f"mongodb://alice:{SECRET}@127.0.0.1:9/db"
    client = pymongo.MongoClient(uri, connect=False, serverSelectionTimeoutMS=200)
    handle = Database(client.get_database("db"), uri, Path("artifacts"), client)
    shown = [repr(handle), str(handle.uri), repr(handle.mongo_db), repr(handle.client)]
    with pytest.raises(DatabaseError) as raised:
        connect(uri, timeout_ms=300)
    shown.append(str(raised.value))
    shell.run(f"%config LLMMagics.database = '{uri}'")
    _, config_output = shell.run("%config LLMMagics")
    shown.append(config_output.stdout)
    magics = shell.ip.magics_manager.registry["LLMMagics"]
    shown.append(repr(magics.database))
    with pytest.raises(UsageError, match="cannot reach MongoDB") as connecting:
        shell.run("%llm_runs")  # connects with the real URI, fails, and says so without it
    shown.append(str(connecting.value))
    assert all(SECRET not in text for text in shown), [text for text in shown if SECRET in text]
    assert "alice:***@127.0.0.1:9" in config_output.stdout


def test_passwords_never_reach_a_run_record_or_the_cell(db, tiny_path, monkeypatch):
    from transformers import Trainer

    db["d"].insert_many(qa_docs(10))
    storage = f"s3://AKIAEXAMPLE:{SECRET}@bucket/runs"

    def fail(*args, **kwargs):
        raise RuntimeError(f"cannot write to {storage}")

    monkeypatch.setattr(Trainer, "training_step", fail)
    config = small_config(hub_token=f"hf_{SECRET}", ray_configs={"run_config": {"storage_path": storage}})
    with pytest.raises(RuntimeError, match=r"cannot write to s3://AKIAEXAMPLE:\*\*\*@bucket/runs") as raised:
        LLM("secretive", tiny_path, model_kwargs={"token": f"hf_{SECRET}"}).fit(select="d", db=db, configuration=config)
    assert SECRET not in "".join(traceback.format_exception(raised.value))  # what the cell shows
    (record,) = db.show("run", "secretive")
    assert SECRET not in repr(record) and SECRET not in repr(db.store.model("secretive"))
    assert record["config"]["model_kwargs"] == {"token": "***"} and record["config"]["hub_token"] == "***"
    assert "s3://AKIAEXAMPLE:***@bucket/runs" in record["error"]
    assert record["config"]["ray_configs"]["run_config"]["storage_path"] == "s3://AKIAEXAMPLE:***@bucket/runs"


def test_debug_logging_never_records_a_password(db, tiny_path, caplog, monkeypatch):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from llm_magics import connect
    from llm_magics.core.errors import DatabaseError

    tokens = []  # the token each from_pretrained got
    for auto in (AutoTokenizer, AutoModelForCausalLM):
        load = auto.from_pretrained
        monkeypatch.setattr(
            auto, "from_pretrained", lambda *a, _load=load, **k: tokens.append(k.get("token")) or _load(*a, **k)
        )

    for logger in (None, "pymongo", "llm_magics"):
        caplog.set_level(logging.DEBUG, logger=logger)
    uri = f"mongodb://alice:{SECRET}@127.0.0.1:9/db"
    with pytest.raises(DatabaseError):
        connect(uri, timeout_ms=300)  # pymongo logs its topology, server selection and connections
    handle = Database(db.mongo_db, uri, db.artifacts)  # a run whose handle was opened with the password
    handle["d"].insert_many(qa_docs(10))
    token = {"token": f"hf_{SECRET}"}
    config = small_config(
        max_steps=2, hub_token=f"hf_{SECRET}", ray_configs={"run_config": {"storage_path": f"s3://AK:{SECRET}@b/r"}}
    )
    run = LLM("logged", tiny_path, model_kwargs=token, tokenizer_kwargs=token).fit(
        select="d", db=handle, configuration=config
    )
    assert run.status == "completed" and set(tokens) == {f"hf_{SECRET}"}
    # a model loaded from its record has the token masked: it is left out, not sent as '***'
    handle.model_cache.clear()
    assert isinstance(handle.load("model", "logged").predict("hi", max_new_tokens=2), str)
    assert tokens[-1] is None and "***" not in tokens
    assert any(r.name.startswith("pymongo") for r in caplog.records)  # the logging was on
    leaked = [r for r in caplog.records if SECRET in r.getMessage() or SECRET in str(r.__dict__)]
    assert not leaked, [(r.name, r.getMessage()[:200]) for r in leaked]


HOSTILE = "<img src=x onerror=alert(1)>"
ESCAPED = "&lt;img src=x onerror=alert(1)&gt;"


def test_the_dry_run_escapes_data_and_settings_and_hides_secrets(db, tiny_path):
    from llm_magics.commands import finetune

    db["d"].insert_many([{"text": f"{HOSTILE} is {i}"} for i in range(8)])
    mapping = {
        "model": tiny_path,
        "data": "d",
        "run_name": HOSTILE,
        "ray_configs": {"run_config": {"storage_path": f"s3://AK:{SECRET}@b/r"}},
        "model_kwargs": {"token": f"hf_{SECRET}"},
    }
    dry = finetune(db, "m", mapping, dry_run=True)
    page = dry._repr_html_()
    assert "<img" not in page and page.count(ESCAPED) >= 2  # the first example and run_name
    assert SECRET not in page and SECRET not in repr(dry)
    assert "s3://AK:***@b/r" in repr(dry)


def test_the_run_comparison_escapes_configuration_values(db):
    from llm_magics.widgets.compare import runs_comparison_html

    for run_id, name in (("r1", HOSTILE), ("r2", "plain")):
        config = {"run_name": name}
        db.store.add_run({"_id": run_id, "model": "m", "status": "completed", "config": config, "started": now()})
    page = runs_comparison_html(db.store, ["r1", "r2"])
    assert "<img" not in page and ESCAPED in page


@pytest.mark.parametrize("target", ["m@../../x", "m@r1:../2", "m@../x/2", "../../x", "../../x@2"])
def test_a_checkpoint_reference_cannot_leave_the_records(db, tiny_path, workdir, target):
    from llm_magics.commands import predict

    db.store.save_model("m", base_model=tiny_path, task="causal-lm")
    record = {"_id": "r1-2", "model": "m", "run": "r1", "step": 2, "created": now(), "metrics": {}, "files": []}
    db.store.add_checkpoint({**record, "path": str(workdir / "r1" / "checkpoint-2")})
    (workdir / "x").mkdir()  # what '../../x' would reach from a checkpoint directory
    with pytest.raises(ModelError, match=r"no checkpoint '|no model named '") as raised:
        predict(db, target, ["hi"])
    assert len(str(raised.value)) < 200
    with pytest.raises(ModelError, match=r"model 'm' has no checkpoint '\.\./x'; it has steps 2"):
        db.load("model", "m", checkpoint="../x")


def test_running_out_of_gpu_memory_says_which_settings_to_lower(db, tiny_path, monkeypatch):
    # A CPU machine cannot run out of GPU memory, so the trainer's step raises what CUDA raises.
    import torch
    from transformers import Trainer

    def out_of_memory(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(Trainer, "training_step", out_of_memory)
    db["docs"].insert_many(qa_docs(20))
    with pytest.raises(RunError, match="out of GPU memory") as raised:
        LLM("oom", tiny_path).fit(configuration=small_config(data="docs"), db=db)
    assert "per_device_train_batch_size (now 2" in str(raised.value) and "bits: 4" in str(raised.value)
    record = db.show("run", "oom")[0]
    assert record["status"] == "failed" and record["error"] == str(raised.value)


def test_an_error_that_keeps_its_own_text_is_shown_redacted_all_the_same():
    from llm_magics.training.local import _without_secrets

    class StubbornError(Exception):  # its message does not come from its arguments
        def __str__(self) -> str:
            return "cannot write to s3://AKIAEXAMPLE:hunter2@bucket/runs"

    shown = _without_secrets(StubbornError())
    assert "hunter2" not in str(shown) and "s3://AKIAEXAMPLE:***@bucket/runs" in str(shown)


def test_a_local_ray_that_times_out_while_starting_is_started_again(monkeypatch):
    """Ray's raylet gives up when its agent has not started within its 30 s (a busy machine):
    a local start is tried up to three times; another error, or a cluster's address, is said at once."""
    ray = pytest.importorskip("ray")
    from llm_magics.training import ray as on_ray

    tries: list[str | None] = []

    def starting(address=None, **options):
        tries.append(address)
        if len(tries) < 3:
            raise Exception("The current node timed out during startup. This could happen because ...")

    monkeypatch.setattr(ray, "init", starting)
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "shutdown", lambda: None)
    on_ray.start_ray(None)
    assert tries == [None, None, None]

    tries.clear()
    with pytest.raises(Exception, match="timed out during startup"):
        on_ray.start_ray("127.0.0.1:9")  # a cluster that is not there: said at once
    assert tries == ["127.0.0.1:9"]
