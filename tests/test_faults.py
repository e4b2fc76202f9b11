"""Faults: the database going away mid-run, hostile input, pickles, secrets."""

from __future__ import annotations

import contextlib
import string
from pathlib import Path

import pytest
from helpers import qa_docs, small_config
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from IPython.core.error import UsageError
from pymongo.errors import AutoReconnect

from llm_magics import LLM, LLMTrainingConfiguration
from llm_magics.cell import parse_cell
from llm_magics.db import Database
from llm_magics.errors import ConfigError, ModelError, RunError


class Outage:
    """A database that can stop answering (a MongoDB server that goes away), around a real one."""

    def __init__(self, database):
        self.database, self.down = database, False

    def __getitem__(self, name):
        return _Collection(self, self.database[name])

    def __getattr__(self, name):
        return getattr(self.database, name)


class _Collection:
    def __init__(self, outage, collection):
        self.outage, self.collection = outage, collection

    def __getattr__(self, name):
        attribute = getattr(self.collection, name)
        if not callable(attribute):
            return attribute

        def call(*args, **kwargs):
            if self.outage.down:
                raise AutoReconnect("connection refused")
            return attribute(*args, **kwargs)

        return call


@pytest.fixture
def flaky(db):
    outage = Outage(db.database)
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
    kept = Path(run.error.rsplit("kept in ", 1)[1])
    lines = kept.read_text().splitlines()
    assert any('"add_checkpoint"' in line for line in lines) and any('"add_metrics"' in line for line in lines)
    outage.down = False
    assert db.store.run(run.id)["status"] == "running"  # what the database last heard, and the file says the rest


def test_a_pickle_only_model_is_refused(workdir, tiny_path):
    import torch
    from transformers import AutoConfig

    from llm_magics.loader import load_tokenizer

    pickled = workdir / "pickled"
    pickled.mkdir()
    AutoConfig.from_pretrained(tiny_path).save_pretrained(pickled)
    load_tokenizer(tiny_path).save_pretrained(pickled)
    torch.save({}, pickled / "pytorch_model.bin")
    with pytest.raises(ModelError, match="has no safetensors weights; pickle files"):
        LLM("p", str(pickled)).predict("hi")


def test_a_pickle_only_adapter_is_refused(db, tiny_path, workdir):
    from llm_magics.loader import check_adapter

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
    import json
    import shutil

    custom = workdir / "custom"
    shutil.copytree(tiny_path, custom)
    config = json.loads((custom / "config.json").read_text())
    config["auto_map"] = {"AutoConfig": "evil.EvilConfig", "AutoModelForCausalLM": "evil.EvilModel"}
    (custom / "config.json").write_text(json.dumps(config))
    (custom / "evil.py").write_text("open('pwned', 'w').write('x')\n")
    LLM("c", str(custom)).predict("hi", max_new_tokens=2)  # the model's own Llama class, not evil.py
    assert not (workdir / "pwned").exists()


MAPPING = st.dictionaries(
    st.one_of(
        st.text(max_size=12),
        st.sampled_from(
            [
                "lora_r",
                "learning_rate",
                "bits",
                "select",
                "data",
                "eval_steps",
                "max_steps",
                "prompt",
                "model_kwargs",
                "probe_prompts",
            ]
        ),
    ),
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
        lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
        max_leaves=6,
    ),
    max_size=6,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(MAPPING)
def test_random_mappings_only_ever_raise_our_validation_error(mapping):
    with contextlib.suppress(ConfigError):  # anything else fails the test
        LLMTrainingConfiguration.from_dict(mapping)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=string.printable + "{}!&*|>:-—é", max_size=80))
def test_random_cell_text_only_ever_raises_our_validation_error(text):
    with contextlib.suppress(ConfigError):  # anything else fails the test
        LLMTrainingConfiguration.from_dict(parse_cell(text, {"x": 1}))


SECRET = "hunter2-secret"


def test_passwords_never_show_in_displays_settings_or_errors(shell):
    import pymongo

    from llm_magics import connect
    from llm_magics.errors import DatabaseError

    uri = f"mongodb://alice:{SECRET}@127.0.0.1:9/db"
    client = pymongo.MongoClient(uri, connect=False, serverSelectionTimeoutMS=200)
    handle = Database(client.get_database("db"), uri, Path("artifacts"), client)
    shown = [repr(handle), str(handle.uri), repr(handle.database), repr(handle.client)]
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


def test_passwords_never_reach_a_run_record(db, tiny_path):
    db["d"].insert_many(qa_docs(10))
    storage = f"s3://AKIAEXAMPLE:{SECRET}@bucket/runs"

    def fail(run):
        run.state.listeners.append(lambda s: (_ for _ in ()).throw(RuntimeError(f"cannot write to {storage}")))

    config = small_config(hub_token=f"hf_{SECRET}", ray_configs={"run_config": {"storage_path": storage}})
    with pytest.raises(RuntimeError):
        LLM("secretive", tiny_path).fit(select="d", db=db, configuration=config, on_start=fail)
    (record,) = db.show("run", "secretive")
    assert SECRET not in repr(record)
    assert "s3://AKIAEXAMPLE:***@bucket/runs" in record["error"]
    assert record["config"]["ray_configs"]["run_config"]["storage_path"] == "s3://AKIAEXAMPLE:***@bucket/runs"


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
