"""Prompt-response and chat data: the trained part, the dry run's view of it, and predict
writing prompts the way the checkpoint was trained."""

from __future__ import annotations

import pytest
from helpers import small_config

from llm_magics import LLM
from llm_magics.data.training_set import IGNORE, build
from llm_magics.models.loader import load_tokenizer

TEMPLATE = "### Human: {prompt} ### Assistant: "
CHATS = [
    {
        "chat": [
            {"role": "user", "content": f"capital of country {i}?"},
            {"role": "assistant", "content": f"city {i}"},
            {"role": "user", "content": "sure?"},
            {"role": "assistant", "content": "yes"},
        ]
    }
    for i in range(12)
]


def test_chat_documents_train_on_the_assistant_turns_only(db, tiny_path):
    tokenizer = load_tokenizer(tiny_path)
    db["chats"].insert_many(CHATS)
    data = build(db, small_config(data="chats", messages="chat", max_length=256).data_keys(), tokenizer)
    example = data.train[0]
    trained = [t for t in example["labels"] if t != IGNORE]
    masked = [t for t, label in zip(example["input_ids"], example["labels"], strict=True) if label == IGNORE]
    assert tokenizer.decode(trained, skip_special_tokens=True).startswith("city ")
    assert tokenizer.decode(trained, skip_special_tokens=True).endswith("yes")
    assert "capital of country" in tokenizer.decode(masked) and "sure?" in tokenizer.decode(masked)
    assert data.format.to_dict()["chat_template"] == tokenizer.chat_template


def test_the_dry_run_marks_the_trained_part_and_its_share(shell, db):
    db["qa"].insert_many([{"q": f"what is {i}?", "a": f"it is {i}"} for i in range(10)])
    report, _ = shell.run(
        "%%llm_finetune qa --dry-run\nmodel: '{{ base_path }}'\ndata: qa\nprompt: q\nresponse: a\n"
        f"prompt_template: '{TEMPLATE}'\nmax_steps: 2\n"
    )
    html = report._repr_html_()
    assert '<mark class="llm-trained">it is ' in html
    assert "### Human: what is" in html.split('<mark class="llm-trained">')[0]
    assert "trained (" in repr(report) and "(100%)" not in repr(report)
    assert db.show("run") == []


@pytest.mark.slow
def test_predict_writes_prompts_with_the_trained_template_and_warns_on_another(db, tiny_path):
    db["qa"].insert_many([{"q": f"what is {i}?", "a": f"it is {i}"} for i in range(20)])
    llm = LLM("qa", tiny_path)
    config = small_config(data="qa", prompt="q", response="a", prompt_template=TEMPLATE, max_steps=2, save_steps=2)
    llm.fit(configuration=config, db=db)
    record = db.show("checkpoint", "qa")[-1]
    assert record["template"]["kind"] == "prompt-response" and record["template"]["prompt_template"] == TEMPLATE
    automatic = llm.predict("what is 3?", max_new_tokens=6)
    with pytest.warns(UserWarning, match="trained with prompt template"):
        spelled_out = llm.predict("### Human: what is 3? ### Assistant: ", prompt_template="{prompt}", max_new_tokens=6)
    assert automatic == spelled_out


@pytest.mark.slow
def test_a_chat_model_predicts_through_its_chat_template(db, tiny_path):
    db["chats"].insert_many(CHATS)
    llm = LLM("chat", tiny_path)
    llm.fit(configuration=small_config(data="chats", messages="chat", max_steps=2, save_steps=2), db=db)
    assert db.show("checkpoint", "chat")[-1]["template"]["kind"] == "messages"
    with pytest.warns(UserWarning, match="its chat template"):
        spelled_out = llm.predict("### Human: hello ### Assistant: ", prompt_template="{prompt}", max_new_tokens=6)
    assert llm.predict("hello", max_new_tokens=6) == spelled_out
