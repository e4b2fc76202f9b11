"""GGUF export: a fine-tuned tiny SentencePiece model, merged, converted by llama.cpp's converter,
quantized, run by llama.cpp in a process of its own, and checked against the merged model.

llama.cpp comes from the gguf extra: scripts/test.sh builds and installs it before the tests run
(scripts/setup_gguf.sh).
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import pytest

from llm_magics import LLM, LLMTrainingConfiguration, connect
from llm_magics.core.errors import ConfigError
from llm_magics.models.tiny import FACTS, documents

FRANCE = "### Human: What is the capital of France? ### Assistant:"
PROBES = [FRANCE, "### Human: What is the capital of Japan? ### Assistant:", "zzz"]


def test_a_bad_quantization_is_a_short_error_that_lists_the_valid_ones(shell):
    with pytest.raises(Exception, match=r"unknown quantization 'q9' — valid: f16, q8_0, .*q4_k_m"):
        shell.run("%llm_export nothing out --gguf q9")
    assert not Path("out").exists()


def test_without_the_converter_the_error_says_how_to_set_it_up(monkeypatch, tmp_path):
    from llm_magics.export.gguf import converter

    monkeypatch.setenv("LLM_MAGICS_LLAMA_CPP", str(tmp_path))  # a llama.cpp tree without it
    with pytest.raises(ConfigError, match=r"converter is missing .* run: python -m llm_magics.export.gguf setup"):
        converter()


def test_a_tokenizer_without_a_vocabulary_cannot_become_a_gguf_and_a_sentencepiece_one_can(tiny_path, tmp_path):
    """Told from the files, before anything loads: the byte-level tiny model's ByT5Tokenizer has no
    vocabulary for llama.cpp's converter; a SentencePiece model and a tokenizer.json do."""
    from llm_magics.export.gguf_tokenizer import gguf_refusal
    from llm_magics.models.tiny import tiny_sentencepiece_model

    assert gguf_refusal(tiny_path) == (
        "gguf: the tokenizer of 'tiny' (ByT5Tokenizer) has no vocabulary file that llama.cpp's converter reads "
        "(tokenizer.model or tokenizer.json) — export the merged model instead"
    )
    assert gguf_refusal(str(tiny_sentencepiece_model(tmp_path / "spm"))) is None
    bpe = tmp_path / "bpe"
    bpe.mkdir()
    (bpe / "tokenizer_config.json").write_text('{"tokenizer_class": "GPT2Tokenizer"}')
    (bpe / "tokenizer.json").write_text("{}")
    assert gguf_refusal(str(bpe)) is None
    (bpe / "tokenizer.json").unlink()
    assert "(GPT2Tokenizer) has no vocabulary file" in gguf_refusal(str(bpe))
    assert gguf_refusal(str(tmp_path / "no-such-model")) is None  # nothing to tell from: loading says why


def test_a_failed_step_is_one_line_that_says_what_failed_and_what_to_do():
    from llm_magics.export.gguf import failure

    traceback = (
        "INFO:hf-to-gguf:Loading model: merged\nTraceback (most recent call last):\n"
        '  File "conversion/base.py", line 2094, in _create_vocab_sentencepiece\n'
        "    from sentencepiece import SentencePieceProcessor\n"
        "ModuleNotFoundError: No module named 'sentencepiece'\n"
    )
    assert failure("llama.cpp's converter", 1, traceback, "export the merged model instead") == (
        "gguf: llama.cpp's converter needs the Python package sentencepiece, not installed — "
        "pip install sentencepiece, then export again"
    )
    protobuf = "ModuleNotFoundError: No module named 'google.protobuf'"
    assert "needs the Python package protobuf" in failure("llama.cpp's converter", 1, protobuf, "")
    unknown = (
        'Traceback (most recent call last):\n  File "x.py"\nNotImplementedError: BPE pre-tokenizer not recognized\n'
    )
    told = failure("llama.cpp's converter", 1, unknown, "export the merged model instead")
    assert told == (
        "gguf: llama.cpp's converter failed (exit 1): NotImplementedError: BPE pre-tokenizer not recognized "
        "— export the merged model instead"
    )
    assert "\n" not in told and "Traceback" not in told


@pytest.fixture(scope="module")
def llama_cpp():
    if importlib.util.find_spec("llama_cpp") is None:
        pytest.skip("needs the gguf extra: run scripts/setup_gguf.sh (scripts/test.sh does)")


