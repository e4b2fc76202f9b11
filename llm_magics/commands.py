"""What the magics do, as plain functions that work without IPython."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from llm_magics.config.refs import CheckpointRef, parse_ref, parse_target
from llm_magics.core.errors import ConfigError, RunError
from llm_magics.runs.run import Run, active_run
from llm_magics.runs.target import resolve_run
from llm_magics.training.launch import Placement, Plan, plan_run, start_run
from llm_magics.widgets.display import RUN_COLUMNS, Comparison, DryRun, Table, run_row

if TYPE_CHECKING:
    from llm_magics.api.database import Database
    from llm_magics.store.database import DatabaseHandle
    from llm_magics.widgets.checkpoints import CheckpointBrowser


def finetune(
    db: DatabaseHandle,
    name: str,
    mapping: dict[str, Any],
    *,
    backend: str | None = None,
    ray_address: str | None = None,
    detach: bool = False,
    settings: Placement | None = None,
    dry_run: bool = False,
    resume: CheckpointRef | None = None,
    on_start: Callable[[Run], None] | None = None,
) -> Any:
    """Trains model ``name`` with the configuration ``mapping`` (a cell body), or only checks it.

    ``backend`` / ``ray_address`` are what the flags ask; the configuration, then ``settings``,
    decide what they leave open."""
    from llm_magics.config.configuration import LLMTrainingConfiguration

    settings = settings or Placement()
    if "sweep" in mapping:
        return _sweep(db, name, mapping, ray_address=ray_address, settings=settings, dry_run=dry_run, detach=detach)
    config = LLMTrainingConfiguration.from_dict(mapping)
    checked = plan_run(
        name, config, db, backend=backend, ray_address=ray_address, settings=settings, resume=resume, detach=detach
    )
    if dry_run:
        return dry_run_report(checked)
    return start_run(checked, on_start=on_start)


def _sweep(
    db: DatabaseHandle,
    name: str,
    mapping: dict[str, Any],
    *,
    ray_address: str | None,
    settings: Placement,
    dry_run: bool,
    detach: bool,
) -> Any:
    """A configuration with a ``sweep:`` block: its trials on Ray Tune, or (dry run) their list."""
    from llm_magics.training.sweeps import plan_sweep, start_sweep

    checked = plan_sweep(name, mapping, db, ray_address=ray_address, settings=settings)
    if dry_run:
        from llm_magics.models.estimate import estimate
        from llm_magics.widgets.display import SweepDryRun

        largest = max(
            (
                estimate(plan.config, plan.base, max(len(ids) for ids in plan.data.train["input_ids"]))
                for plan in checked.plans
            ),
            key=lambda each: each.total_gib,
        )
        return SweepDryRun(checked.name, checked.values, checked.sweep.to_dict(), largest)
    from llm_magics.widgets.sweep import SweepView

    return start_sweep(checked, on_start=lambda sweep: SweepView(sweep).show(), detach=detach)


def dry_run_report(checked: Plan) -> DryRun:
    from llm_magics.models.estimate import estimate
    from llm_magics.models.loader import load_tokenizer

    data, method = checked.data, checked.config.method
    tokenizer = load_tokenizer(checked.base.path, checked.base.tokenizer_kwargs)
    if method == "sft":
        longest = max(len(ids) for ids in data.train["input_ids"])
    else:
        from llm_magics.widgets.method_example import longest as longest_of

        completion = int(checked.config.method_args.get("max_completion_length") or 512)
        longest = longest_of(method, data.train, tokenizer, completion)
    report = None
    if method == "sft" and checked.config.task == "causal-lm":  # the selection, as %llm_data reports it
        from llm_magics.data.report import data_report

        selection = data.selection
        report = data_report(
            checked.db.mongo_db,
            selection.collection,
            keys=checked.config.data_keys(),
            tokenizer=tokenizer,
            max_length=checked.config.max_length,
            filter=selection.filter,
        )
    return DryRun(checked, estimate(checked.config, checked.base, longest), tokenizer, report)


def ingest(db: DatabaseHandle, source: Any, collection: str, *, progress: Any = None, **options: Any) -> str:
    """``%llm_ingest SOURCE COLLECTION``: the documents written, and the keys that train on them."""
    from llm_magics.data.formats import detect
    from llm_magics.data.ingest import ingest as write

    done = write(db.mongo_db, source, collection, progress=progress, **options)
    found = detect(list(db[collection].find({}, limit=200)))
    keys = f"\n{found.name}: train on it with\n  " + found.cell().replace("\n", "\n  ") if found else ""
    return repr(done) + keys


def export(
    db: DatabaseHandle,
    target: str,
    directory: str,
    *,
    trust_remote_code: bool = False,
    gguf: str | None = None,
    **gguf_options: Any,
) -> Any:
    """``%llm_export NAME@STEP DIR [--gguf QUANT]``: the checkpoint merged into its base, saved in
    DIR as a transformers model, or as a checked GGUF with its Modelfile (``gguf_options``: those
    of ``gguf.export_gguf``)."""
    from llm_magics.api.database import load_llm

    if gguf is not None:
        from llm_magics.export.gguf import quantization

        quantization(gguf)  # a bad name fails before any model loads
    name, ref = parse_target(target)
    model = load_llm(db, name, ref, trust_remote_code=trust_remote_code)
    return model.export(directory, gguf=gguf, **gguf_options) if gguf is not None else model.export(directory)


def predict(
    db: DatabaseHandle,
    target: str,
    prompts: list[str],
    *,
    compare: list[str] | None = None,
    base: bool = False,
    trust_remote_code: bool = False,
    **generate_kwargs: Any,
) -> str | list[str] | Comparison:
    """Generates with a model's checkpoint; with ``compare``, with several, side by side.
    ``trust_remote_code`` allows a model whose record asks to run its own code."""
    from llm_magics.api.database import load_llm

    if not prompts:
        raise ConfigError('give a prompt: %llm_predict NAME "prompt" (or the cell body of %%llm_predict NAME)')
    name, ref = parse_target(target)
    if compare:
        columns: dict[str, list[str]] = {}
        for each in compare:
            ref = parse_ref(each)
            llm = load_llm(db, name, ref, trust_remote_code=trust_remote_code)
            columns[str(ref)] = list(llm.predict(prompts, **generate_kwargs))
        return Comparison(name, prompts, columns)
    llm = load_llm(db, name, None if base else ref, trust_remote_code=trust_remote_code)
    answers = llm.predict(prompts, **({"adapter": None} if base else {}), **generate_kwargs)
    return answers[0] if len(prompts) == 1 else answers


def evaluate(
    db: DatabaseHandle,
    target: str,
    *,
    every: bool = False,
    settings: dict[str, Any] | None = None,
    harness: list[str] | None = None,
    tasks_dir: str | None = None,
    progress: Any = None,
    trust_remote_code: bool = False,
) -> Any:
    """``%llm_eval NAME[@REF] [--all]``: stored checkpoints scored by what they answer on their
    run's held-out documents (``settings``: those of ``eval_generate``), or by lm-evaluation-harness
    tasks (``harness``, from ``tasks_dir``); returns the scores."""
    from llm_magics.eval.on_demand import Evaluation, evaluate_checkpoints

    name, ref = parse_target(target)
    if every and ref.kind != "default":
        raise ConfigError(f"--all scores every checkpoint of {name}: give the name alone, not {target}")
    if harness:
        from llm_magics.eval.harness import run_harness

        limit = (settings or {}).get("limit")
        results = run_harness(
            db, name, ref, harness, every=every, tasks_dir=tasks_dir, limit=limit, progress=progress,
            trust_remote_code=trust_remote_code,
        )  # fmt: skip
    else:
        results = evaluate_checkpoints(
            db, name, ref, every=every, settings=settings, progress=progress, trust_remote_code=trust_remote_code
        )
    return Evaluation(name, results)


def checkpoints(
    db: DatabaseHandle, name: str | None = None, refresh_interval: float = 1.0, *, trust_remote_code: bool = False
) -> CheckpointBrowser:
    """The checkpoint browser of model ``name`` (default: the first one), bound to ``db``."""
    from llm_magics.widgets.checkpoints import CheckpointBrowser

    return CheckpointBrowser(db, name, refresh_interval, trust_remote_code=trust_remote_code)


def runs_table(db: DatabaseHandle, model: str | None = None) -> Table:
    """Every run (or a model's): name, id, status (stalled when its step stopped moving), backend,
    steps, last loss, ETA of an active run, started, duration."""
    if model is not None:
        db.store.model(model)  # an unknown name is an error with the close ones, not an empty table
    rows = []
    for run in db.store.list_runs(model):
        live = active_run(run["_id"])
        if live is not None and live.state is not None and run.get("status") in ("starting", "running"):
            # what this kernel's view shows: the record is written every few seconds
            state = live.state
            run = {**run, "step": state.step, "total_steps": state.total_steps or run.get("total_steps")}
            run["last_loss"] = state.loss if state.loss is not None else run.get("last_loss")
        rows.append([text for text, _ in run_row(run)])
    return Table(RUN_COLUMNS, rows, title=f"runs in {db.uri}", css_class="llm-runs")


def stop(db: Database, target: str, *, say: Callable[[str], None] | None = None) -> Run:
    """Asks a run to save a checkpoint and stop: one training in this kernel, or a detached one
    (through the store, from any kernel). ``target``: a run id, or a model name (its active run);
    ``say`` hears which run a name meant."""
    return db.run(_run_id(db, target, say, ended=False)).stop()


def attach(db: Database, target: str, *, say: Callable[[str], None] | None = None) -> Any:
    """The run ``target`` (a run id, or a model name: its latest active run, else its latest), to
    show: live while it trains anywhere, its summary once it has ended; or the sweep ``target``,
    with its trials. ``say`` hears which run a name meant."""
    if db.store.sweeps.find_one({"_id": target}, {"_id": 1}) is not None:
        from llm_magics.training.sweeps import attached_sweep

        return attached_sweep(db, target)
    return db.run(_run_id(db, target, say))


def _run_id(db: DatabaseHandle, target: str, say: Callable[[str], None] | None, *, ended: bool = True) -> str:
    """The run ``target`` names (``runs/target``); ``say`` hears which one a model's name meant."""
    found = resolve_run(db.store, target, ended=ended)
    if found.note is not None and say is not None:
        say(found.note)
    return found.run_id


def log_lines(
    db: DatabaseHandle, target: str, lines: int = 50, *, say: Callable[[str], None] | None = None
) -> list[str]:
    """The last ``lines`` lines of a run's log (secrets masked): a line per logged step,
    checkpoint, evaluation and warning, and a detached run's output. ``target``: a run id, a
    model name (its latest active run, else its latest) or a sweep id (the sweep's log: Ray's
    messages, a detached sweep's output); ``say`` hears which run a name meant."""
    from llm_magics.runs import logs

    sweep = db.store.sweeps.find_one({"_id": target})
    if sweep is not None:
        path = logs.of_run(sweep)
        if path is None or not path.is_file():
            raise RunError(f"sweep {target} has no log in a directory of this user's on this machine")
        return logs.tail(path, lines)
    run_id = _run_id(db, target, say)
    record = db.store.run(run_id)
    if record.get("ray_job"):
        from llm_magics.core.secrets import redact_text
        from llm_magics.training.ray_job import job_logs

        printed = job_logs(db.store.run_dir(run_id))
        if printed is None:
            raise RunError(f"run {run_id} was submitted to its Ray cluster from another machine: read its log there")
        return [redact_text(line) for line in printed.splitlines()[-lines:]]
    if not record.get("log"):
        raise RunError(
            f"run {run_id} has no log: it trained on the {record.get('backend')} backend before runs "
            "other than detached ones kept one, and its output went to the cell that started it"
        )
    path = logs.of_run(record)
    if path is None or not path.is_file():
        raise RunError(
            f"run {run_id}: its log is not in a run directory of this user's on this machine "
            "(it trained elsewhere, or the record names another file)"
        )
    return logs.tail(path, lines)
