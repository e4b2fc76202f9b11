"""Models, runs, metrics and checkpoints, kept in the package's own collections.

The store takes any database object with the pymongo API (pymongo, mongomock, the embedded
store) and never touches the user's collections. Flags that can be derived (latest, best,
selected, a checkpoint's run number) are computed when read, so they cannot go stale. The latest
checkpoint is the newest of the latest run; the best, the best over all of a model's runs.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from llm_magics.config.refs import LATEST, CheckpointRef, parse_ref
from llm_magics.core.errors import CLOSE_ID, ModelError, RunError, did_you_mean
from llm_magics.core.processes import owner_alive, process_owner, same_host
from llm_magics.core.secrets import redact_text
from llm_magics.store import evaluations, unsaved, uploads
from llm_magics.store.artifacts import remove_local
from llm_magics.store.run_dirs import inside, own_dir, regular_file

PREFIX = "_llm_magics."
# what a model record held before each run kept its own base (read from stores of older versions)
_LEGACY_BASE = {
    "model": "base_model",
    "bits": "bits",
    "task": "task",
    "model_kwargs": "model_kwargs",
    "tokenizer_kwargs": "tokenizer_kwargs",
    "labels": "labels",
    "adapter_id": "adapter_id",
}
_REPLAYABLE = ("update_run", "add_metrics", "add_completions", "add_checkpoint", "add_evaluations")
ACTIVE = ("running", "starting", "stopping")
FINAL = ("completed", "failed", "stopped", "interrupted", "pruned")  # pruned: a sweep's scheduler stopped it
# judged dead from another host by its silence alone: it may write again, and then it runs again
UNCERTAIN = {"status": "interrupted", "reaped": "silent"}
BEST_METRIC = "eval_loss"  # the best checkpoint is the one with the lowest
REWARD_METRIC = "reward"  # else (a reward method without evaluation), the one with the highest
# A run on another host whose owner has not written for this long is taken for dead; a run whose
# process beats (a detached one: every ``heartbeat_every`` seconds), after this many missed beats.
_SILENT_LIMIT = dt.timedelta(minutes=10)
_MISSED_BEATS = 6
TAIL = 100  # the newest metric rows a run record carries, so that following it reads one small record


def now() -> dt.datetime:
    """Current UTC time at millisecond precision (what BSON keeps), without tzinfo."""
    stamp = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    return stamp.replace(microsecond=stamp.microsecond // 1000 * 1000)


class Store:
    """The package's records in one database (``mongo_db`` has the pymongo API)."""

    def __init__(self, mongo_db: Any):
        self.mongo_db = mongo_db
        self.models = mongo_db[PREFIX + "models"]
        self.runs = mongo_db[PREFIX + "runs"]
        self.metrics = mongo_db[PREFIX + "metrics"]
        self.checkpoints = mongo_db[PREFIX + "checkpoints"]
        self.sweeps = mongo_db[PREFIX + "sweeps"]
        self.exports = mongo_db[PREFIX + "exports"]  # GGUF exports and what their check found
        self.completions = mongo_db[PREFIX + "completions"]  # GRPO's sampled completions, per logging step
        self.evaluations = mongo_db[PREFIX + "evaluations"]  # generation evaluations' scored examples

    def ensure_indexes(self) -> None:
        self.runs.create_index([("model", 1), ("started", 1)])
        self.metrics.create_index([("run", 1), ("step", 1)])
        self.checkpoints.create_index([("model", 1), ("step", 1)])

    # --- models ---

    def save_model(self, name: str, **fields: Any) -> None:
        stamp = now()
        self.models.update_one(
            {"_id": name},
            {"$set": {**fields, "updated": stamp}, "$setOnInsert": {"created": stamp}},
            upsert=True,
        )

    def save_defaults(self, name: str, base: dict[str, Any]) -> None:
        """Records ``base`` as the model's defaults for its next run. The model record holds the
        name, the selected checkpoint and these defaults; each run keeps the base it trained on."""
        self.adopt_bases(name)  # before the old fields go: runs recorded without a base keep theirs
        self.save_model(name, defaults=base)
        self.models.update_one({"_id": name}, {"$unset": dict.fromkeys(_LEGACY_BASE.values(), "")})

    def adopt_bases(self, name: str) -> None:
        """Runs recorded before each run kept its base take their model record's base, once."""
        legacy = legacy_base(self.models.find_one({"_id": name}) or {})
        if legacy is not None:
            self.runs.update_many({"model": name, "base": {"$exists": False}}, {"$set": {"base": legacy}})

    def run_base(self, run_id: str) -> dict[str, Any]:
        """The base a run trained on: model, bits, kwargs, labels, task, starting adapter, prompt format."""
        found = self.runs.find_one({"_id": run_id}, {"base": 1, "model": 1})
        if found is None:
            raise RunError(f"no run with id '{run_id}'")
        if found.get("base") is None:
            self.adopt_bases(found["model"])
            found = self.runs.find_one({"_id": run_id}, {"base": 1, "model": 1}) or {}
        if found.get("base") is None:
            raise ModelError(f"run {run_id} of model '{found.get('model')}' has no recorded base model")
        return found["base"]

    def model(self, name: str) -> dict[str, Any]:
        found = self.models.find_one({"_id": name})
        if found is None:
            names = self.model_names()
            hint = did_you_mean(name, names) or (
                f"; models: {', '.join(names)}" if names else "; no model is trained yet"
            )
            raise ModelError(f"no model named '{name}'{hint}")
        return found

    def has_model(self, name: str) -> bool:
        return self.models.find_one({"_id": name}, {"_id": 1}) is not None

    def model_names(self) -> list[str]:
        return sorted(doc["_id"] for doc in self.models.find({}, {"_id": 1}))

    def select_checkpoint(self, name: str, checkpoint_id: str | None) -> None:
        self.models.update_one({"_id": name}, {"$set": {"selected": checkpoint_id, "updated": now()}})

    # --- runs ---

    def add_run(self, run: dict[str, Any], owner: dict[str, Any] | None = None) -> None:
        """Records a run; ``owner`` is the process that trains it (default: this one)."""
        self.ensure_indexes()  # on the first record, so that reading never writes
        self.runs.insert_one({**run, "owner": owner or process_owner(), "heartbeat": now()})

    def update_run(self, run_id: str, tail: list[dict[str, Any]] | None = None, **fields: Any) -> None:
        """Sets fields of a run (and its heartbeat); ``tail``: metric rows to add to the newest
        ``TAIL`` that the record carries for those who follow it.

        The run's own process writes through here. A run judged dead (``reap``) that writes
        again was alive after all: it is running again. A write that sets a status never
        replaces a final one: a run stopped stays stopped, whatever a late write says."""
        self.runs.update_one(
            {"_id": run_id, "status": "interrupted", "reaped": {"$exists": True}},
            {"$set": {"status": "running"}, "$unset": dict.fromkeys(("reaped", "ended", "duration", "error"), "")},
        )
        update: dict[str, Any] = {"$set": {**fields, "heartbeat": now()}}
        if tail:
            update["$push"] = {"tail": {"$each": tail, "$slice": -TAIL}}
        query: dict[str, Any] = {"_id": run_id}
        if "status" in fields:
            query["status"] = {"$nin": list(FINAL)}
        self.runs.update_one(query, update)

    def request_stop(self, run_id: str) -> bool:
        """Asks a run to stop, through its record (its process reads it); False if it has ended.
        A run judged dead from another host only by its silence may be asked too."""
        done = self.runs.update_one(
            {"_id": run_id, "$or": [{"status": {"$in": list(ACTIVE)}}, UNCERTAIN]},
            {"$set": {"stop_requested": now()}},
        )
        return done.matched_count == 1

    def run(self, run_id: str) -> dict[str, Any]:
        self.reap()
        found = self.runs.find_one({"_id": run_id})
        if found is None:
            known = [doc["_id"] for doc in self.runs.find({}, {"_id": 1})]
            raise RunError(f"no run with id '{run_id}'{did_you_mean(run_id, known, CLOSE_ID)}")
        return found

    def list_runs(self, model: str | None = None) -> list[dict[str, Any]]:
        self.reap()
        query = {} if model is None else {"model": model}
        return sorted(self.runs.find(query), key=lambda run: _moment(run.get("started")))

    def reap(self) -> list[str]:
        """Writes what a run kept on disk while the database was away; then marks runs whose
        owning process is gone as interrupted. Returns the ids of those."""
        for run in list(self.runs.find({"status": {"$in": list(ACTIVE)}})):  # replaying writes runs
            self._replay(run)
        dead = [run for run in self.runs.find({"status": {"$in": list(ACTIVE)}}) if not alive(run)]
        for run in dead:
            ended = max(_moment(run.get("heartbeat")), _moment(run.get("started")))  # its last sign of life
            here = same_host(run.get("owner"))
            self.runs.update_one(
                {"_id": run["_id"], "status": {"$in": list(ACTIVE)}},
                {
                    "$set": {
                        "status": "interrupted",
                        "ended": ended,
                        "duration": round((ended - _moment(run.get("started"))).total_seconds(), 3),
                        # on this host the process is gone; from another, it has only been silent
                        "reaped": "gone" if here else "silent",
                        "error": "the process that ran it ended without finishing it"
                        if here
                        else "its process, on another host, stopped writing (if it writes again, it runs again)",
                    }
                },
            )
        self._reap_sweeps()
        return [run["_id"] for run in dead]

    def _reap_sweeps(self) -> None:
        """A running sweep whose trials have all ended and whose process is gone ended with it."""
        for sweep in list(self.sweeps.find({"status": "running"})):
            trials = sweep.get("trials") if isinstance(sweep.get("trials"), list) else []
            if self.runs.count_documents({"_id": {"$in": trials}, "status": {"$in": list(ACTIVE)}}) or alive(sweep):
                continue
            self.sweeps.update_one(
                {"_id": sweep["_id"], "status": "running"},
                {"$set": {"status": "interrupted", "ended": now(), "error": "the process that ran it ended"}},
            )

    def _replay(self, run: dict[str, Any]) -> None:
        """A run that ended while the database was unreachable kept its last records in
        ``unsaved-records.jsonl``; they are written now, once (every one can be repeated safely).
        A damaged file, or a write that cannot be repeated (its files are gone), is set aside and
        named in a warning: it never keeps anyone from opening the store.

        Only a file this user's process wrote is read: in the run's own directory (``run_dirs``),
        for a run this host owned, and each write only for that run and its own files."""
        directory = own_dir(run) if same_host(run.get("owner")) else None
        if directory is None or not regular_file(kept := directory / unsaved.UNSAVED):
            return
        from pymongo.errors import ConnectionFailure

        writes, damage = unsaved.read(kept)
        problems = [damage] if damage else []
        for write in writes:
            refused = _unreplayable(write, run["_id"], directory)
            if refused:
                problems.append(refused)
                continue
            try:
                getattr(self, write["method"])(*write["args"], **write["kwargs"])
            except (ConnectionFailure, sqlite3.OperationalError):
                raise  # the database is away again: the file stays for the next look
            except Exception as error:
                problems.append(f"{write['method']} failed ({redact_text(error)})")
        if not problems:
            kept.rename(kept.with_name(f"{unsaved.UNSAVED}.written"))
            return
        aside = unsaved.set_aside(kept, "damaged")
        warnings.warn(
            f"run {run['_id']}: records it kept while the database was away could not all be written "
            f"({'; '.join(problems)}); what could be was written, the file is now {aside}",
            RuntimeWarning,
            stacklevel=2,
        )
        # the file is written when a run ends: if its end was in what could not be read, say so
        self.runs.update_one(
            {"_id": run["_id"], "status": {"$in": list(ACTIVE)}},
            {
                "$set": {
                    "status": "failed",
                    "ended": run.get("heartbeat") or run["started"],
                    "error": f"it ended while the database was away, and its last records are damaged ({aside})",
                }
            },
        )

    # --- metrics ---

    def add_metrics(self, rows: Iterable[dict[str, Any]]) -> None:
        """Adds logged steps; a row already written (a retried write) is not written twice."""
        from pymongo.errors import BulkWriteError

        rows = [{"_id": f"{row['run']}:{row['step']}", **row} for row in rows]
        if not rows:
            return
        try:
            self.metrics.insert_many(rows, ordered=False)
        except BulkWriteError as error:
            if any(e["code"] != 11000 for e in error.details["writeErrors"]):
                raise

    def run_metrics(self, run_id: str) -> list[dict[str, Any]]:
        return sorted(self.metrics.find({"run": run_id}, {"_id": 0}), key=lambda row: _number(row.get("step")))

    def add_completions(self, records: Iterable[dict[str, Any]]) -> None:
        """Logging steps' sampled completions and their rewards, each ``{run, step, rows}``; a step
        already written (a retried write) is not written twice."""
        from pymongo.errors import BulkWriteError

        records = [{"_id": f"{record['run']}:{record['step']}", **record} for record in records]
        if not records:
            return
        try:
            self.completions.insert_many(records, ordered=False)
        except BulkWriteError as error:
            if any(e["code"] != 11000 for e in error.details["writeErrors"]):
                raise

    def run_completions(self, run_id: str, newest: int | None = None, after: int = -1) -> list[dict[str, Any]]:
        """The recorded completions of a run (those of steps after ``after``; of the ``newest`` steps
        only, if given), each with its step, oldest first."""
        found = self.completions.find({"run": run_id, "step": {"$gt": after}})
        records = sorted(found, key=lambda r: _number(r.get("step")))[-newest if newest else 0 :]
        rows = [(record.get("step"), row) for record in records for row in record.get("rows") or []]
        return [{"step": step, **row} for step, row in rows if isinstance(row, dict)]

    def add_evaluations(self, records: Iterable[dict[str, Any]], scores: dict[str, Any] | None = None) -> None:
        """Scored examples (see ``evaluations``); ``scores``: ``{checkpoint, key, evaluation}`` to set
        on the checkpoint's record once its examples are in."""
        evaluations.insert_examples(self.evaluations, records)
        if scores is not None:
            evaluations.set_scores(self.checkpoints, scores["checkpoint"], scores["key"], scores["evaluation"])

    def checkpoint_evaluations(self, checkpoint: str, key: str | None = None) -> list[dict[str, Any]]:
        return evaluations.examples(self.evaluations, checkpoint, key)

    # --- checkpoints ---

    def add_checkpoint(self, record: dict[str, Any], upload: str | None = None) -> None:
        """Records a checkpoint whose files are complete (once, however often it is retried).

        ``upload``: 'weights' stores what predict needs in GridFS first, 'all' the training state
        too; only files inside the run's own directory are read. The record switches to the new
        upload before an earlier one of the same checkpoint (a retried write) is removed, so it
        never points at files that are gone.
        """
        if upload is not None:
            directory = inside(record.get("path"), self.run_dir(record.get("run")))
            if directory is None:
                raise RunError(
                    f"checkpoint {str(record.get('_id'))[:80]!r}: its files are not in its run's own directory "
                    "on this machine, so they were not uploaded"
                )
            stored = uploads.upload(self.mongo_db, record, directory, with_training_state=upload == "all")
            record = {**record, "gridfs": stored}
        self.checkpoints.replace_one({"_id": record["_id"]}, record, upsert=True)
        if upload is not None:
            uploads.sweep(self.mongo_db, record["_id"], keep=set(record["gridfs"].values()))

    def remove_checkpoint(self, record: dict[str, Any]) -> None:
        """Deletes a checkpoint: its record first, then its files, so no record outlives its files.
        Local files go only from inside the run's own directory on this machine."""
        self.checkpoints.delete_one({"_id": record["_id"]})
        self.evaluations.delete_many({"checkpoint": record["_id"]})
        if record.get("gridfs"):
            uploads.sweep(self.mongo_db, record["_id"], keep=set())
        remove_local(record, self.run_dir(record.get("run")))

    def run_dir(self, run_id: Any) -> Path | None:
        """The run's own directory on this machine (see ``run_dirs``), or None."""
        return own_dir(self.runs.find_one({"_id": run_id})) if isinstance(run_id, str) else None

    def local_checkpoint(self, record: dict[str, Any], cache: Path, *, for_resume: bool = False) -> Path:
        """A verified local directory of the checkpoint's files: its run's own directory, else a
        download from GridFS into ``cache``."""
        return uploads.local_copy(self.mongo_db, cache, record, self.run_dir(record.get("run")), for_resume=for_resume)

    def list_checkpoints(self, model: str) -> list[dict[str, Any]]:
        """The model's checkpoints run by run (in the order the runs started), each run's by
        creation; each with its ``run_number`` (1 for the model's first run) and the latest (the
        latest run's newest), best (over every run) and selected flags."""
        runs = self._run_order(model)
        records = sorted(self.checkpoints.find({"model": model}), key=lambda c: _newest(c, runs))
        found = self.models.find_one({"_id": model}) or {}
        by = found.get("best_by")
        best = best_of(records, by if isinstance(by, dict) else None)
        for record in records:
            record["run_number"] = _run_of(record, runs)[1]
            record["latest"] = record is records[-1]
            record["best"] = record is best
            record["selected"] = record["_id"] == found.get("selected")
        return records

    def _run_order(self, model: str) -> _Runs:
        """Each run of the model: when it started, and its number in that order (from 1)."""
        found = [run for run in self.runs.find({"model": model}, {"started": 1}) if isinstance(run["_id"], str)]
        runs = sorted(found, key=lambda run: _moment(run.get("started")))
        return {run["_id"]: (_moment(run.get("started")), number) for number, run in enumerate(runs, 1)}

    def checkpoint(self, model: str, ref: CheckpointRef | str | int | None = None) -> dict[str, Any]:
        """Resolves a checkpoint reference (see ``refs``): the default (selected, else latest),
        'latest', 'best', a step (the most recent run's checkpoint at that step) or 'RUN:STEP'."""
        ref = parse_ref(ref)
        if ref.kind == "default":
            selected = (self.models.find_one({"_id": model}, {"selected": 1}) or {}).get("selected")
            found = self.checkpoints.find_one({"_id": selected, "model": model}) if selected else None
            if found is not None:
                return found
            ref = LATEST
        if ref.kind == "best":
            found = best_of(list(self.checkpoints.find({"model": model})), self.best_by(model))
            if found is None:
                self._exists(model)
                raise ModelError(
                    f"model '{model}' has no best checkpoint: no evaluation ran (set eval_strategy) and no reward "
                    "was logged"
                )
            return found
        query: dict[str, Any] = {"model": model}
        if ref.kind == "step":
            query["step"] = ref.step
            if ref.run is not None:
                query["run"] = ref.run
        runs = self._run_order(model)  # the latest: of the latest run; a step: the latest run's at it
        found = self.checkpoints.find(query) if ref.kind != "unknown" else []
        newest = max(found, key=lambda c: _newest(c, runs), default=None)
        if newest is None:
            self._exists(model)
            steps = ", ".join(str(step) for step in sorted(self.checkpoints.distinct("step", {"model": model})))
            raise ModelError(
                f"model '{model}' has no checkpoint '{ref}'; it has steps {steps} (or RUN:STEP, latest, best)"
            )
        return newest

    def best_by(self, model: str) -> dict[str, Any] | None:
        """The metric ``@best`` follows for ``model`` (``{metric, greater}``), or None: eval_loss."""
        by = (self.models.find_one({"_id": model}, {"best_by": 1}) or {}).get("best_by")
        return by if isinstance(by, dict) else None

    def _exists(self, model: str) -> None:
        """Raises the clearest error for a model without the checkpoint asked for."""
        if self.checkpoints.find_one({"model": model}, {"_id": 1}) is None:
            self.model(model)
            raise ModelError(f"model '{model}' has no checkpoints yet — train it first")


