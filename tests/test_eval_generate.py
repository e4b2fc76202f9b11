"""Evaluation by generation (SPEC §12): checkpoints scored by what they answer on held-out
documents, at each save and on demand (old runs too), with built-in metrics, notebook metrics and
a judge that is another stored checkpoint; the scores on each checkpoint's record, in the table and
behind @best; each scored example in the database."""

from __future__ import annotations

import pytest
from helpers import FACTS

from llm_magics import LLM, LLMTrainingConfiguration
from llm_magics.core.errors import ConfigError, DataError

TEMPLATE = "Q: {prompt}\nA:"


def fact_docs(copies: int = 8) -> list[dict]:
    """Each fact ``copies`` times; the first copy of each is held out (_fold: valid)."""
    return [{"q": q, "a": good, "_fold": "valid" if i == 0 else "train"} for i in range(copies) for q, good, _ in FACTS]


def first_word(prediction, reference, document):
    """A notebook metric: 1 when the answer's first word is the reference's."""
    return float(prediction.split()[:1] == reference.split()[:1])


def facts_config(**changes):
    values = {
        "data": "facts",
        "prompt": "q",
        "response": "a",
        "prompt_template": TEMPLATE,
        "max_steps": 60,
        "save_steps": 20,
        "eval_steps": 20,
        "eval_strategy": "steps",
        "learning_rate": 1e-2,
        "lora_r": 8,
        "per_device_train_batch_size": 8,
        "max_length": 64,
        "logging_steps": 5,
    }
    return LLMTrainingConfiguration(**{**values, **changes})


def _nothing_written(db) -> None:
    assert not db.store.list_runs() and not db.store.model_names()


@pytest.mark.slow
def test_scores_at_each_save_rise_and_best_follows_a_notebook_metric(db, tiny_path):
    from llm_magics.widgets.checkpoints import checkpoint_table_row
    from llm_magics.widgets.evaluation import score_names

    db["facts"].insert_many(fact_docs())
    block = {"metrics": ["exact_match", "rouge_l", first_word], "max_new_tokens": 8}
    config = facts_config(eval_generate=block, metric_for_best_model="first_word")
    run = LLM("scored", tiny_path).fit(configuration=config, db=db)
    assert run.status == "completed", run.error
    first, *_, last = run.checkpoints
    for name in ("eval_exact_match", "eval_rouge_l", "eval_first_word"):
        assert last["metrics"][name] > first["metrics"][name], (name, first["metrics"], last["metrics"])
    # each checkpoint's record keeps its scores with the settings that produced them
    (key,) = last["evaluations"]
    assert (
        last["evaluations"][key]["count"] == len(FACTS) and last["evaluations"][key]["settings"]["max_new_tokens"] == 8
    )
    assert run.record["evaluation"]["functions"][0]["name"] == "first_word"
    assert "prediction.split()" in run.record["evaluation"]["functions"][0]["source"]
    # each scored example is in the database: prompt, reference, prediction, a score per metric
    examples = run.evaluations()
    assert len(examples) == len(FACTS) * 3 and {"exact_match", "rouge_l", "first_word"} <= set(examples.columns)
    final = examples[examples["step"] == 60]
    assert (final["prediction"].str.strip() == final["reference"].str.strip()).mean() == last["metrics"][
        "eval_exact_match"
    ]
    # @best follows metric_for_best_model, a notebook metric, greater being better
    best = db.store.checkpoint("scored", "best")
    assert best["metrics"]["eval_first_word"] == max(c["metrics"]["eval_first_word"] for c in run.checkpoints)
    # the checkpoint table: a sortable column per metric
    records = db.store.list_checkpoints("scored")
    assert score_names(records) == ["exact_match", "rouge_l", "first_word"]
    row = checkpoint_table_row(records[-1], score_names(records))
    assert row["sort"]["rouge_l"] == last["metrics"]["eval_rouge_l"] and row["cells"]["first_word"]
    # the live and stored chart: each metric per checkpoint
    assert run.metrics["eval_rouge_l"].dropna().tolist() == [c["metrics"]["eval_rouge_l"] for c in run.checkpoints]


