"""The data report (SPEC §13): what a collection holds and what training will see of it.

Each finding is a count with up to five example ``_id``s: empty or missing values, exact and near
duplicates, chats with empty turns, no assistant turn, turns that do not alternate or a system turn
that is not first, and documents longer than ``max_length``. With a tokenizer it also gives the
token lengths (a histogram, the share truncated) and, per format, the first documents with their
trained tokens marked (the label mask) and the share of tokens trained.
"""

from __future__ import annotations

import itertools
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from llm_magics.data.formats import Detected, as_messages, detect
from llm_magics.data.ingest import HASH, content_hash
from llm_magics.data.training_set import (
    IGNORE,
    Format,
    Selection,
    check_collection,
    documents,
    encoder,
    row_values,
)

if TYPE_CHECKING:
    from llm_magics.config.data_keys import DataKeys

EXAMPLES = 5
PREVIEWS = 3
_WORD = re.compile(r"[^\w]+")


@dataclass
class Finding:
    what: str
    count: int
    ids: list[str] = field(default_factory=list)

    def add(self, doc_id: Any) -> None:
        self.count += 1
        if len(self.ids) < EXAMPLES:
            self.ids.append(str(doc_id))


@dataclass
class DataReport:
    """What a collection holds: its count, fields, format, findings and (with a tokenizer) lengths."""

    collection: str
    count: int
    fields: dict[str, dict[str, Any]]  # name -> {present, types, empty}
    detected: Detected | None
    findings: list[Finding]
    lengths: list[int] = field(default_factory=list)
    max_length: int | None = None
    trained_share: float | None = None
    previews: list[list[tuple[str, bool]]] = field(default_factory=list)  # (text, trained) pieces

    def finding(self, what: str) -> Finding | None:
        return next((f for f in self.findings if f.what == what), None)

    @property
    def truncated(self) -> int:
        return sum(1 for n in self.lengths if self.max_length is not None and n > self.max_length)

    def to_frame(self) -> Any:
        """The findings as a pandas DataFrame: what, how many, example ids."""
        import pandas as pd

        rows = [{"finding": f.what, "count": f.count, "examples": f.ids} for f in self.findings if f.count]
        return pd.DataFrame(rows, columns=["finding", "count", "examples"])

    def warnings(self) -> list[str]:
        """The findings as the warnings at the start of a run."""
        return [f"{f.what}: {f.count} document(s), e.g. {', '.join(f.ids)}" for f in self.findings if f.count]

    def __repr__(self) -> str:
        lines = [f"{self.collection}: {self.count:,} documents" + (f" ({self.detected.name})" if self.detected else "")]
        lines += [f"  {name}: {info['present']:,} present, {info['empty']:,} empty, {info['types']}" for name, info
                  in self.fields.items()]  # fmt: skip
        lines += [f"  {line}" for line in self.warnings()] or ["  no problems found"]
        if self.detected is not None:
            lines.append("  train on it with:\n    " + self.detected.cell().replace("\n", "\n    "))
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        from llm_magics.data.report_html import report_html

        return report_html(self)


def data_report(
    mongo_db: Any,
    collection: str,
    *,
    keys: DataKeys | None = None,
    tokenizer: Any = None,
    max_length: int | None = None,
    filter: dict[str, Any] | None = None,
) -> DataReport:
    """Reads ``collection`` once and reports on it; ``keys``: the fields training reads (default:
    those of the format detected); ``tokenizer``: for the token lengths and the label mask."""
    selection = Selection(collection, dict(filter or {}))
    check_collection(mongo_db, selection)
    fields: dict[str, dict[str, Any]] = defaultdict(lambda: {"present": 0, "empty": 0, "types": Counter()})
    findings = {name: Finding(name, 0) for name in _FINDINGS}
    seen: dict[str, Any] = {}
    near: dict[str, Any] = {}
    docs_for_lengths: list[dict[str, Any]] = []
    sample: list[dict[str, Any]] = []
    count = 0
    fmt = Format("examples", ())
    for batch in documents(mongo_db, selection, fmt, None, every_field=True):
        for doc in batch:
            count += 1
            if len(sample) < 200:
                sample.append(doc)
            _fields(doc, fields)
            _duplicates(doc, seen, near, findings)
            _chat_problems(doc, findings)
            if tokenizer is not None:
                docs_for_lengths.append(doc)
    detected = detect(sample)
    report = DataReport(
        collection,
        count,
        {k: {**v, "types": dict(v["types"])} for k, v in fields.items()},
        detected,
        list(findings.values()),
        max_length=max_length,
    )
    chosen = keys if keys is not None else _keys_of(collection, detected, max_length)
    if tokenizer is not None and chosen is not None:
        _tokens(report, docs_for_lengths, chosen, tokenizer, max_length, findings["longer than max_length"])
    return report


