"""Does the GGUF answer like the model that was trained? The check of every GGUF export.

On the checkpoint's probe prompts (else a few prompts drawn from its training data), the merged
transformers model answers greedily, each prompt written as ``%llm_predict`` writes it; llama.cpp
answers the same prompts written by the Modelfile's template, as Ollama would, in a process of
its own (``gguf_runner``). Per prompt: both answers, and the top-1 next-token agreement of
llama.cpp along the transformers answer. f16, bf16, f32 and q8_0 must give the same greedy
answers; for the smaller types the agreement must stay high. A miss names its likely cause: the
template (the texts differ), the tokenizer (the same text gives other ids: vocabulary or BOS),
the EOS token (one stops where the other goes on), or the quantization.

Except a near tie, for the types that must keep the answers: where the answers part, the trained
model may have been all but undecided between its token and llama.cpp's. When the quantization
moved the two tokens' logits apart by no more than it can (a share of the logits' spread over the
vocabulary at that position: measured on the trained tiny model, f16 moves a pair by at most 0.2%
of the spread, q8_0 3.4%), the answers differ by rounding, not by a fault: a note says so, with
the numbers, and no warning.
"""

from __future__ import annotations

import datetime as dt
import gc
import html
import json
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llm_magics.core.errors import ConfigError
from llm_magics.core.tables import html_table, text_table
from llm_magics.core.theme import ink
from llm_magics.export.modelfile import go_template, modelfile, prompt_parts, render, stops
from llm_magics.models.generate import format_prompt, prompt_ids

if TYPE_CHECKING:
    from llm_magics.api.llm import LLM

REPORT = "gguf-check.json"
LOW_AGREEMENT = 0.75  # below this, a smaller type changed the answers more than it should
# How far each type that must keep the greedy answers may move two tokens' logits relative to each
# other, as a share of the logits' standard deviation at that position (about 3x the largest move
# measured on the trained tiny model).
TIE_SHARE = {"f32": 0.01, "f16": 0.01, "bf16": 0.1, "q8_0": 0.1}
_COLUMNS = ["prompt", "transformers", "GGUF", "token agreement", "same answer"]


@dataclass
class Written:
    """The Modelfile's template, and the prompt format training used."""

    template: str
    format: dict[str, Any] | None


@dataclass
class CheckResult:
    rows: list[dict[str, Any]]
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def agreement(self) -> float:
        counted = [row["agreement"] for row in self.rows if row["agreement"] is not None]
        return sum(counted) / len(counted) if counted else 1.0

    def write(self, directory: Path) -> None:
        report = {"rows": self.rows, "warnings": self.warnings, "notes": self.notes, "agreement": self.agreement}
        (directory / REPORT).write_text(json.dumps(report, indent=2) + "\n")


@dataclass
class GGUFExport:
    """What an export wrote and what its check found; shows as the check's table."""

    directory: Path
    gguf: Path
    quant: str
    check: CheckResult
    seconds: dict[str, float]

    @property
    def modelfile(self) -> Path:
        return self.directory / "Modelfile"

    def record(self, model: str, checkpoint: dict[str, Any]) -> dict[str, Any]:
        return {
            "model": model,
            "checkpoint": checkpoint["_id"],
            "run": checkpoint.get("run"),
            "step": checkpoint.get("step"),
            "path": str(self.gguf),
            "quant": self.quant,
            "size": self.gguf.stat().st_size,
            "seconds": self.seconds,
            "check": {
                "rows": self.check.rows,
                "warnings": self.check.warnings,
                "notes": self.check.notes,
                "agreement": self.check.agreement,
            },
            "created": dt.datetime.now(dt.UTC),
        }

    def _table_rows(self) -> list[list[str]]:
        return [
            [row["prompt"], row["transformers"], row["gguf"], f"{row['agreement']:.0%}", _same(row)]
            for row in self.check.rows
        ]

    def _heading(self) -> str:
        took = ", ".join(f"{name} {value:.1f} s" for name, value in self.seconds.items())
        return f"{self.gguf} ({self.quant}, {self.gguf.stat().st_size / 1024**2:.1f} MiB; {took}) and its Modelfile"

    def __repr__(self) -> str:
        lines = [self._heading(), text_table(_COLUMNS, self._table_rows())]
        lines += [f"note: {note}" for note in self.check.notes]
        return "\n".join(lines + [f"warning: {warning}" for warning in self.check.warnings])

    def _repr_html_(self) -> str:
        warnings = "".join(
            f'<div class="llm-gguf-warning" style="color:{ink("error")}">⚠ {html.escape(warning)}</div>'
            for warning in self.check.warnings
        )
        verdict = (
            "" if warnings else f'<div style="color:{ink("success")}">the GGUF answers as the trained model does</div>'
        )
        notes = "".join(f'<div class="llm-gguf-note">{html.escape(note)}</div>' for note in self.check.notes)
        table = html_table(_COLUMNS, self._table_rows(), "llm-gguf-check")
        return f"<div><b>{html.escape(self._heading())}</b></div>{verdict}{warnings}{table}{notes}"