@pytest.fixture(scope="module")
def trained(llama_cpp, tmp_path_factory):
    """A tiny SentencePiece Llama, QLoRA-trained on the demo's four capitals until it answers them."""
    from llm_magics.models.tiny import tiny_sentencepiece_model

    root = tmp_path_factory.mktemp("gguf")
    db = connect(f"embedded://{root / 'store'}")
    db["docs"].insert_many(documents(64))
    db["pairs"].insert_many([{"q": q, "a": a} for q, a in FACTS * 16])
    base = tiny_sentencepiece_model(root / "spm")
    settings = {"save_steps": 300, "eval_strategy": "no", "per_device_train_batch_size": 8, "learning_rate": 3e-3}
    settings |= {"lora_r": 16, "lora_alpha": 32, "max_length": 64, "probe_prompts": PROBES}
    text = LLM("capitals", str(base), bits=4)
    text.fit(select="docs", db=db, configuration=LLMTrainingConfiguration(max_steps=300, **settings))
    paired = LLM("paired", str(base), bits=4)
    config = LLMTrainingConfiguration(
        max_steps=200, prompt="q", response="a", prompt_template="### Human: {prompt} ### Assistant:", **settings
    )
    paired.fit(select="pairs", db=db, configuration=config)
    return db, text, paired, root


@pytest.mark.parametrize("quant", ["f16", "q8_0"])
@pytest.mark.gguf
@pytest.mark.slow
@pytest.mark.xdist_group("gguf")
def test_f16_and_q8_0_answer_as_the_trained_model(trained, quant):
    db, llm, _, root = trained
    assert llm.predict(FRANCE, max_new_tokens=6).strip() == "Paris."  # it learned
    export = llm.export(root / f"capitals-{quant}", gguf=quant)
    assert export.gguf == root / f"capitals-{quant}" / f"model-{quant}.gguf" and export.gguf.stat().st_size > 0
    assert [row["prompt"] for row in export.check.rows] == PROBES  # the checkpoint's probe prompts
    # what it learned, exactly; on the nonsense probe a near tie may go either way (the check's note says so)
    assert export.check.rows[0]["same"] and export.check.rows[1]["same"], repr(export)
    assert all(row["same"] or row["tie"] for row in export.check.rows) and not export.check.warnings, repr(export)
    assert export.check.agreement >= 0.9 and export.check.rows[0]["gguf"].strip() == "Paris."
    for row in (row for row in export.check.rows if row["tie"]):  # a near tie is said so, with its numbers
        assert f"near tie at token {row['tie']['token']}" in repr(export), repr(export)
        assert any(note.startswith(f"{row['prompt']!r}: the answers part at token") for note in export.check.notes)
    modelfile = export.modelfile.read_text()
    assert f"FROM ./model-{quant}.gguf" in modelfile and 'PARAMETER stop "</s>"' in modelfile
    stored = db.store.exports.find_one({"path": str(export.gguf)})
    assert stored["quant"] == quant and stored["check"]["rows"] == export.check.rows and stored["step"] == 300
    report = json.loads((export.directory / "gguf-check.json").read_text())
    assert report["rows"] == export.check.rows
    assert sorted(p.name for p in export.directory.iterdir()) == ["Modelfile", "gguf-check.json", f"model-{quant}.gguf"]
    assert not [p for p in root.iterdir() if p.name.startswith(".partial-")]
    assert "the GGUF answers as the trained model does" in export._repr_html_()


def test_a_near_tie_that_the_quantization_explains_is_a_note_and_a_wider_move_is_not():
    """Where the answers part, the trained model's logits for its token and llama.cpp's were 0.002
    apart and llama.cpp's 0.003 the other way: the pair moved 0.005, 3% of the logits' spread (0.17),
    within what q8_0 does, not what f16 does."""
    import numpy as np

    from llm_magics.export.gguf_check import near_tie

    logits = np.array([0.0, 0.3, 0.302, -0.1], dtype=np.float32)  # spread (std) 0.17
    mine = {"reference": [5, 2, 0], "logits": [np.zeros(4), logits, np.zeros(4)]}
    other = {"top": [5, 1, 0], "lead": [0.0, 0.003, 0.0]}
    tie = near_tie(mine, other, "q8_0")
    assert tie["token"] == 2 and (tie["ours"], tie["theirs"]) == (2, 1) and tie["moved"] == pytest.approx(0.005, 1e-3)
    assert near_tie(mine, other, "f16") is None
    assert near_tie(mine, {**other, "lead": [0.0, 0.05, 0.0]}, "q8_0") is None  # moved 0.052: beyond q8_0
    assert near_tie(mine, {**other, "top": [5, 2, 0]}, "q8_0") is None  # no token differs
    # a padded embedding's rows past the vocabulary (zero logits here) do not narrow the spread
    padded = {"reference": mine["reference"], "logits": [np.zeros(4000), np.pad(logits, (0, 3996)), np.zeros(4000)]}
    assert near_tie({**padded, "vocabulary": 4}, other, "q8_0")["spread"] == pytest.approx(logits.std())


