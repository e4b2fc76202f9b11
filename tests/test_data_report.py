"""The data report (SPEC §13): planted problems found with exact counts and ids, token lengths and
the share cut at max_length, the label mask of what trains; the same findings warned at a run's
start."""

from __future__ import annotations

import pytest

from llm_magics.data.report import data_report


def chat(*turns):
    return [{"role": role, "content": content} for role, content in turns]


GOOD = [chat(("user", f"question {i}"), ("assistant", f"answer {i}")) for i in range(10)]
PLANTED = [
    {"_id": "dup", "chat": GOOD[0]},  # the same content as good-0
    {"_id": "near", "chat": chat(("user", "Question 1!"), ("assistant", "answer 1"))},  # good-1, but for case
    {"_id": "empty-turn", "chat": chat(("user", "hi"), ("assistant", "  "))},
    {"_id": "no-assistant", "chat": chat(("user", "hi"), ("user", "anyone?"))},
    {"_id": "system-late", "chat": chat(("user", "hi"), ("system", "be brief"), ("assistant", "ok"))},
    {"_id": "long", "chat": chat(("user", "tell me " * 40), ("assistant", "a long answer " * 20))},
]


@pytest.fixture
def chats(db):
    db["chats"].insert_many([{"_id": f"good-{i}", "chat": c} for i, c in enumerate(GOOD)] + PLANTED)
    return db


def test_planted_problems_are_found_with_their_counts_and_ids(chats):

    report = data_report(chats.mongo_db, "chats")
    found = {f.what: (f.count, f.ids) for f in report.findings if f.count}
    assert found["exact duplicates"] == (1, ["dup"])
    assert found["near duplicates"] == (1, ["near"])
    assert found["chat: empty turn"] == (1, ["empty-turn"])
    assert found["chat: no assistant turn"] == (1, ["no-assistant"])
    assert found["chat: turns do not alternate"] == (1, ["no-assistant"])
    assert found["chat: system turn not first"] == (1, ["system-late"])
    assert report.count == 16 and report.detected.keys == {"messages": "chat"}
    assert report.fields["chat"]["present"] == 16
    assert list(report.to_frame()["finding"])[:2] == ["exact duplicates", "near duplicates"]
    # nothing about lengths without a tokenizer; with one, the long chat is the one cut
    assert "longer than max_length" not in found


def test_token_lengths_the_truncated_share_and_the_label_mask(chats, tiny_path):
    from llm_magics.models.loader import load_tokenizer

    report = data_report(chats.mongo_db, "chats", tokenizer=load_tokenizer(tiny_path), max_length=200)
    long = report.finding("longer than max_length")
    assert (long.count, long.ids) == (1, ["long"]) and report.truncated == 1 and len(report.lengths) == 16
    assert 0 < report.trained_share < 0.5  # the assistant turns only
    trained = "".join(text for text, on in report.previews[0] if on)
    assert "answer 0" in trained and "question 0" not in trained
    page = report._repr_html_()
    assert 'class="llm-length-histogram"' in page and 'class="llm-max-length"' in page
    assert page.count('class="llm-label-mask"') == 3 and 'class="llm-trained"' in page
    assert "messages: chat" in page


def test_the_magic_reports_with_a_models_tokenizer_and_a_run_warns_of_the_same_findings(shell, db, tiny_path):
    from llm_magics import LLM, LLMTrainingConfiguration

    db["chats"].insert_many([{"chat": c} for c in GOOD] + [{"chat": GOOD[0]}, PLANTED[-1]])
    report, _ = shell.run(
        "%llm_data chats --model {{ base_path }} --max-length 200".replace("{{ base_path }}", tiny_path)
    )
    assert report.finding("exact duplicates").count == 1 and report.truncated == 1
    config = LLMTrainingConfiguration(
        data="chats", messages="chat", max_steps=2, save_steps=2, max_length=200, lora_r=4
    )
    from llm_magics.core.errors import DataWarning

    with pytest.warns(DataWarning, match="longer than max_length") as caught:
        LLM("warned", tiny_path).fit(configuration=config, db=db)
    said = " ".join(str(w.message) for w in caught)
    assert "1 of 12 documents are longer than max_length 200" in said and "1 exact duplicate" in said


def test_the_dry_run_reports_the_cells_own_selection(shell, db):
    db["chats"].insert_many([{"chat": c} for c in GOOD] + [{"chat": GOOD[0]}])
    dry, _ = shell.run(
        "%%llm_finetune m --dry-run\nmodel: {{ base_path }}\ndata: chats\nmessages: chat\nmax_length: 64"
    )
    assert dry.report.finding("exact duplicates").count == 1 and len(dry.report.lengths) == 11
    page = dry._repr_html_()
    assert "Data report (1 finding(s)" in page and 'class="llm-length-histogram"' in page
