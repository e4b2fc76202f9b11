"""A run as the user names it, wherever a run is taken: its id, or a model's name (that model's
latest active run; when none is active, its latest)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from llm_magics.core.errors import CLOSE_ID, RunError, did_you_mean
from llm_magics.store.records import ACTIVE

if TYPE_CHECKING:
    from llm_magics.store.records import Store


@dataclass(frozen=True)
class Target:
    """The run a word named; ``model``: the model's name it was named by (None: by its id)."""

    run_id: str
    model: str | None = None

    @property
    def note(self) -> str | None:
        """One line saying which run a model's name meant (None when the id was given)."""
        return None if self.model is None else f"{self.model}: run {self.run_id}"


def resolve_run(store: Store, target: str, *, ended: bool = True) -> Target:
    """The run ``target`` names: a run id, or a model's name: its latest active run, else (with
    ``ended``) its latest run. Without ``ended``, a name whose runs have all ended is an error
    (stopping one makes no sense)."""
    if store.runs.find_one({"_id": target}, {"_id": 1}) is not None:
        return Target(target)
    runs = store.list_runs(target)  # oldest first; looking reaps runs whose process died
    if not runs:
        if store.has_model(target):
            raise RunError(f"model '{target}' has no runs yet")
        raise RunError(_unknown(store, target))
    active = [run for run in runs if run.get("status") in ACTIVE]
    if active:
        return Target(active[-1]["_id"], target)
    latest = runs[-1]
    if not ended and latest.get("reaped") != "silent":  # silent: on another host, it may be alive
        raise RunError(f"model '{target}' has no active run: its latest, {latest['_id']}, is {latest.get('status')}")
    return Target(latest["_id"], target)


def _unknown(store: Store, target: str) -> str:
    ids = [doc["_id"] for doc in store.runs.find({}, {"_id": 1})]
    hint = did_you_mean(target, ids, CLOSE_ID) or did_you_mean(target, store.model_names())
    if not hint:
        hint = "; %llm_runs lists both" if ids else "; no run has started yet"
    return f"'{target}' is neither a run id nor a model name{hint}"
