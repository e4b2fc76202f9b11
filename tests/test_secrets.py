"""Secrets never shown: one table of the ways a credential reaches llm_magics, checked on every
view, record, log line and error a run produces."""

from __future__ import annotations

import logging
import traceback

import pytest
from helpers import Outage, Shell, qa_docs, small_config
from IPython.core.error import UsageError

from llm_magics import LLM, Database
from llm_magics.core.secrets import masked, redact_text

SECRET = "S3cr3t-Zq8xK"
URI = f"mongodb://alice:hunter@2{SECRET}@db.invalid/runs"  # a password with '@' in it
AZURE = f"DefaultEndpointsProtocol=https;AccountName=acct;AccountKey={SECRET}==;EndpointSuffix=core.windows.net"
# (what a user wrote, where): every one must come out without the secret
FORMS = {
    "a URI whose password holds '@'": URI,
    "a connection string's AccountKey": AZURE,
    "a bearer token in a header": {"headers": {"Authorization": f"Bearer {SECRET}"}},
    "passwd": {"passwd": SECRET},
    "private_key": {"private_key": f"-----BEGIN KEY-----{SECRET}"},
    "credentials, a mapping": {"credentials": {"client_secret": SECRET, "id": "x"}},
    "auth": {"auth": SECRET},
    "a list under token": {"token": [SECRET]},
    "a mapping under hub_token": {"hub_token": {"value": SECRET}},
    "api_key": {"OPENAI_API_KEY": SECRET},
    "text with a basic authorization": f"Authorization: Basic {SECRET}==",
    # #27: the gaps a review found
    "a quoted password in text": f"connect(password='{SECRET}')",
    "a double-quoted password in text": f'password="{SECRET}" was refused',
    "HF_TOKEN in text": f"HF_TOKEN=hf_{SECRET}abcdefghijklmnopqrst",
    "token= in text": f"token=hf_{SECRET}abcdefghijklmnopqrst and more",
    "an environment setting named *_KEY": {"env_vars": {"WANDB_KEY": SECRET}},
    "an environment setting named *_PASS": {"env_vars": {"DB_PASS": SECRET}},
    "an environment setting named *_PAT": {"env_vars": {"GITHUB_PAT": SECRET}},
    "*_KEY=... in text": f"export MY_SERVICE_KEY={SECRET}",
}


@pytest.mark.parametrize("form", list(FORMS.values()), ids=list(FORMS))
def test_each_form_of_a_credential_is_masked(form):
    assert SECRET not in repr(masked(form))  # a record, a configuration shown
    if isinstance(form, str):
        assert SECRET not in redact_text(f"failed: {form} (retrying)")  # an error or a log line


@pytest.mark.parametrize("token", ["hf_" + "Ab1" * 12, "ghp_" + "Zx9" * 12, "github_pat_" + "Q_7" * 20])
def test_a_token_whose_shape_says_what_it_is_is_masked_anywhere_in_text(token):
    assert token not in redact_text(f"cloning with {token} failed") == "cloning with *** failed"


def test_masking_keeps_what_is_not_a_secret():
    kept = {"key": "text", "pad_token": "<pad>", "token": True, "trust_remote_code": True, "auth_mechanism_x": None}
    assert masked(kept) == kept
    assert redact_text("Basic configuration: token indices") == "Basic configuration: token indices"
    assert redact_text("eos_token=</s> max_length: 512") == "eos_token=</s> max_length: 512"
    assert redact_text(f"password='{SECRET}'") == "password=***"  # not password=***'...'


@pytest.mark.slow
def test_no_view_record_log_line_or_error_of_a_run_shows_a_credential(db, tiny_path, caplog, monkeypatch):
    """All the forms at once, in one run: its configuration, its dry run, its error, the database's
    error while it trains, its records, its summary, the runs table and the logs."""
    from transformers import Trainer

    from llm_magics.runs.run import Run
    from llm_magics.widgets.progress import run_bundle

    for logger in (None, "llm_magics", "pymongo"):
        caplog.set_level(logging.DEBUG, logger=logger)
    outage = Outage(db.mongo_db, message=f"cannot reach {URI} ({AZURE})")
    handle = Database(outage, db.uri, db.artifacts)
    handle.retry_seconds = 0.3
    handle["d"].insert_many(qa_docs(10))
    ray_configs = {"run_config": {"storage_path": URI}, "runtime_env": {"env_vars": {"AZURE": AZURE}}}
    ray_configs["runtime_env"].update(
        {k: v for form in FORMS.values() if isinstance(form, dict) for k, v in form.items()}
    )
    config = small_config(max_steps=4, save_steps=2, eval_strategy="no", hub_token=SECRET, ray_configs=ray_configs)
    shown = [repr(config), str(config), repr(config.to_dict()), repr(config.changes())]

    shell = Shell({"database": db.uri})
    shell.ns.update(base_path=tiny_path, ray_configs=ray_configs)
    cell = "%%llm_finetune leaky --dry-run\nmodel: '{{ base_path }}'\ndata: d\nray_configs: {{ ray_configs }}\n"
    dry, _ = shell.run(cell)
    shown += [repr(dry), dry._repr_html_()]

    def failing_step(*args, **kwargs):
        outage.down = True  # the database goes away with the database's own error text ...
        raise RuntimeError(
            f"cannot write to {URI}: {AZURE}; sent Authorization: Bearer {SECRET}"
        )  # ... and so does a step

    monkeypatch.setattr(Trainer, "training_step", failing_step)
    with pytest.raises(RuntimeError) as raised:
        LLM("leaky", tiny_path).fit(select="d", db=handle, configuration=config)
    shown += [str(raised.value), "".join(traceback.format_exception(raised.value))]
    outage.down = False
    (record,) = db.show("run", "leaky")
    shown += [repr(record), repr(db.store.model("leaky")), repr(run_bundle(Run(db, record["_id"])))]
    table, _ = shell.run("%llm_runs")
    shown += [repr(table), table._repr_html_()]
    with pytest.raises(UsageError) as connecting:
        shell.run(f"%llm_db {URI}")
    shown.append(str(connecting.value))
    shown += [record.getMessage() + str(record.__dict__) for record in caplog.records]
    assert "cannot write to mongodb://alice:***@db.invalid" in record["error"]  # the error is there, masked
    leaks = [text for text in shown if SECRET in text]
    assert not leaks, leaks[0][:500]
