"""Documents -> the datasets of the preference and reward methods (SPEC §11), untokenized.

TRL's DPO, KTO, ORPO, CPO and GRPO trainers tokenize their own columns, so this module names them
as those trainers read them: ``prompt``, ``chosen``, ``rejected`` (DPO, ORPO, SimPO); ``prompt``,
``completion``, ``label`` (KTO); ``prompt`` and every other field of the document (GRPO, whose
reward functions get them as keyword arguments). A text prompt is written with the run's
``prompt_template``, as SFT's is, so a checkpoint answers a prompt the way it trained on it.
A chat (a list of {role, content}) keeps its messages for the tokenizer's chat template.
"""

from __future__ import annotations

import datetime
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from llm_magics.core.errors import DataError
from llm_magics.data.training_set import (
    Format,
    Selection,
    TrainingSet,
    bucket,
    check_collection,
    documents,
    held_out,
    render_prompt,
)

if TYPE_CHECKING:
    from llm_magics.config.data_keys import DataKeys

# method -> the configuration keys that name its fields, in the order of its columns
COLUMNS = {
    "dpo": ("prompt", "chosen", "rejected"),
    "orpo": ("prompt", "chosen", "rejected"),
    "simpo": ("prompt", "chosen", "rejected"),
    "kto": ("prompt", "completion", "label"),
    "grpo": ("prompt",),
}
_PLAIN = (str, int, float, bool, type(None), datetime.datetime)


def build(mongo_db: Any, keys: DataKeys, tokenizer: Any, transform: Callable[[dict], Any] | None = None) -> TrainingSet:
    """Reads the documents that ``keys`` select into the columns of ``keys.method``'s trainer."""
    columns = COLUMNS[keys.method]
    fields = tuple(getattr(keys, column) for column in columns)
    selection = Selection.of(keys)
    check_collection(mongo_db, selection)
    chat_template = tokenizer.chat_template
    fmt = Format(keys.method, fields, keys.prompt_template, chat_template)
    rows: dict[str, list[tuple[dict, float]]] = {"train": [], "valid": [], "unassigned": []}
    missing: dict[str, list[Any]] = {}
    seen = 0
    chats: bool | None = None  # whether the prompts are chats: the first one says, the others follow it
    for docs in documents(mongo_db, selection, fmt, transform, every_field=keys.method == "grpo"):
        for doc in docs:
            seen += 1
            absent = [name for name in fields if doc.get(name) is None]
            for name in absent:
                missing.setdefault(name, []).append(doc.get("_id"))
            if absent:
                continue
            fold = doc.get("_fold")
            if fold is not None and fold not in ("train", "valid"):
                raise DataError(f"_fold: must be 'train' or 'valid', got {fold!r} (document {doc.get('_id')})")
            row = _row(doc, keys.method, columns, fields, fmt)
            chat = isinstance(row["prompt"], list)
            if chats is not None and chat != chats:
                kinds = ("a chat", "text") if chats else ("text", "a chat")
                raise DataError(
                    f"{fields[0]}: the first prompt is {kinds[0]} and this one is {kinds[1]} "
                    f"(document {doc.get('_id')}) — give every prompt the same way"
                )
            chats = chat
            rows[fold or "unassigned"].append((row, bucket(doc, keys.seed)))
    _check_found(seen, missing, selection)
    # a checkpoint answers prompts as it trained on them: through the chat template only if chats
    fmt = Format(fmt.kind, fmt.fields, fmt.prompt_template, chat_template if chats else None)
    return _assemble(rows, keys, fmt, selection)


def _row(doc: dict, method: str, columns: tuple[str, ...], fields: tuple[str, ...], fmt: Format) -> dict[str, Any]:
    """One document as its trainer's row; a wrong type names the field and the document."""
    where = f"(document {doc.get('_id')})"
    prompt = doc[fields[0]]
    chat = isinstance(prompt, list)
    if chat:
        _check_chat(prompt, fields[0], where)
        if not fmt.chat_template:  # the tokenizer's, until the prompts are known to be chats
            raise DataError(
                f"{fields[0]}: a chat needs the tokenizer's chat template and this tokenizer has none — "
                "set one in tokenizer_kwargs (chat_template: ...) or give the prompt as text"
            )
    elif isinstance(prompt, str):
        prompt = render_prompt(fmt.prompt_template, prompt)
    else:
        raise DataError(f"{fields[0]}: must be text or a chat, got {type(prompt).__name__} {where}")
    row: dict[str, Any] = {"prompt": prompt}
    for column, name in zip(columns[1:], fields[1:], strict=True):
        value = doc[name]
        if column == "label":
            if not isinstance(value, bool):
                raise DataError(f"{name}: must be true or false, got {value!r} {where}")
        elif isinstance(value, list) and chat:
            _check_chat(value, name, where)
        elif not isinstance(value, str):
            raise DataError(f"{name}: must be text, got {type(value).__name__} {where}")
        elif chat:  # a chat's answer is the assistant's turn
            value = [{"role": "assistant", "content": value}]
        row[column] = value
    if method == "grpo":  # every other field reaches the reward functions
        row.update({name: _arrow_safe(value) for name, value in doc.items() if name not in (fields[0], "_id", "_fold")})
    return row


def _check_chat(chat: Any, name: str, where: str) -> None:
    if not all(isinstance(m, dict) and "role" in m and "content" in m for m in chat):
        raise DataError(f"{name}: a chat must be a list of {{role, content}} messages {where}")


def _arrow_safe(value: Any) -> Any:
    """A field as a dataset column holds it: plain values and containers as they are, anything
    else (an ObjectId, a Decimal128) as its text."""
    if isinstance(value, _PLAIN):
        return value
    if isinstance(value, list):
        return [_arrow_safe(item) for item in value]
    if isinstance(value, dict):
        return {str(key): _arrow_safe(item) for key, item in value.items()}
    return str(value)


def _check_found(seen: int, missing: dict[str, list[Any]], selection: Selection) -> None:
    where = f"collection '{selection.collection}'" + (f" with filter {selection.filter}" if selection.filter else "")
    if seen == 0:
        raise DataError(f"data: {where} has no documents" + (" that match" if selection.filter else ""))
    if missing:
        name, ids = max(missing.items(), key=lambda item: len(item[1]))
        raise DataError(
            f"{name}: missing in {len(ids)} of {seen} documents of {where} (first: document {ids[0]}) — "
            "set the key to the field that holds it, or filter those documents out"
        )


def _assemble(
    rows: dict[str, list[tuple[dict, float]]], keys: DataKeys, fmt: Format, selection: Selection
) -> TrainingSet:
    import datasets
    import pyarrow as pa

    unassigned = rows["unassigned"]
    fraction = held_out([b for _, b in unassigned], keys, marked_valid=len(rows["valid"]))
    train = [row for row, _ in rows["train"]] + [row for row, b in unassigned if b >= fraction]
    valid = [row for row, _ in rows["valid"]] + [row for row, b in unassigned if b < fraction]
    if not train:
        raise DataError(
            "data: no document is left for training — documents with _fold: valid only "
            "evaluate; lower valid_fraction or add _fold: train documents"
        )

    def dataset(items: list[dict]) -> Any:
        # a fingerprint given saves datasets from hashing the whole table
        return datasets.Dataset(pa.Table.from_pylist(items), fingerprint=uuid.uuid4().hex) if items else None

    counts = {"train_docs": len(train), "valid_docs": len(valid)}
    return TrainingSet(dataset(train), dataset(valid), fmt, selection, counts, example=train[0])
