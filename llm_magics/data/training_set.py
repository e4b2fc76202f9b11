"""Documents in a collection -> tokenized train / valid datasets.

Documents stream from the cursor in batches, are tokenized batch by batch and kept only as token
arrays (Arrow, int32), so the collection is never held twice in memory. Labels are built here:
-100 marks the tokens that are not trained (the prompt of a prompt/response pair, the non-assistant
turns of a chat), so the dry run can show what trains before anything runs.
"""

from __future__ import annotations

import hashlib
import math
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from llm_magics.core.errors import DataError, did_you_mean
from llm_magics.data.formats import as_messages

if TYPE_CHECKING:
    from llm_magics.config.data_keys import DataKeys

IGNORE = -100
_BATCH = 1000
_FOLDS = ("train", "valid")


@dataclass
class Selection:
    """Which documents train: a collection, a filter, a projection and a limit."""

    collection: str
    filter: dict[str, Any] = field(default_factory=dict)
    projection: dict[str, Any] | None = None
    limit: int | None = None

    @classmethod
    def of(cls, keys: DataKeys) -> Selection:
        if keys.select is not None:
            return cls(
                keys.select["collection"],
                dict(keys.select.get("filter") or {}),
                keys.select.get("projection"),
                keys.select.get("limit"),
            )
        name = keys.collection
        if not name:
            raise DataError("data: name the collection that holds the documents, e.g. data: docs")
        return cls(name)

    def to_dict(self) -> dict[str, Any]:
        return {
            "collection": self.collection,
            "filter": self.filter,
            "projection": self.projection,
            "limit": self.limit,
        }


@dataclass
class Format:
    """How a document becomes tokens, and which of them train."""

    kind: str  # "text", "prompt-response", "messages" or "classification"
    fields: tuple[str, ...]
    prompt_template: str | None = None
    chat_template: str | None = None

    @classmethod
    def of(cls, keys: DataKeys, tokenizer: Any) -> Format:
        if keys.task == "text-classification":
            assert keys.y is not None  # the configuration checked it
            return cls("classification", (keys.X, keys.y))
        if keys.messages:
            template = tokenizer.chat_template
            if not template:
                raise DataError(
                    "messages: the tokenizer has no chat template — set one in tokenizer_kwargs "
                    "(chat_template: ...) or use prompt and response fields"
                )
            return cls("messages", (keys.messages,), chat_template=template)
        if keys.prompt:
            assert keys.response is not None  # the configuration checked it
            prompts = tuple(keys.prompt) if isinstance(keys.prompt, list) else (keys.prompt,)
            return cls("prompt-response", (*prompts, keys.response), prompt_template=keys.prompt_template)
        return cls("text", (keys.X,))

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "fields": list(self.fields),
            "prompt_template": self.prompt_template,
            "chat_template": self.chat_template,
        }


@dataclass
class TrainingSet:
    """The tokenized datasets and what a user wants to know about them."""

    train: Any
    valid: Any | None
    format: Format
    selection: Selection
    counts: dict[str, int]
    example: dict[str, Any]  # the first training example: token ids and labels, or a method's row
    labels: list[str] = field(default_factory=list)


class _Split:
    """Token arrays of one split, built batch by batch."""

    def __init__(self) -> None:
        self.ids: list[Any] = []
        self.labels: list[Any] = []
        self.buckets: list[float] = []
        self.docs = 0

    def add(self, rows: list[tuple[list[int], Any, float]]) -> None:
        import pyarrow as pa

        if not rows:
            return
        ids, labels, buckets = zip(*rows, strict=True)
        self.ids.append(pa.array(ids, type=pa.list_(pa.int32())))
        label_type = pa.list_(pa.int32()) if isinstance(labels[0], list) else pa.string()
        self.labels.append(pa.array(labels, type=label_type))
        self.buckets.extend(buckets)
        self.docs += len(rows)

    def table(self, keep: Callable[[float], bool] | None = None) -> Any:
        import pyarrow as pa

        if not self.ids:
            return None
        table = pa.table({"input_ids": pa.chunked_array(self.ids), "labels": pa.chunked_array(self.labels)})
        if keep is not None:
            kept = [keep(b) for b in self.buckets]
            if not all(kept):  # filtering copies the whole table
                table = table.filter(pa.array(kept))
        return table