def _unreplayable(write: dict[str, Any], run_id: str, directory: Path) -> str | None:
    """Why a kept write may not be replayed for run ``run_id``, or None: a file in one run's
    directory writes that run's records only, and names files in that directory only."""
    method, args, kwargs = write["method"], write["args"], write["kwargs"]
    if method not in _REPLAYABLE or not isinstance(args, list) or not isinstance(kwargs, dict):
        return f"{str(method)[:40]!r} is not a write a run keeps"
    first = args[0] if args else None
    if method == "update_run":
        ours = first == run_id
    elif method in ("add_metrics", "add_completions", "add_evaluations"):
        ours = isinstance(first, list) and all(isinstance(row, dict) and row.get("run") == run_id for row in first)
        ours = ours and not kwargs  # a run's examples only: its checkpoints' scores are on their records
    else:
        ours = isinstance(first, dict) and first.get("run") == run_id and inside(first.get("path"), directory)
    return None if ours else f"a {method} that is not run {run_id}'s own"


def alive(run: dict[str, Any]) -> bool:
    """Whether the process training an active run may still be there: on this host, whether it
    exists; elsewhere, whether it wrote within a few of its heartbeats (or ten minutes)."""
    every = _number(run.get("heartbeat_every"))
    beating = every > 0 and run.get("status") != "starting"  # a starting process may wait for a cluster
    silence = dt.timedelta(seconds=every * _MISSED_BEATS) if beating else _SILENT_LIMIT
    return owner_alive(run.get("owner", {}), run.get("heartbeat"), now(), silence)


