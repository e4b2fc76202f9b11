"""The IPython magics: parse the line and the cell, call a plain function, show the result.

Loading this module imports nothing heavy: torch, transformers, peft, trl, ray and pymongo wait
until a magic needs them.
"""

from __future__ import annotations

import argparse
import functools
import keyword
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments
from traitlets import Bool, Enum, Float, Unicode, observe

from llm_magics.core.errors import ConfigError, LLMMagicsError
from llm_magics.core.magic_line import flag, option, parse_line, words
from llm_magics.core.secrets import redact_text

if TYPE_CHECKING:
    from llm_magics.api.database import Database
    from llm_magics.runs.run import Run


def _magic(method: Callable) -> Callable:
    """Shows ``--help``; turns a user error into a short UsageError (no traceback) unless
    ``%config LLMMagics.short_errors = False``."""

    @functools.wraps(method)
    def wrapper(self: LLMMagics, line: str, cell: str | None = None) -> Any:
        if {"-h", "--help"} & set(words(line)):  # a quoted prompt may say "-h"
            print(method.__doc__)
            return None
        try:
            return method(self, line) if cell is None else method(self, line, cell)
        except LLMMagicsError as error:
            if self.short_errors:
                raise UsageError(str(error)) from None
            raise

    return wrapper


@magics_class
class LLMMagics(Magics):
    """Fine-tune LLMs from the notebook. Settings: ``%config LLMMagics.<name> = value``."""

    database = Unicode(None, allow_none=True, help="Database URI; None: the embedded store in .llm_magics/").tag(
        config=True
    )
    default_model = Unicode(None, allow_none=True, help="Base model for cells without model:").tag(config=True)
    backend = Enum(
        ("kernel", "thread", "process", "ray", "ray-job"),
        "kernel",
        help="Where cells train by default ('process', 'ray-job': detached, they outlive the kernel)",
    ).tag(config=True)
    ray_address = Unicode(None, allow_none=True, help="Ray cluster for --ray; None: a local Ray").tag(config=True)
    artifacts = Enum(
        ("local", "db"), "local", help="Where cells keep checkpoint files: 'local' disk or 'db' (GridFS)"
    ).tag(config=True)
    update_interval = Float(0.5, help="Seconds between live view updates").tag(config=True)
    short_errors = Bool(True, help="Show user errors as one line, without a traceback").tag(config=True)
    trust_remote_code = Bool(
        False, help="Load models whose records ask to run their own code (trained with trust_remote_code)"
    ).tag(config=True)

    def __init__(self, shell: Any = None, **kwargs: Any):
        self._db: Database | None = None
        self._uri: str | None = None  # the URI with its password, kept out of the trait
        super().__init__(shell=shell, **kwargs)
        self._uri = self._uri or self.database

    @observe("database")
    def _database_changed(self, change: dict[str, Any]) -> None:
        self._db = None
        new = change["new"]
        if new is not None and redact_text(new) != new:
            self._uri = new
            self.database = redact_text(new)  # what %config shows: the password stays in memory only
        elif new is None or new != redact_text(self._uri or ""):
            self._uri = new

    @property
    def db(self) -> Database:
        """The current database, connected on first use."""
        if self._db is None:
            from llm_magics.api.database import connect

            self._db = connect(self._uri)
        return self._db

    # --- %llm_db ---

    @line_magic
    @_magic
    @magic_arguments()
    @argument("uri", nargs="?", help="mongodb://..., mongomock://NAME or embedded://DIR; none: show the current one")
    def llm_db(self, line: str) -> Database:
        """Shows or sets the database; returns its handle (``db = %llm_db``)."""
        args = parse_line(self.llm_db, line)
        if args.uri:
            from llm_magics.api.database import connect

            db = connect(args.uri)  # a failure leaves the current database in place
            self.database = args.uri
            self._db = db
        return self.db

    # --- %%llm_finetune ---

    @line_cell_magic
    @_magic
    @magic_arguments()
    @argument("name", help="the model's name (its checkpoints are listed under it)")
    @option("--config", metavar="FILE", help="a YAML file with the configuration (the cell body adds to it)")
    @flag("--async", dest="background", help="return at once and train in a background thread")
    @flag("--detach", help="train in a process of its own (with --ray: a Ray Job) that outlives the kernel")
    @flag("--ray", help="train on Ray (never blocks)")
    @option("--ray-address", metavar="ADDR", help="the Ray cluster, e.g. ray://host:10001")
    @option(
        "--resume", nargs="?", const="latest", metavar="STEP", help="continue from the latest or a given checkpoint"
    )
    @flag("--dry-run", help="check everything and show what would train; train nothing")
    @option("-o", "--output", metavar="VAR", help="store the Run handle in this variable")
    def llm_finetune(self, line: str, cell: str | None = None) -> Any:
        """Fine-tunes model NAME; the cell body is the YAML training configuration.

        {{ name }} in the body takes a value from the notebook. The live view shows progress; the
        run's checkpoints are recorded in the database.
        """
        from llm_magics import commands
        from llm_magics.config.refs import parse_ref
        from llm_magics.training.launch import Placement

        args = parse_line(self.llm_finetune, line)
        if args.output and not (args.output.isidentifier() and not keyword.iskeyword(args.output)):
            raise ConfigError(f"-o {args.output!r}: give a Python variable name, e.g. -o run")
        mapping = self._configuration(args.config, cell)
        if self.artifacts != "local":
            mapping.setdefault("artifacts", self.artifacts)
        result = commands.finetune(
            self.db,
            args.name,
            mapping,
            **flagged_placement(args),
            settings=Placement(self.backend, self.ray_address),
            dry_run=args.dry_run,
            resume=parse_ref(args.resume) if args.resume else None,
            on_start=self._show_view,
        )
        if args.output:
            self.shell.user_ns[args.output] = result
        if args.dry_run or cell is None:
            return result
        return None

    def _configuration(self, path: str | None, cell: str | None) -> dict[str, Any]:
        from llm_magics.config.cell import CELL, Source, parse_cell

        namespace = self.shell.user_ns
        mapping: dict[str, Any] = {}
        if path:
            file = Path(path).expanduser()
            if not file.is_file():
                raise ConfigError(f"--config: no file '{path}'")
            mapping.update(parse_cell(file.read_text(), namespace, Source(path)))
        if cell is not None:
            mapping.update(parse_cell(cell, namespace, CELL))
        elif not path:
            raise ConfigError(
                "the configuration is missing: put YAML lines such as 'model: HuggingFaceTB/SmolLM2-135M' and "
                "'data: docs' in the cell under %%llm_finetune NAME, or give --config FILE"
            )
        if "model" not in mapping and "model_name_or_path" not in mapping and self.default_model:
            mapping["model"] = self.default_model
        return mapping

    def _show_view(self, run: Run) -> None:
        from llm_magics.widgets.progress import TrainingView, stoppable

        view = TrainingView(run, self.update_interval, stoppable=stoppable(run))
        run.shown_in = self.shell.execution_count
        view.show()

    # --- %llm_predict ---

    @line_cell_magic
    @_magic
    @magic_arguments()
    @argument("target", help="NAME, NAME@STEP, NAME@best, NAME@latest or NAME@RUN:STEP")
    @argument("prompt", nargs="*", help="the prompt(s), each in quotes; or the cell body")
    @option("--max-new-tokens", type=int, metavar="N", help="tokens to generate (default 64)")
    @option("--temperature", type=float, metavar="T")
    @option("--top-p", type=float, metavar="P")
    @flag("--do-sample", help="sample instead of greedy decoding")
    @flag("--base", help="the base model alone, without any adapter")
    @flag("--trust-remote-code", help="allow a model that runs its own code (one trained with trust_remote_code)")
    @option("--compare", nargs="+", metavar="@REF", help="answer with several checkpoints side by side")
    def llm_predict(self, line: str, cell: str | None = None) -> Any:
        """Generates with a model's selected (else latest) or given checkpoint; returns the text."""
        from llm_magics import commands

        args = parse_line(self.llm_predict, line)
        prompts = [cell.strip("\n")] if cell is not None else _line_prompts(line, args.prompt)
        options = {
            key: value
            for key, value in (
                ("max_new_tokens", args.max_new_tokens),
                ("temperature", args.temperature),
                ("top_p", args.top_p),
            )
            if value is not None
        }
        if args.do_sample:
            options["do_sample"] = True
        trust = args.trust_remote_code or self.trust_remote_code
        return commands.predict(
            self.db, args.target, prompts, compare=args.compare, base=args.base, trust_remote_code=trust, **options
        )

    # --- %llm_export ---

    @line_magic
    @_magic
    @magic_arguments()
    @argument("target", help="NAME, NAME@STEP, NAME@best, NAME@latest or NAME@RUN:STEP")
    @argument("directory", help="a new directory for the standalone model")
    @argument(
        "--gguf",
        nargs="?",
        const="q8_0",
        metavar="QUANT",
        help="write a GGUF for llama.cpp / Ollama instead (f16, q8_0 (default), q4_k_m, ...), with a Modelfile, "
        "checked against the merged model",
    )
    def llm_export(self, line: str) -> Any:
        """Merges a checkpoint into its base and saves a model plain transformers loads, or a GGUF."""
        from llm_magics import commands

        args = parse_line(self.llm_export, line)
        trust = self.trust_remote_code
        if args.gguf is not None:
            from llm_magics.export.gguf import quantization, stages

            labels = stages(quantization(args.gguf))  # a bad name fails before any model loads
            count = iter(range(1, len(labels) + 1))
            return commands.export(
                self.db,
                args.target,
                args.directory,
                trust_remote_code=trust,
                gguf=args.gguf,
                progress=lambda stage: print(f"[{next(count)}/{len(labels)}] {stage}…", flush=True),
            )
        directory = commands.export(self.db, args.target, args.directory, trust_remote_code=trust)
        print(f"saved {args.target} as a standalone model in {directory}")
        return directory

    # --- %llm_eval ---

    @line_magic
    @_magic
    @magic_arguments()
    @argument("target", help="NAME (its selected, else latest checkpoint), NAME@STEP, NAME@best, ...")
    @flag("--all", help="every checkpoint of the model")
    @option(
        "--metrics",
        nargs="+",
        metavar="METRIC",
        help="built-ins (exact_match rouge_l bleu chrf contains length) "
        "or functions of the notebook by name (default: exact_match rouge_l)",
    )
    @option("--on", metavar="COLLECTION", help="score on these documents instead of the run's held-out split")
    @option("--limit", type=int, metavar="N", help="documents at most (default 64)")
    @option("--max-new-tokens", type=int, metavar="N", help="tokens per answer (default 64)")
    @option("--batch-size", type=int, metavar="N", help="answers generated at once (default 8)")
    @option("--reference", metavar="FIELD", help="the field holding each expected answer")
    @option("--harness", nargs="+", metavar="TASK", help="lm-evaluation-harness tasks instead (the harness extra)")
    @option("--tasks-dir", metavar="DIR", help="the harness tasks' YAML files (default: lm-eval's own tasks)")
    def llm_eval(self, line: str) -> Any:
        """Scores stored checkpoints by what they answer; scores already recorded with the same
        settings are reused, and an interrupted evaluation resumes."""
        from IPython.display import display

        from llm_magics import commands
        from llm_magics.widgets.evaluation import EvalProgress

        args = parse_line(self.llm_eval, line)
        settings: dict[str, Any] = {"metrics": [self._metric(m) for m in args.metrics or ["exact_match", "rouge_l"]]}
        for key in ("limit", "max_new_tokens", "batch_size", "reference"):
            if getattr(args, key) is not None:
                settings[key] = getattr(args, key)
        if args.on is not None:
            settings["select"] = args.on
        progress = EvalProgress()
        display(progress)
        trust = self.trust_remote_code
        return commands.evaluate(
            self.db,
            args.target,
            every=args.all,
            settings=settings,
            harness=args.harness,
            tasks_dir=args.tasks_dir,
            progress=progress,
            trust_remote_code=trust,
        )

    def _metric(self, name: str) -> Any:
        """A metric named on the line: a built-in, or a function of the notebook (looked up, not run)."""
        found = (self.shell.user_ns if self.shell is not None else {}).get(name)
        return found if callable(found) and not isinstance(found, type) else name

    # --- %llm_ingest, %llm_data ---

    @line_magic
    @_magic
    @magic_arguments()
    @argument(
        "source",
        help="a .jsonl/.json/.csv/.tsv/.parquet file or a glob of them, a folder of .txt/.md, a "
        "saved dataset, or {{ df }} (a DataFrame or a list of dicts of the notebook)",
    )
    @argument("collection", help="the collection to write into")
    @flag("--replace", help="empty the collection first")
    @flag("--dedupe", help="skip documents whose content the collection already has")
    @flag("--skip-bad", help="leave malformed rows out (counted) instead of writing nothing")
    def llm_ingest(self, line: str) -> Any:
        """Writes documents from files, a saved dataset or the notebook into a collection, in batches."""
        import re

        from IPython.display import display

        from llm_magics import commands
        from llm_magics.widgets.ingest import IngestProgress

        line = re.sub(r"\{\{?\s*([A-Za-z_]\w*)\s*\}?\}", r"{{\1}}", line)  # one word for the parser
        args = parse_line(self.llm_ingest, line)
        progress = IngestProgress()
        display(progress)
        options = {"replace": args.replace, "dedupe": args.dedupe, "skip_bad": args.skip_bad}
        said = commands.ingest(
            self.db, self._namespace_value(args.source), args.collection, progress=progress, **options
        )
        progress.finish()
        print(said)

    def _namespace_value(self, word: str) -> Any:
        """``{{ name }}`` (IPython may have turned it into ``{ name }``): the notebook's object by
        that name (looked up, not evaluated); anything else: the word itself (a path)."""
        import re

        found = re.fullmatch(r"\{\{?\s*([A-Za-z_]\w*)\s*\}?\}", word.strip())
        if found is None:
            return word
        namespace = self.shell.user_ns if self.shell is not None else {}
        if found.group(1) not in namespace:
            raise ConfigError(f"{{{{ {found.group(1)} }}}}: no such name in the notebook")
        return namespace[found.group(1)]

    @line_magic
    @_magic
    @magic_arguments()
    @argument("collection", help="the collection to report on")
    @option("--model", metavar="M", help="a model path or a stored model: its tokenizer measures the tokens")
    @option("--max-length", type=int, metavar="N", help="the length training cuts documents at")
    def llm_data(self, line: str) -> Any:
        """The data report: fields, duplicates, chat problems, token lengths and what trains."""
        from llm_magics.api.database import data_report

        args = parse_line(self.llm_data, line)
        model = args.model or self.default_model
        return data_report(self.db, args.collection, model=model, max_length=args.max_length)

    # --- %llm_checkpoints ---

    @line_magic
    @_magic
    @magic_arguments()
    @argument("name", nargs="?", help="the model (default: the first one; the browser has a chooser)")
    def llm_checkpoints(self, line: str) -> Any:
        """The checkpoint browser: use, try, compare and delete a model's checkpoints."""
        from llm_magics import commands

        name = parse_line(self.llm_checkpoints, line).name
        return commands.checkpoints(self.db, name, trust_remote_code=self.trust_remote_code)

    # --- %llm_runs, %llm_stop ---

    @line_magic
    @_magic
    @magic_arguments()
    @argument("name", nargs="?", help="only this model's runs")
    def llm_runs(self, line: str) -> Any:
        """A table of runs: name, id, status, backend, steps, last loss, started, duration."""
        from llm_magics import commands

        return commands.runs_table(self.db, parse_line(self.llm_runs, line).name)

    @line_magic
    @_magic
    @magic_arguments()
    @argument("target", help="a run id, or a model name: its active run (see %%llm_runs)")
    def llm_stop(self, line: str) -> None:
        """Stops a run gracefully: it saves a checkpoint, then ends as 'stopped'."""
        from llm_magics import commands

        run = commands.stop(self.db, parse_line(self.llm_stop, line).target, say=print)
        print(f"run {run.id}: stopping after the current step; a final checkpoint is being saved")

    @line_magic
    @_magic
    @magic_arguments()
    @argument("target", help="a run id, a model name (its latest active run, else its latest) or a sweep id")
    def llm_attach(self, line: str) -> Any:
        """Shows a run started elsewhere (another kernel, a detached process): its live view
        while it trains, its summary once it has ended; returns its Run handle. A sweep's id
        shows the sweep view of its trials."""
        from llm_magics import commands
        from llm_magics.runs.run import Run

        found = commands.attach(self.db, parse_line(self.llm_attach, line).target, say=print)
        if isinstance(found, Run):
            return found
        from llm_magics.widgets.sweep import SweepView

        SweepView(found, self.update_interval).show()
        return None

    @line_magic
    @_magic
    @magic_arguments()
    @argument("target", help="a run id, a model name (its latest active run, else its latest) or a sweep id")
    @option("--tail", type=int, default=50, metavar="N", help="how many of its last lines (default 50)")
    def llm_logs(self, line: str) -> None:
        """Prints the end of a run's log (secrets masked): a line per logged step, checkpoint,
        evaluation and warning, and a detached run's process output; a sweep's id, the sweep's."""
        from llm_magics import commands

        args = parse_line(self.llm_logs, line)
        if args.tail < 1:
            raise ConfigError(f"--tail {args.tail}: give a number of lines, 1 or more")
        print("\n".join(commands.log_lines(self.db, args.target, args.tail, say=print)) or "(the log is empty so far)")


def flagged_placement(args: argparse.Namespace) -> dict[str, Any]:
    """What the flags of ``%%llm_finetune`` ask about where it trains (None: they leave it open)."""
    if args.background and args.detach:
        raise ConfigError("--async and --detach: choose one (--detach also returns at once, and outlives the kernel)")
    backend = "ray" if args.ray or args.ray_address else "thread" if args.background else None
    return {"backend": backend, "ray_address": args.ray_address, "detach": args.detach}


def _line_prompts(line: str, tokens: list[str]) -> list[str]:
    """Quoted prompts are one prompt each; unquoted words are one prompt together."""
    if not tokens:
        return []
    quoted = any(quote in line for quote in ('"', "'"))
    return tokens if quoted else [" ".join(tokens)]