def build(mongo_db: Any, keys: DataKeys, tokenizer: Any, transform: Callable[[dict], Any] | None = None) -> TrainingSet:
    """Reads the documents of ``mongo_db`` (a pymongo-API database) that ``keys`` select and
    tokenizes them into train and valid datasets."""
    selection = Selection.of(keys)
    fmt = Format.of(keys, tokenizer)
    check_collection(mongo_db, selection)
    # the encoders cut at max_length here, so that the documents cut are counted (a classifier's
    # tokenizer cuts its own)
    limit = keys.max_length if fmt.kind != "classification" else None
    encode = encoder(fmt, tokenizer, None if limit else keys.max_length)
    splits = {name: _Split() for name in (*_FOLDS, "unassigned")}
    missing: dict[str, int] = {}
    example: dict[str, list[int]] = {}
    seen: set[int] = set()
    found = {"cut": 0, "duplicates": 0}  # documents longer than max_length; of the same content as one before
    for docs in documents(mongo_db, selection, fmt, transform):
        grouped: dict[str, list[dict]] = {name: [] for name in splits}
        for doc in docs:
            fold = doc.get("_fold")
            if fold is not None and fold not in _FOLDS:
                raise DataError(f"_fold: must be 'train' or 'valid', got {fold!r} (document {doc.get('_id')})")
            grouped[fold or "unassigned"].append(doc)
        for name, group in grouped.items():
            kept, values = row_values(group, fmt, missing)
            rows = encode(values) if values else []
            if limit:
                found["cut"] += sum(1 for ids, _ in rows if len(ids) > limit)
                rows = [(ids[:limit], labels[:limit]) for ids, labels in rows]
            for value in values:
                key = hash(repr(value))
                found["duplicates"] += key in seen
                seen.add(key)
            if rows and not example:
                example = {"input_ids": rows[0][0], "labels": rows[0][1]}
            splits[name].add(
                [(ids, labels, bucket(doc, keys.seed)) for (ids, labels), doc in zip(rows, kept, strict=True)]
            )
    _check_counts(splits, missing, selection, fmt)
    built = _assemble(splits, keys, fmt, selection, example)
    built.counts.update(found)
    return built


def check_collection(mongo_db: Any, selection: Selection) -> None:
    """A short error, with the collections there are, when the selected one is not there."""
    names = mongo_db.list_collection_names()
    if selection.collection not in names:
        user = [name for name in names if not name.startswith("_llm_magics.")]
        hint = did_you_mean(selection.collection, user) or (
            f"; collections: {', '.join(sorted(user))}" if user else "; the database has no collections"
        )
        raise DataError(f"data: no collection '{selection.collection}'{hint}")


def documents(
    mongo_db: Any, selection: Selection, fmt: Format, transform: Callable[[dict], Any] | None, every_field: bool = False
) -> Iterator[list[dict]]:
    """The selected documents in batches; only the format's fields unless ``every_field``."""
    projection = selection.projection
    if transform is None and projection is None and not every_field:
        projection = dict.fromkeys((*fmt.fields, "_fold"), 1)
    cursor = mongo_db[selection.collection].find(selection.filter, projection)
    if selection.limit:
        cursor = cursor.limit(selection.limit)
    batch = []
    for doc in cursor:
        batch.append(_transformed(doc, transform, fmt) if transform else doc)
        if len(batch) == _BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


def _transformed(doc: dict, transform: Callable[[dict], Any], fmt: Format) -> dict:
    result = transform(doc)
    kept = {"_id": doc.get("_id"), "_fold": doc.get("_fold")}
    if isinstance(result, str):
        return {**kept, fmt.fields[0]: result}
    if isinstance(result, dict):
        return {**kept, **result}
    raise DataError(f"transform: must return text or a mapping of fields, got {type(result).__name__}")


def row_values(docs: list[dict], fmt: Format, missing: dict[str, int]) -> tuple[list[dict], list[tuple]]:
    kept, rows = [], []
    optional = set(fmt.fields[1:-1]) if fmt.kind == "prompt-response" else set()  # alpaca's input may be absent
    for doc in docs:
        values = tuple(doc.get(name, "" if name in optional else None) for name in fmt.fields)
        if fmt.kind == "messages" and isinstance(values[0], list):
            values = (as_messages(values[0]),)  # ShareGPT's from / value turns train as they are
        absent = [name for name, value in zip(fmt.fields, values, strict=True) if value is None]
        for name in absent:
            missing[name] = missing.get(name, 0) + 1
        if not absent:
            _check_types(doc, fmt, values)
            kept.append(doc)
            rows.append(joined_prompt(values) if len(values) > 2 and fmt.kind == "prompt-response" else values)
    return kept, rows