def _same(row: dict[str, Any]) -> str:
    if row["same"]:
        return "yes"
    return f"near tie at token {row['tie']['token']}" if row.get("tie") else "NO"


def check_prompts(llm: LLM, record: dict[str, Any], given: list[str] | None) -> list[str]:
    """The prompts to check on: the given ones, else the checkpoint's probe prompts, else the
    first part of a few of its training documents."""
    if given:
        return list(given)
    probes = [p.get("prompt") for p in record.get("probes") or [] if isinstance(p, dict)]
    if any(isinstance(p, str) for p in probes):
        return [p for p in probes if isinstance(p, str)]
    run = llm.db.store.runs.find_one({"_id": record.get("run")}) if llm.db is not None else None
    config = (run or {}).get("config") or {}
    data = config.get("data")
    collection = data if isinstance(data, str) else (data or {}).get("collection") if isinstance(data, dict) else None
    name = config.get("prompt") or config.get("X") or "text"
    documents = list(llm.db[collection].find({}, {name: 1}).limit(3)) if collection and llm.db is not None else []
    texts = [doc[name] for doc in documents if isinstance(doc.get(name), str) and doc[name]]
    if not texts:
        raise ConfigError("gguf: the checkpoint has no probe prompts and no documents to draw some from — give prompts")
    return texts if config.get("prompt") else [text[: max(1, len(text) * 3 // 5)] for text in texts]


def plan_modelfile(
    gguf_name: str, tokenizer: Any, record: dict[str, Any], model: str, template: str | None
) -> tuple[str, Written]:
    """The Modelfile for the checkpoint's prompt format (or ``template``), and what it writes;
    checked here, before any expensive stage: a template the check cannot render is an error."""
    prompt_format = record.get("template")
    parts = prompt_parts(prompt_format, tokenizer)
    chosen = template if template is not None else go_template(parts)
    render(chosen, "a prompt")
    step = record.get("step") if isinstance(record.get("step"), int) else "?"
    source = f"{model} step {step} of run {record.get('run')}, written by llm_magics"
    return modelfile(gguf_name, chosen, stops(parts[0], tokenizer), source), Written(chosen, prompt_format)


def check(
    merged: Path, gguf: Path, kind: str, exact: bool, written: Written, prompts: list[str], max_new_tokens: int
) -> CheckResult:
    """Compares the GGUF's answers with the merged model's; ``exact``: the type must give the
    same greedy answers (f16, bf16, f32, q8_0), else a high top-1 agreement."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(merged)
    model = AutoModelForCausalLM.from_pretrained(merged, dtype=torch.float32).eval()
    eos = tokenizer.eos_token_id
    ours = []
    for prompt in prompts:
        text = format_prompt(prompt, written.format, tokenizer)
        ids = prompt_ids(tokenizer, text)
        with torch.inference_mode():
            out = model.generate(
                torch.tensor([ids]),
                max_new_tokens=max_new_tokens,
                do_sample=False,
                pad_token_id=tokenizer.pad_token_id,
                output_logits=True,
                return_dict_in_generate=True,
            )
        new = out.sequences[0, len(ids) :].tolist()
        reference = new[: new.index(eos) + 1] if eos in new else new  # with its EOS when it stopped
        logits = [step[0].float().numpy() for step in out.logits[: len(reference)]]
        ours.append({"text": text, "ids": ids, "reference": reference, "logits": logits, "vocabulary": len(tokenizer)})
    del model  # llama.cpp loads the GGUF next, in a process of its own: one model in memory at a time
    gc.collect()
    theirs = _llama_cpp(gguf, written.template, prompts, ours, max_new_tokens)
    result = CheckResult([])
    for prompt, mine, other in zip(prompts, ours, theirs, strict=True):
        answer = [token for token in mine["reference"] if token != eos]
        agree = [a == b for a, b in zip(other["top"], mine["reference"], strict=True)]
        row = {
            "prompt": prompt,
            "transformers": tokenizer.decode(answer, skip_special_tokens=True),
            "gguf": other["answer"],
            "agreement": sum(agree) / len(agree) if agree else 1.0,
            "same": other["answer_ids"] == answer,
        }
        row["tie"] = None if row["same"] or not exact else near_tie(mine, other, kind)
        result.rows.append(row)
        problem = _problem(mine, other, render(written.template, prompt), answer, (kind, exact), row)
        if problem:
            result.warnings.append(f"{prompt!r}: {problem}")
        elif row.get("tie"):
            result.notes.append(f"{prompt!r}: {_tie_note(row['tie'], tokenizer, kind)}")
    return result


def near_tie(mine: dict[str, Any], other: dict[str, Any], kind: str) -> dict[str, Any] | None:
    """Where llama.cpp first picks another token than the trained model: whether the quantization
    explains it (the two tokens' logits moved apart by no more than ``kind`` can move them)."""
    at = next((i for i, (a, b) in enumerate(zip(other["top"], mine["reference"], strict=True)) if a != b), None)
    if at is None:
        return None
    logits, ours, theirs = mine["logits"][at], mine["reference"][at], other["top"][at]
    moved = float(logits[ours] - logits[theirs]) + other["lead"][at]  # how far the pair moved
    spread = float(logits[: mine.get("vocabulary")].std())  # over the tokens, not the padding rows past them
    if moved > TIE_SHARE[kind] * spread:
        return None
    return {"token": at + 1, "ours": ours, "theirs": theirs, "moved": moved, "spread": spread}


def _tie_note(tie: dict[str, Any], tokenizer: Any, kind: str) -> str:
    ours, theirs = (tokenizer.decode([tie[k]]) for k in ("ours", "theirs"))
    limit = TIE_SHARE[kind]
    return (
        f"the answers part at token {tie['token']}, where the trained model was all but undecided between"
        f" {ours!r} and {theirs!r}: {kind} moved their logits {tie['moved']:.4f} apart, within the"
        f" {limit:.0%} of the logits' spread ({tie['spread']:.4f}) that {kind} explains — rounding, not a fault"
    )


def _llama_cpp(
    gguf: Path, template: str, prompts: list[str], ours: list[dict[str, Any]], max_new_tokens: int
) -> list[dict[str, Any]]:
    """llama.cpp's answers, from a process of its own."""
    texts = [render(template, prompt) for prompt in prompts]
    longest = max(len(mine["ids"]) + len(text) for mine, text in zip(ours, texts, strict=True))
    job = {
        "gguf": str(gguf),
        "n_ctx": longest + 2 * max_new_tokens + 16,
        "threads": 2,
        "max_new_tokens": max_new_tokens,
        "prompts": [{"text": text, "reference": mine["reference"]} for text, mine in zip(texts, ours, strict=True)],
    }
    done = subprocess.run(
        [sys.executable, "-m", "llm_magics.export.gguf_runner"], input=json.dumps(job), capture_output=True, text=True
    )
    if done.returncode != 0:
        why = _why(done.stderr)
        raise ConfigError(f"gguf: llama.cpp could not run the exported file (exit {done.returncode}): {why}")
    return json.loads(done.stdout)


def _why(log: str) -> str:
    """llama.cpp's words for a failure: the last lines of its log before Python's traceback, and
    the error that ended the process."""
    lines = [line.strip() for line in log.strip().splitlines() if line.strip()]
    start = next((i for i, line in enumerate(lines) if line.startswith("Traceback")), len(lines))
    said = [line for line in lines[:start] if not line.startswith(("llama_model_loader: - kv", "print_info:"))]
    error = [lines[-1]] if start < len(lines) else []
    return " / ".join(said[-4:] + error)


def _problem(
    mine: dict[str, Any],
    other: dict[str, Any],
    their_text: str,
    answer: list[int],
    quant: tuple[str, bool],
    row: dict[str, Any],
) -> str | None:
    """What is wrong with one prompt's round trip, if anything. Another prompt text or other
    token ids are wrong even when the answers happen to agree: other prompts will not."""
    if their_text != mine["text"]:
        return f"template: the Modelfile writes the prompt as {their_text!r}, training wrote {mine['text']!r}"
    if other["ids"] != mine["ids"]:
        return "tokenizer: llama.cpp reads the same prompt as other tokens (vocabulary or BOS)"
    kind, exact = quant
    if row["same"] or row.get("tie") or (not exact and row["agreement"] >= LOW_AGREEMENT):
        return None
    answers = f"the GGUF answers {row['gguf']!r}, not {row['transformers']!r}"
    shorter, longer = sorted((other["answer_ids"], answer), key=len)
    if longer[: len(shorter)] == shorter:
        return f"{answers} — EOS: one stops where the other goes on (the end-of-sequence token differs)"
    return f"{answers} — the numbers differ more than {kind} should explain"
