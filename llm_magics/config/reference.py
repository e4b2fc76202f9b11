"""The README's configuration reference, generated from ``LLMTrainingConfiguration`` itself.

python -m llm_magics.config.reference            # prints the reference
python -m llm_magics.config.reference README.md  # rewrites the README's reference section in place
"""

from __future__ import annotations

import dataclasses
import inspect
import re
import sys
from pathlib import Path

START, END = "<!-- config-reference:start -->", "<!-- config-reference:end -->"
# Inherited SFTConfig / TrainingArguments fields a notebook user reaches for most.
COMMON = (
    "max_steps",
    "num_train_epochs",
    "per_device_train_batch_size",
    "per_device_eval_batch_size",
    "gradient_accumulation_steps",
    "eval_strategy",
    "eval_steps",
    "save_steps",
    "save_total_limit",
    "lr_scheduler_type",
    "warmup_steps",
    "weight_decay",
    "packing",
    "fp16",
    "seed",
    "trust_remote_code",
    "report_to",
)


def reference() -> str:
    """Markdown tables: the keys this package adds or changes, then common inherited ones."""
    from llm_magics.config.configuration import ALIASES, LLMTrainingConfiguration

    fields = {f.name: f for f in dataclasses.fields(LLMTrainingConfiguration)}
    own = inspect.get_annotations(LLMTrainingConfiguration)
    aliases = ", ".join(f"`{old}` → `{new}`" for old, new in ALIASES.items())
    lines = [
        "Keys this package adds, or whose defaults it changes for quick notebook runs:",
        "",
        *_table([fields[name] for name in own], whole=True),
        "",
        "Every other `trl.SFTConfig` / `transformers.TrainingArguments` field is accepted with its "
        "usual default; the ones used most:",
        "",
        *_table([fields[name] for name in COMMON], whole=False),
        "",
        f"Older names are accepted: {aliases}. An unknown key is refused with the closest valid names.",
    ]
    return "\n".join(lines)


def _table(fields: list[dataclasses.Field], whole: bool) -> list[str]:
    """One row per field: its type as the error messages describe it, its default, its help
    (``whole``, else the first sentence of the longer inherited texts)."""
    from llm_magics.config.configuration import LLMTrainingConfiguration
    from llm_magics.config.validation import describe, type_hints

    hints = type_hints(LLMTrainingConfiguration)
    rows = ["| key | type | default | what |", "|---|---|---|---|"]
    for f in fields:
        what = " ".join(f.metadata.get("help", "").split())
        what = what if whole else _first_sentence(what)
        rows.append(f"| `{f.name}` | {_cell(describe(hints[f.name]))} | {_cell(_default(f))} | {_cell(what)} |")
    return rows


def _default(f: dataclasses.Field) -> str:
    """The default as YAML writes it."""
    value = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
    value = getattr(value, "value", value)  # enums: their YAML spelling
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    return f"`{value!r}`" if isinstance(value, str) else f"`{value}`"


def _first_sentence(text: str) -> str:
    match = re.match(r"(.+?\.)(\s|$)", text)
    return match.group(1) if match else text


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def rewrite(path: Path) -> bool:
    """Puts the current reference between the markers in ``path``; returns whether it changed."""
    text = path.read_text()
    if START not in text or END not in text:
        raise SystemExit(f"{path}: add the markers {START} and {END} where the reference goes")
    head, _, rest = text.partition(START)
    _, _, tail = rest.partition(END)
    new = f"{head}{START}\n{reference()}\n{END}{tail}"
    path.write_text(new)
    return new != text


def section(path: Path) -> str:
    """The reference as it is now in ``path``."""
    return path.read_text().partition(START)[2].partition(END)[0].strip("\n")


if __name__ == "__main__":
    if len(sys.argv) > 1:
        print("updated" if rewrite(Path(sys.argv[1])) else "already current")
    else:
        print(reference())