_FINDINGS = (
    "exact duplicates",
    "near duplicates",
    "empty values",
    "chat: empty turn",
    "chat: no assistant turn",
    "chat: turns do not alternate",
    "chat: system turn not first",
    "longer than max_length",
)


def _fields(doc: dict[str, Any], fields: dict[str, dict[str, Any]]) -> None:
    for name, value in doc.items():
        if name in ("_id", HASH):
            continue
        info = fields[name]
        info["present"] += 1
        info["types"][type(value).__name__] += 1
        if value is None or (
            isinstance(value, str | list | dict) and not (value.strip() if isinstance(value, str) else value)
        ):
            info["empty"] += 1


def _duplicates(doc: dict[str, Any], seen: dict[str, Any], near: dict[str, Any], findings: dict[str, Finding]) -> None:
    content = {k: v for k, v in doc.items() if k not in ("_id", HASH, "_fold")}
    exact = content_hash(content)
    if exact in seen:
        findings["exact duplicates"].add(doc.get("_id"))
        return
    seen[exact] = doc.get("_id")
    normal = _WORD.sub(" ", " ".join(str(v) for v in content.values()).casefold()).strip()
    if normal in near:
        findings["near duplicates"].add(doc.get("_id"))
    else:
        near[normal] = doc.get("_id")
    if any(isinstance(v, str) and not v.strip() for v in content.values()) or any(v is None for v in content.values()):
        findings["empty values"].add(doc.get("_id"))


def _chat_problems(doc: dict[str, Any], findings: dict[str, Finding]) -> None:
    for value in doc.values():
        if not (isinstance(value, list) and value and all(isinstance(t, dict) for t in value)):
            continue
        chat = as_messages(value)
        if not all("role" in t and "content" in t for t in chat):
            continue
        roles = [t["role"] for t in chat]
        if any(not str(t.get("content") or "").strip() for t in chat):
            findings["chat: empty turn"].add(doc.get("_id"))
        if "assistant" not in roles:
            findings["chat: no assistant turn"].add(doc.get("_id"))
        talk = [r for r in roles if r in ("user", "assistant")]
        if any(a == b for a, b in itertools.pairwise(talk)):
            findings["chat: turns do not alternate"].add(doc.get("_id"))
        if "system" in roles[1:]:
            findings["chat: system turn not first"].add(doc.get("_id"))


def _keys_of(collection: str, detected: Detected | None, max_length: int | None) -> DataKeys | None:
    """The data keys of the detected format (SFT's formats: a preference or KTO format is
    reported by its fields, not tokenized)."""
    from llm_magics.config.data_keys import DataKeys

    if detected is None or detected.keys.get("method") or detected.keys.get("task"):
        return None
    given = {k: v for k, v in detected.keys.items() if k in ("prompt", "response", "messages", "X")}
    return DataKeys(collection=collection, max_length=max_length, **given)


def _tokens(
    report: DataReport,
    docs: list[dict[str, Any]],
    keys: DataKeys,
    tokenizer: Any,
    max_length: int | None,
    long: Finding,
) -> None:
    """Token lengths of each document as training writes it, the truncated ones, the label mask of
    the first few and the share of tokens trained (within max_length)."""
    fmt = Format.of(keys, tokenizer)
    encode = encoder(fmt, tokenizer, None)
    missing: dict[str, int] = {}
    trained = total = 0
    for start in range(0, len(docs), 1000):
        kept, rows = row_values(docs[start : start + 1000], fmt, missing)
        for doc, (ids, labels) in zip(kept, encode(rows) if rows else [], strict=True):
            report.lengths.append(len(ids))
            if max_length is not None and len(ids) > max_length:
                long.add(doc.get("_id"))
            cut = labels[:max_length] if max_length else labels
            trained += sum(1 for label in cut if label != IGNORE)
            total += len(cut)
            if len(report.previews) < PREVIEWS:
                report.previews.append(_pieces(tokenizer, ids, labels))
    report.trained_share = trained / total if total else None


def _pieces(tokenizer: Any, ids: list[int], labels: list[int]) -> list[tuple[str, bool]]:
    """A document's tokens as runs of (text, trained)."""
    runs: list[tuple[list[int], bool]] = []
    for token, label in zip(ids, labels, strict=True):
        trained = label != IGNORE
        if runs and runs[-1][1] == trained:
            runs[-1][0].append(token)
        else:
            runs.append(([token], trained))
    return [(tokenizer.decode(tokens), trained) for tokens, trained in runs]