@pytest.mark.slow
def test_llm_eval_scores_an_old_runs_checkpoints_reuses_them_and_resumes(shell, db):
    db["facts"].insert_many(fact_docs())
    shell.run(
        "%%llm_finetune old -o run\nmodel: {{ base_path }}\ndata: facts\nprompt: q\nresponse: a\n"
        f"prompt_template: {TEMPLATE!r}\nmax_steps: 40\nsave_steps: 20\neval_steps: 20\neval_strategy: steps\n"
        "learning_rate: 1.0e-2\nlora_r: 8\nper_device_train_batch_size: 8\nmax_length: 64"
    )
    run = shell.ns["run"]
    assert not any(c.get("evaluations") for c in run.checkpoints)  # trained without eval_generate
    shell.run("scores = %llm_eval old --all --metrics exact_match rouge_l --max-new-tokens 8")
    scores = shell.ns["scores"]
    assert [r["step"] for r in scores.results] == [20, 40] and not any(r["reused"] for r in scores.results)
    assert scores.results[1]["scores"]["rouge_l"] >= scores.results[0]["scores"]["rouge_l"]
    assert "rouge_l" in scores._repr_html_()
    stored = db.store.list_checkpoints("old")
    assert stored[1]["metrics"]["eval_rouge_l"] == scores.results[1]["scores"]["rouge_l"]
    assert len(run.evaluations()) == 2 * len(FACTS)
    # asked again the same way: reused, nothing generated
    again = db.store
    shell.run("again = %llm_eval old --all --metrics exact_match rouge_l --max-new-tokens 8")
    assert all(r["reused"] for r in shell.ns["again"].results)
    # interrupted (its score not recorded, half its examples written): it resumes where it stopped
    checkpoint = stored[1]["_id"]
    again.checkpoints.update_one({"_id": checkpoint}, {"$unset": {"evaluations": ""}})
    again.evaluations.delete_many({"checkpoint": checkpoint, "index": {"$gte": 3}})
    seen = []
    llm = db.load("model", "old")
    result = llm.evaluate(
        "40",
        metrics=["exact_match", "rouge_l"],
        max_new_tokens=8,
        progress=lambda checkpoint, done, total: seen.append((done, total)),
    )
    assert seen[0] == (3, len(FACTS)) and seen[-1] == (len(FACTS), len(FACTS))
    assert result.results[0]["scores"] == scores.results[1]["scores"]  # greedy: the same answers
    # other settings: scored again, under another key
    shell.run("other = %llm_eval old@40 --metrics exact_match --max-new-tokens 4")
    assert not shell.ns["other"].results[0]["reused"]
    assert len(db.store.list_checkpoints("old")[1]["evaluations"]) == 2


@pytest.mark.slow
def test_a_judge_that_is_a_stored_checkpoint_scores_and_unparseable_replies_are_missing(db, tiny_path):
    # a judge trained to answer "7" to the judge's prompts
    db["judging"].insert_many([{"p": f"Rate: {q} -> {a}", "r": " 7"} for _ in range(8) for q, a, _ in FACTS])
    judge = facts_config(data="judging", prompt="p", response="r", eval_strategy="no", max_steps=40, save_steps=40)
    judged = LLM("judge", tiny_path).fit(configuration=judge, db=db)
    assert judged.status == "completed", judged.error
    db["facts"].insert_many(fact_docs())
    rate = {"model": "judge@latest", "prompt": "Rate: {prompt} -> {prediction}", "max_new_tokens": 4}
    block = {
        "metrics": [{"judge": {**rate, "name": "judge"}}, {"judge": {**rate, "name": "strict", "scale": [1, 5]}}],
        "max_new_tokens": 6,
        "when": "end",
    }
    run = LLM("judged", tiny_path).fit(configuration=facts_config(max_steps=20, eval_generate=block), db=db)
    assert run.status == "completed", run.error
    (key,) = run.checkpoints[-1]["evaluations"]
    evaluation = run.checkpoints[-1]["evaluations"][key]
    assert evaluation["scores"]["judge"] == 7.0  # the judge's replies, parsed
    # 7 is off a 1-5 scale: every reply counts as missing, is reported, and fails nothing
    assert evaluation["scores"]["strict"] is None and evaluation["missing"] == {"strict": len(FACTS)}
    examples = run.evaluations()
    assert examples["judge"].tolist() == [7.0] * len(FACTS) and examples["strict"].isna().all()


