"""Checkpoint references, parsed in one place: what ``NAME@REF``, ``--resume REF``,
``checkpoint=REF`` and ``checkpoint://NAME/REF`` name.

A reference is data: the selected checkpoint (else the latest), the latest, the best, a step (the
most recent run's checkpoint at that step) or ``RUN:STEP``. The store resolves it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from llm_magics.core.errors import ConfigError

CHECKPOINT_URI = "checkpoint://"
RefKind = Literal["default", "latest", "best", "step", "unknown"]


@dataclass(frozen=True)
class CheckpointRef:
    """Which checkpoint of a model; ``text`` is how the user wrote it, for messages."""

    kind: RefKind
    text: str = ""
    step: int | None = None
    run: str | None = None

    def __str__(self) -> str:
        return self.text


DEFAULT = CheckpointRef("default")
LATEST = CheckpointRef("latest", "latest")


def parse_ref(ref: CheckpointRef | str | int | None) -> CheckpointRef:
    """None or '' -> the default; 'latest', 'best'; 200 or '200' or '@200' -> a step; 'RUN:200'.

    Anything else is kept as an unknown reference: resolving it names the steps that exist.
    """
    if isinstance(ref, CheckpointRef):
        return ref
    if ref is None:
        return DEFAULT
    if isinstance(ref, int) and not isinstance(ref, bool):
        return CheckpointRef("step", str(ref), step=ref)
    text = str(ref).removeprefix("@")
    if not text:
        return DEFAULT
    if text == "latest":
        return LATEST
    if text == "best":
        return CheckpointRef("best", text)
    run, _, step = text.rpartition(":")
    if step.isdigit() and (not run or ":" not in run):
        return CheckpointRef("step", text, step=int(step), run=run or None)
    return CheckpointRef("unknown", text)


def parse_target(target: str) -> tuple[str, CheckpointRef]:
    """'NAME', 'NAME@STEP', 'NAME@best', 'NAME@latest' or 'NAME@RUN:STEP' -> (name, reference)."""
    name, _, ref = target.partition("@")
    if not name:
        raise ConfigError(f"'{target}': name the model, e.g. my-model@best")
    return name, parse_ref(ref)


def is_checkpoint_uri(value: str) -> bool:
    return value.startswith(CHECKPOINT_URI)


def parse_checkpoint_uri(uri: str) -> tuple[str, CheckpointRef]:
    """'checkpoint://NAME/STEP' (or any reference after the slash; none: the default) -> (name, reference)."""
    model, _, ref = uri.removeprefix(CHECKPOINT_URI).partition("/")
    return model, parse_ref(ref)