def joined_prompt(values: tuple) -> tuple:
    """(prompt parts..., response) as (prompt, response): the parts that are not empty, a blank
    line between them."""
    return ("\n\n".join(part for part in values[:-1] if part), values[-1])


def _check_types(doc: dict, fmt: Format, values: tuple) -> None:
    if fmt.kind == "messages":
        chat = values[0]
        if not (isinstance(chat, list) and all(isinstance(m, dict) and "role" in m and "content" in m for m in chat)):
            raise DataError(
                f"{fmt.fields[0]}: must be a list of {{role, content}} messages (document {doc.get('_id')})"
            )
        return
    for name, value in zip(fmt.fields, values, strict=True):
        if fmt.kind == "classification" and name == fmt.fields[1]:
            if isinstance(value, bool | dict | list):
                raise DataError(
                    f"{name}: labels must be text or numbers, got {type(value).__name__} (document {doc.get('_id')})"
                )
        elif not isinstance(value, str):
            raise DataError(f"{name}: must be text, got {type(value).__name__} (document {doc.get('_id')})")


def bucket(doc: dict, seed: int) -> float:
    """Where a document falls in [0, 1): a hash of its id, the same for the same seed."""
    digest = hashlib.blake2b(f"{seed}:{doc.get('_id')}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def encoder(fmt: Format, tokenizer: Any, max_length: int | None) -> Callable[[list[tuple]], list[tuple]]:
    eos = tokenizer.eos_token_id

    def text(rows: list[tuple]) -> list[tuple]:
        out = []
        for ids in tokenizer([row[0] for row in rows], add_special_tokens=True)["input_ids"]:
            if eos is not None and (not ids or ids[-1] != eos):
                ids = [*ids, eos]  # so the model learns where a text ends
            out.append((ids[:max_length], ids[:max_length]))
        return out

    def prompt_response(rows: list[tuple]) -> list[tuple]:
        prompts = [render_prompt(fmt.prompt_template, row[0]) for row in rows]
        heads = tokenizer(prompts, add_special_tokens=True)["input_ids"]
        tails = tokenizer([row[1] for row in rows], add_special_tokens=False)["input_ids"]
        out = []
        for head, tail in zip(heads, tails, strict=True):
            head = head[:-1] if eos is not None and head and head[-1] == eos else head
            tail = [*tail, eos] if eos is not None else tail
            out.append(((head + tail)[:max_length], ([IGNORE] * len(head) + tail)[:max_length]))
        return out

    def messages(rows: list[tuple]) -> list[tuple]:
        out = []
        for (chat,) in rows:
            ids: list[int] = []
            labels: list[int] = []
            for piece, trained in chat_pieces(tokenizer, chat, fmt.chat_template):
                piece_ids = tokenizer(piece, add_special_tokens=False)["input_ids"]
                ids += piece_ids
                labels += piece_ids if trained else [IGNORE] * len(piece_ids)
            out.append((ids[:max_length], labels[:max_length]))
        return out

    def classification(rows: list[tuple]) -> list[tuple]:
        encoded = tokenizer([row[0] for row in rows], truncation=max_length is not None, max_length=max_length)[
            "input_ids"
        ]
        return [(ids, str(row[1])) for ids, row in zip(encoded, rows, strict=True)]

    return {"text": text, "prompt-response": prompt_response, "messages": messages, "classification": classification}[
        fmt.kind
    ]


def chat_pieces(tokenizer: Any, chat: list[dict], template: str | None) -> list[tuple[str, bool]]:
    """A chat rendered by its template as (text, trained) pieces: the assistant turns are trained.

    Each assistant turn is what rendering the chat through that turn adds to rendering it up to
    the turn's generation prompt, so any template works, with or without generation markers.
    """

    def render(messages: list[dict], prompt: bool = False) -> str:
        return tokenizer.apply_chat_template(
            messages, chat_template=template, tokenize=False, add_generation_prompt=prompt
        )

    pieces, done = [], ""
    for i, message in enumerate(chat):
        if message.get("role") != "assistant":
            continue
        before, through = render(chat[:i], prompt=True), render(chat[: i + 1])
        if not (before.startswith(done) and through.startswith(before)):
            return [(render(chat), True)]  # a template that rewrites earlier turns: train on all of it
        pieces += [(before[len(done) :], False), (through[len(before) :], True)]
        done = through
    pieces.append((render(chat)[len(done) :], False))
    return [(text, trained) for text, trained in pieces if text]


def render_prompt(template: str | None, prompt: str) -> str:
    """Puts a prompt into its template. Plain replacement: a template is text, not code."""
    return template.replace("{prompt}", prompt) if template else prompt


def _check_counts(splits: dict[str, _Split], missing: dict[str, int], selection: Selection, fmt: Format) -> None:
    total = sum(split.docs for split in splits.values())
    seen = total + max(missing.values(), default=0)
    where = f"collection '{selection.collection}'" + (f" with filter {selection.filter}" if selection.filter else "")
    if seen == 0:
        raise DataError(f"data: {where} has no documents" + (" that match" if selection.filter else ""))
    if missing:
        name, count = max(missing.items(), key=lambda item: item[1])
        field_name = {"text": "X", "classification": "X / y"}.get(fmt.kind, name)
        raise DataError(
            f"{name}: missing in {count} of {seen} documents of {where} — "
            f"set {field_name} to the field that holds it, or filter those documents out"
        )


def _assemble(
    splits: dict[str, _Split], keys: DataKeys, fmt: Format, selection: Selection, example: dict
) -> TrainingSet:
    import datasets

    unassigned = splits["unassigned"]
    fraction = held_out(unassigned.buckets, keys, marked_valid=splits["valid"].docs)
    tables = {
        "train": _concat(splits["train"].table(), unassigned.table(lambda b: b >= fraction)),
        "valid": _concat(splits["valid"].table(), unassigned.table(lambda b: b < fraction)),
    }
    labels = _label_names(tables) if fmt.kind == "classification" else []
    if labels:
        tables = {name: _label_ids(table, labels) for name, table in tables.items()}
    train, valid = (
        # a fingerprint given saves datasets from hashing the whole table (a copy of it in memory)
        datasets.Dataset(t, fingerprint=uuid.uuid4().hex) if t is not None and t.num_rows else None
        for t in (tables["train"], tables["valid"])
    )
    if train is None:
        raise DataError(
            "data: no document is left for training — documents with _fold: valid only "
            "evaluate; lower valid_fraction or add _fold: train documents"
        )
    counts = _counts(train, valid, fmt)
    if fmt.kind != "classification" and counts["trained_tokens"] == 0:
        raise DataError(
            "data: no token would be trained — every label is masked (prompts fill max_length, "
            "or no assistant turns); raise max_length or check the prompt/response fields"
        )
    return TrainingSet(train, valid, fmt, selection, counts, example, labels)


def held_out(buckets: list[float], keys: DataKeys, marked_valid: int) -> float:
    """The bucket below which a document without ``_fold`` is held out for evaluation: exactly the
    share asked (at least one document, and one left to train on), chosen by a hash of each
    document's id, so the same documents for the same data and seed."""
    fraction = keys.valid_fraction
    if fraction is None:
        fraction = 0.1 if keys.evaluate and marked_valid == 0 else 0.0
    if fraction and buckets:
        count = len(buckets)
        held = min(count - 1, max(1, round(count * fraction)))
        fraction = math.nextafter(sorted(buckets)[held - 1], 1.0) if held else 0.0
    return fraction


def _concat(*tables: Any) -> Any:
    import pyarrow as pa

    present = [t for t in tables if t is not None and t.num_rows]
    return pa.concat_tables(present) if present else None


def _label_names(tables: dict[str, Any]) -> list[str]:
    names = set()
    for table in tables.values():
        if table is not None:
            names.update(table.column("labels").to_pylist())
    return sorted(names)


def _label_ids(table: Any, labels: list[str]) -> Any:
    import pyarrow as pa

    if table is None:
        return None
    index = {label: i for i, label in enumerate(labels)}
    ids = pa.array([index[label] for label in table.column("labels").to_pylist()], type=pa.int64())
    return table.set_column(table.schema.get_field_index("labels"), "labels", ids)


def _counts(train: Any, valid: Any, fmt: Format) -> dict[str, int]:
    import pyarrow.compute as pc

    def tokens(ds: Any) -> int:
        return int(pc.sum(pc.list_value_length(ds.data.column("input_ids"))).as_py() or 0) if ds else 0

    def trained(ds: Any) -> int:
        if ds is None:
            return 0
        if fmt.kind == "classification":
            return ds.num_rows
        flat = pc.list_flatten(ds.data.column("labels"))
        return int(pc.sum(pc.not_equal(flat, IGNORE)).as_py() or 0)

    return {
        "train_docs": train.num_rows,
        "valid_docs": valid.num_rows if valid else 0,
        "train_tokens": tokens(train),
        "trained_tokens": trained(train),
        "valid_tokens": tokens(valid),
    }