def raises(prediction, reference, document):
    return 1 / 0


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"eval_generate": {"metrics": ["rouge"]}}, "unknown metric 'rouge' — did you mean 'rouge_l'?"),
        (
            {"eval_generate": {"metrics": ["exact_match"], "limt": 3}},
            "eval_generate.limt: unknown key — did you mean 'limit'?",
        ),
        (
            {"eval_generate": {}, "eval_strategy": "no"},
            "eval_generate: scores held-out documents at each evaluation — set eval_strategy: steps",
        ),
        (
            {"eval_generate": {}, "response": None, "prompt": None, "X": "q"},
            "eval_generate.reference: name the field holding each expected answer",
        ),
        (
            {"eval_generate": {"metrics": ["rouge_l"], "when": "end"}, "metric_for_best_model": "rouge_l"},
            "metric_for_best_model: rouge_l is scored only at the end",
        ),
        ({"eval_generate": {}, "save_steps": 30}, "make save_steps (30) a multiple of eval_steps (20)"),
    ],
)
def test_an_eval_block_that_cannot_work_is_one_line(changes, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)").replace("?", r"\?")):
        facts_config(**changes)


def test_a_metric_that_raises_on_the_first_example_is_named_and_nothing_is_written(db, tiny_path):
    db["facts"].insert_many(fact_docs(2))
    config = facts_config(eval_generate={"metrics": ["exact_match", raises]})
    with pytest.raises(ConfigError, match="metric 'raises' raised ZeroDivisionError"):
        LLM("refused", tiny_path).fit(configuration=config, db=db)
    _nothing_written(db)


def test_no_held_out_document_is_refused_before_anything_is_written(db, tiny_path):
    db["facts"].insert_many([{**doc, "_fold": "train"} for doc in fact_docs(2)])
    config = facts_config(eval_generate={"metrics": ["exact_match"]}, valid_fraction=0.0)
    with pytest.raises(DataError, match="eval_generate: no held-out document to score"):
        LLM("refused", tiny_path).fit(configuration=config, db=db)
    _nothing_written(db)


@pytest.mark.slow
def test_the_views_sort_by_each_metric_show_the_examples_and_compare_two_runs(db, tiny_path):
    import re

    from llm_magics.widgets.checkpoints import CheckpointBrowser
    from llm_magics.widgets.compare import runs_comparison_html

    db["facts"].insert_many(fact_docs())
    block = {"metrics": ["exact_match", "rouge_l"], "max_new_tokens": 8}
    llm = LLM("viewed", tiny_path)
    slow = llm.fit(configuration=facts_config(max_steps=20, learning_rate=1e-3, eval_generate=block), db=db)
    fast = llm.fit(configuration=facts_config(eval_generate=block), db=db)
    browser = CheckpointBrowser(db, "viewed")
    try:
        labels = [column["label"] for column in browser.table.columns]
        assert labels[-3:] == ["exact_match", "rouge_l", "flags"]
        assert all(column["numeric"] for column in browser.table.columns if column["label"] == "rouge_l")
        # two checkpoints side by side: worst first by the first one's score, the differing answers marked
        first, last = fast.checkpoints[0]["_id"], fast.checkpoints[-1]["_id"]
        browser.table.value = [last, first]
        browser.examples()
        page = browser.output.value
        assert 'class="llm-examples"' in page and page.count("<tr>") == len(FACTS) + 1
        assert f"{fast.id}:20" in page and f"{fast.id}:60" in page and "worst first by exact_match" in page
        predictions = {r["index"]: r["prediction"] for r in db.store.checkpoint_evaluations(last)}
        differing = sum(r["prediction"] != predictions[r["index"]] for r in db.store.checkpoint_evaluations(first))
        assert page.count('class="llm-differs"') == 2 * differing > 0
        rows = db.store.checkpoint_evaluations(last)
        assert len({r["scores"]["exact_match"] for r in rows}) == 2  # some right, some wrong
        worst_first = [r["prompt"] for r in sorted(rows, key=lambda r: r["scores"]["exact_match"])]
        assert re.findall(r"<tr><td[^>]*><code>(.*?)</code>", page) == worst_first
    finally:
        browser.close()
    comparison = runs_comparison_html(db.store, [slow.id, fast.id])
    assert "llm-score-deltas" in comparison and "rouge_l" in comparison
    delta = fast.checkpoints[-1]["metrics"]["eval_rouge_l"] - slow.checkpoints[-1]["metrics"]["eval_rouge_l"]
    assert f"({delta:+.4g})" in comparison