@pytest.mark.gguf
@pytest.mark.xdist_group("gguf")
def test_without_llama_cpp_the_error_names_the_install_and_nothing_is_written(trained, monkeypatch):
    _, llm, _, root = trained
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "llama_cpp" else find_spec(name, *a)
    )
    with pytest.raises(ConfigError, match=r"export to GGUF needs llama.cpp — pip install 'llm_magics\[gguf\]'"):
        llm.export(root / "no-extra", gguf="q8_0")
    assert not (root / "no-extra").exists()


@pytest.mark.gguf
@pytest.mark.xdist_group("gguf")
def test_without_sentencepiece_the_error_names_the_install_before_the_merge(trained, monkeypatch):
    """The issue's raw "No module named 'sentencepiece'" from deep in the converter: said up front."""
    _, llm, _, root = trained
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "sentencepiece" else find_spec(name, *a)
    )
    with pytest.raises(ConfigError) as refused:
        llm.export(root / "no-sentencepiece", gguf="q8_0")
    assert str(refused.value) == (
        "gguf: llama.cpp's converter reads this model's tokenizer.model with sentencepiece, which is not "
        "installed — pip install 'llm_magics[gguf]' (or scripts/setup_gguf.sh), then export again"
    )
    assert not (root / "no-sentencepiece").exists()


@pytest.mark.gguf
@pytest.mark.slow
@pytest.mark.xdist_group("gguf")
def test_the_modelfile_writes_prompts_as_training_did(trained):
    from transformers import AutoTokenizer

    from llm_magics.export.modelfile import render
    from llm_magics.models.generate import format_prompt

    db, _, paired, root = trained
    export = paired.export(root / "paired", gguf="f16", prompts=["What is the capital of Italy?"])
    modelfile = export.modelfile.read_text()
    assert 'TEMPLATE """### Human: {{ .Prompt }} ### Assistant:"""' in modelfile
    assert 'PARAMETER stop "### Human:"' in modelfile and 'PARAMETER stop "</s>"' in modelfile
    template = modelfile.split('TEMPLATE """', 1)[1].split('"""', 1)[0]
    record = db.store.checkpoint("paired")
    tokenizer = AutoTokenizer.from_pretrained(paired.base().path)
    prompt = "What is the capital of Italy?"
    assert render(template, prompt) == format_prompt(prompt, record["template"], tokenizer)
    assert export.check.rows[0]["same"] and export.check.rows[0]["transformers"].strip() == "Rome."


@pytest.mark.gguf
@pytest.mark.slow
@pytest.mark.xdist_group("gguf")
def test_a_template_that_writes_prompts_otherwise_is_caught(trained):
    _, _, paired, root = trained
    export = paired.export(
        root / "wrong-template", gguf="q8_0", template="Q: {{ .Prompt }}\nA:", prompts=["What is the capital of Spain?"]
    )
    assert export.check.warnings and "template: the Modelfile writes the prompt as 'Q: " in export.check.warnings[0]
    assert "llm-gguf-warning" in export._repr_html_() and "as the trained model does" not in export._repr_html_()


@pytest.mark.gguf
@pytest.mark.slow
@pytest.mark.xdist_group("gguf")
def test_the_magic_quantizes_a_smaller_type_with_llama_cpp_and_refuses_a_full_target(trained, shell):
    db, _, _, root = trained
    shell.run(f"%llm_db {db.uri}")
    export, captured = shell.run(f"%llm_export capitals@300 {root / 'capitals-q4'} --gguf q4_k_m")
    assert captured.stdout.splitlines()[:4] == [
        "[1/4] merging the adapter into its base…",
        "[2/4] converting to f16 with llama.cpp's converter…",
        "[3/4] quantizing to q4_k_m with llama.cpp…",
        "[4/4] checking the GGUF's answers against the trained model…",
    ]
    assert list(export.seconds) == ["merge", "convert", "quantize", "check"]
    assert export.gguf.name == "model-q4_k_m.gguf" and not (export.directory / "model-f16.gguf").exists()
    assert 0 <= export.check.agreement <= 1 and len(export.check.rows) == len(PROBES)
    with pytest.raises(Exception, match="exists and is not empty"):
        shell.run(f"%llm_export capitals {root / 'capitals-q4'} --gguf")