def legacy_base(model: dict[str, Any]) -> dict[str, Any] | None:
    """The base that a model record of an older version held at its top level, or None."""
    if "base_model" not in model:
        return None
    return {field: model.get(old) for field, old in _LEGACY_BASE.items()}


_Runs = dict[Any, tuple[dt.datetime, int | None]]  # a model's runs: when each started, its number


def _created(record: dict[str, Any]) -> tuple[dt.datetime, float]:
    return _moment(record.get("created")), _number(record.get("step"))


def _run_of(record: dict[str, Any], runs: _Runs) -> tuple[dt.datetime, int | None]:
    """When a checkpoint's run started and its number (a run not recorded: the earliest, no number)."""
    run = record.get("run")
    return runs.get(run, (dt.datetime.min, None)) if isinstance(run, str) else (dt.datetime.min, None)


def _newest(record: dict[str, Any], runs: _Runs) -> tuple:
    """A checkpoint's place, oldest first: its run's start, then its own creation."""
    return (_run_of(record, runs)[0], *_created(record))


# Records come from a database others may write to: orderings take what is not a date or a number
# for the earliest, rather than failing on it.
def _moment(value: Any) -> dt.datetime:
    return value if isinstance(value, dt.datetime) else dt.datetime.min


def _number(value: Any) -> float:
    return value if isinstance(value, int | float) and not isinstance(value, bool) else float("-inf")


def best_of(records: list[dict[str, Any]], by: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """The best checkpoint: by the model's chosen metric (``by``: {metric, greater}, from
    ``metric_for_best_model``) where checkpoints have it; else the lowest evaluation loss; where
    none was evaluated, the highest mean reward (a GRPO run); else None. The earliest of equals."""

    def scored(metric: str) -> list[dict[str, Any]]:
        kept = [c for c in records if _number((c.get("metrics") or {}).get(metric)) > float("-inf")]
        return sorted(kept, key=_created)

    if by is not None and isinstance(by.get("metric"), str) and (chosen := scored(by["metric"])):
        pick = max if by.get("greater") else min
        return pick(chosen, key=lambda c: c["metrics"][by["metric"]])
    if evaluated := scored(BEST_METRIC):
        return min(evaluated, key=lambda c: c["metrics"][BEST_METRIC])
    return max(scored(REWARD_METRIC), key=lambda c: c["metrics"][REWARD_METRIC], default=None)