@pytest.mark.slow
def test_a_notebook_metric_in_a_cell_scores_a_run_in_a_real_kernel_and_the_browser_shows_it(workdir):
    """The magics in a real kernel: a metric written in a cell scores each save (`{{ }}`), @best
    follows it, %llm_eval adds a metric, and the browser's table and examples view show them."""
    from pathlib import Path

    from test_notebook_kernel import executed

    outputs = executed(
        [
            "%load_ext llm_magics",
            f"import sys\nsys.path.insert(0, {str(Path(__file__).parent)!r})\n"
            "from test_eval_generate import fact_docs\nfrom llm_magics import tiny_model\n"
            "base_path = str(tiny_model('tiny'))\ndb = %llm_db mongomock://kernel-eval\n"
            "db['facts'].insert_many(fact_docs());\n\n"
            "def first_word(prediction, reference, document):\n"
            "    return float(prediction.split()[:1] == reference.split()[:1])",
            "%%llm_finetune scored -o run\nmodel: {{ base_path }}\ndata: facts\nprompt: q\nresponse: a\n"
            f"prompt_template: {TEMPLATE!r}\nmax_steps: 60\nsave_steps: 20\neval_steps: 20\neval_strategy: steps\n"
            "learning_rate: 1.0e-2\nlora_r: 8\nper_device_train_batch_size: 8\nmax_length: 64\n"
            "eval_generate: {metrics: [rouge_l, '{{ first_word }}'], max_new_tokens: 8}\n"
            "metric_for_best_model: first_word",
            "scores = %llm_eval scored --all --metrics exact_match first_word --max-new-tokens 8\nprint(scores)",
            "browser = %llm_checkpoints scored\n"
            "print([c['label'] for c in browser.table.columns])\n"
            "browser.table.value = [browser.table.rows[-1]['id']]\nbrowser.examples()\n"
            "print(browser.output.value.count('<tr>'), db.store.checkpoint('scored', 'best')['step'])",
        ],
        workdir,
    )
    assert not any(o.output_type == "error" for cell in outputs for o in cell), outputs
    summary = next(o for o in outputs[2] if "data" in o and "text/html" in o["data"])["data"]["text/html"]
    warned = "".join(o.get("text", "") for o in outputs[2] if o.get("name") == "stderr")
    # eight copies of each fact: said in one line, without the file and code of ours that said it
    (line,) = [line for line in warned.splitlines() if "DataWarning" in line]
    assert line.startswith("DataWarning: data: ") and "duplicate" in line and "llm_magics/" not in warned, warned
    assert 'data-series="eval_first_word"' in summary and 'data-series="eval_rouge_l"' in summary
    printed = [o for o in outputs[3] if o.get("name") == "stdout"][-1]["text"].splitlines()
    assert printed[0].split()[:4] == ["checkpoint", "step", "exact_match", "first_word"] and len(printed) == 5
    labels, examples = [o for o in outputs[4] if o.get("name") == "stdout"][-1]["text"].splitlines()
    assert labels.endswith("'rouge_l', 'first_word', 'exact_match', 'flags']")
    count, best = examples.split()
    assert int(count) == len(FACTS) + 1 and int(best) in (20, 40, 60)