@pytest.mark.gguf
@pytest.mark.slow
@pytest.mark.xdist_group("gguf")
def test_a_gguf_llama_cpp_cannot_load_is_an_error_in_llama_cpps_words(trained):
    """A file llama.cpp refuses (here: cut short, as a full disk leaves it) ends the check with
    llama.cpp's own reason, not a bare exit status; llama.cpp's process ends, the caller's does not."""
    from llm_magics.export.gguf_check import _llama_cpp

    _, _, paired, root = trained
    export = paired.export(root / "whole", gguf="f16", prompts=["What is the capital of Spain?"])
    cut = root / "cut.gguf"
    cut.write_bytes(export.gguf.read_bytes()[: export.gguf.stat().st_size // 2])
    ours = [{"ids": [1, 2, 3], "reference": [4]}]
    refused = r"could not run the exported file .*(data is not within|failed to load)"
    with pytest.raises(ConfigError, match=refused) as error:
        _llama_cpp(cut, "{{ .Prompt }}", ["Spain?"], ours, 4)
    assert "Traceback" not in str(error.value) and len(str(error.value)) < 1000


@pytest.mark.gguf
@pytest.mark.slow
@pytest.mark.xdist_group("gguf")
def test_a_model_with_more_embedding_rows_than_tokens_exports(llama_cpp, db, tmp_path):
    """Released models often pad the embedding past the tokenizer (Llama 3: 128256 rows); the
    merged model keeps the base's tokenizer.model, from which llama.cpp's converter pads the
    vocabulary to the rows (without it, llama.cpp refuses the file: the shapes differ)."""
    from llm_magics.models.tiny import tiny_sentencepiece_model

    base = tiny_sentencepiece_model(tmp_path / "padded", rows=512)
    db["docs"].insert_many(documents(16))
    llm = LLM("padded", str(base))
    settings = {"eval_strategy": "no", "per_device_train_batch_size": 4, "probe_prompts": [FRANCE]}
    llm.fit(select="docs", db=db, configuration=LLMTrainingConfiguration(max_steps=2, save_steps=2, **settings))
    export = llm.export(tmp_path / "out", gguf="f16")
    assert export.gguf.is_file() and len(export.check.rows) == 1
    assert not [w for w in export.check.warnings if "tokenizer:" in w or "template:" in w], export.check.warnings


@pytest.mark.gguf
@pytest.mark.browser
@pytest.mark.slow
@pytest.mark.timeout(1200)
@pytest.mark.xdist_group("gguf")
def test_the_checkpoint_browser_exports_with_progress_and_shows_the_check(trained, page, lab):
    from browser_lab import cell_output, open_notebook, run_cell, screenshot

    db, _, _, root = trained
    target = root / "from-the-browser"
    cells = ["%load_ext llm_magics", f"%llm_db embedded://{root / 'store'}", "%llm_checkpoints capitals"]
    open_notebook(page, lab, "export.ipynb", cells)
    for index in range(len(cells)):
        run_cell(page, index)
    browser = cell_output(page, 2).locator(".llm-checkpoint-browser")
    browser.locator(".llm-checkpoints tbody tr[data-id]").first.click()
    browser.locator(".llm-export-path input").fill(str(target))
    assert browser.locator(".llm-export-format select").input_value() == "q8_0"  # the default
    page.evaluate(WATCH_STATUS)
    browser.locator(".llm-export").click()
    table = browser.locator(".llm-export-output table.llm-gguf-check")
    table.wait_for(timeout=600_000)
    stages = page.evaluate("window.__exportStages")
    assert [stage.split(": ", 1)[1] for stage in stages] == [
        "1/3 merging the adapter into its base…",
        "2/3 converting to q8_0 with llama.cpp's converter…",
        "3/3 checking the GGUF's answers against the trained model…",
    ]
    assert "the GGUF answers as the trained model does" in browser.locator(".llm-export-output").inner_text()
    france = table.locator("tbody tr").first  # the rows follow the probe prompts
    assert france.locator("td").first.inner_text().strip() == FRANCE
    assert france.locator("td").nth(2).inner_text().strip() == "Paris." and "yes" in france.inner_text()
    assert f"wrote {target / 'model-q8_0.gguf'}" in browser.locator(".llm-export-status").inner_text()
    assert "width: 100%" in browser.locator(".llm-export-progress .progress-bar").get_attribute("style")
    assert (target / "Modelfile").is_file() and db.store.exports.find_one({"path": str(target / "model-q8_0.gguf")})
    page.set_viewport_size({"width": page.viewport_size["width"], "height": 1600})  # the whole table, notes too
    screenshot(cell_output(page, 2), "checkpoint-browser-export.png")


# Records each stage the export shows, in order.
WATCH_STATUS = """
window.__exportStages = [];
new MutationObserver(() => {
  const text = document.querySelector('.llm-export-status')?.innerText || '';
  if (text.endsWith('…') && !window.__exportStages.includes(text)) window.__exportStages.push(text);
}).observe(document.body, {subtree: true, childList: true, characterData: true});
"""
