"""Every code block of the README, and every form of the magics in SPEC §2, run as a user pastes
them: in real IPython kernels (nbclient), one cell at a time, in the README's order.

How a block is taken (by the language its fence names):

- ``bash``: shell commands. Not run (they install); each names a script or path of the repository
  that exists, and the test command is the one ``.ci/run`` runs.
- ``text``: what a command prints, quoted: the README's dry-run figures are what
  ``scripts/first_run_estimate.py`` prints.
- ``python`` whose first line is a comment naming ``ipython_config.py``: IPython's configuration
  file. It is written into the profile of the second kernel (below), which then has to know the
  magics without ``%load_ext``.
- ``python``: one cell.
- no language: notebook cells, split as a user pastes them: a line that starts with ``%%`` (a cell
  magic) starts a cell that runs to the next blank line followed by a line that starts with ``%``,
  or to the end of the block (its body may hold blank lines); every other line that is not blank
  is a cell of its own (each such line of the README is a command whose output it describes),
  with the comment lines (``#``) right above it.

A block under a paragraph that says "in any notebook" runs in a second kernel, started after the
first one has shut down, as a notebook opened the next day; everything before runs in the first.
Before the README's cells, each kernel gets only what a user has: ``base_path``, a tiny local model
(``tiny_model``); ``docs``, a list of seed-style documents, also stored as the collection ``docs``
of the default (embedded) store; and, for the Hub model the README names, a Hugging Face cache
(``HF_HOME``, with ``HF_HUB_OFFLINE=1``) holding a tiny model under that name, laid out as the Hub
client lays out a download (``models--ORG--NAME/snapshots/REV/`` and ``refs/main``), so that the
name loads offline as it does for a user who downloaded it. The placeholder ``RUN`` is the id a
user reads in ``%llm_runs``' table: the run the ``--detach`` block started. Nothing of the README
is shortened: the ``--detach`` block's 3000 steps are cut short by its own ``%llm_stop``.

Left out (each by its first line, so that a new block cannot go untested unnoticed):
``LEFT_OUT`` below, with the reason. The forms of SPEC §2 (``SPEC``: each form as a concrete cell,
with what it must show) run after the README's, in the second kernel; a comment under the list
names the ones that do not, and why.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import pytest
from helpers import qa_docs

ROOT = Path(__file__).parent.parent
README = ROOT / "README.md"
WIDGET = "application/vnd.jupyter.widget-view+json"
HUB_REVISION = "0123456789abcdef0123456789abcdef01234567"  # any commit hash: refs/main names it

LEFT_OUT = {
    "%%llm_finetune my-model -o sweep": "6 trials of 400 steps on Ray Tune: minutes on 2 CPU cores, past this "
    "test's time; tests/test_sweep.py and notebooks/sweeps.ipynb (tests/test_notebooks.py) run sweeps",
    "%llm_export my-model@best gguf/my-model --gguf q8_0": "needs llama.cpp (the gguf extra, which scripts/test.sh "
    "builds before these tests run) and a tokenizer llama.cpp's converter reads, which the README's byte-level "
    "tiny model has not; tests/test_gguf.py exports a tiny SentencePiece model the same way, through this magic too",
}

# what some of the README's cells show, as the README says (each by its command line)
README_SHOWS = {
    "%%llm_finetune tinyllama --dry-run": (
        "tinyllama ← TinyLlama/TinyLlama-1.1B-Chat-v1.0 (4-bit)",
        "memory (estimate)",
    ),
    "%%llm_finetune my-model -o run": ("llm-summary", "completed"),
    '%llm_predict my-model@best "### Human: hi ### Assistant: "': ("execute_result",),
    "from llm_magics import LLM, LLMTrainingConfiguration, connect": ("merged/llm-finetune",),
    "%%llm_finetune my-model --detach -o run": (WIDGET,),
    "%llm_attach my-model": (WIDGET,),
    "%llm_stop RUN": ("a final checkpoint is being saved",),
    'run = db.run("RUN"); run.wait()': ("stopped",),
}


@dataclass
class Block:
    language: str
    source: str
    line: int  # where its fence is in the README
    above: str  # the paragraph above it

    @property
    def first_line(self) -> str:
        return self.source.split("\n", 1)[0]

    @property
    def where(self) -> str:
        return f"README.md line {self.line}"


def readme_blocks() -> list[Block]:
    text = README.read_text()
    blocks = []
    for match in re.finditer(r"^```(\w*)\n(.*?)^```", text, flags=re.S | re.M):
        before = text[: match.start()].rstrip("\n")
        blocks.append(Block(match[1], match[2], before.count("\n") + 2, before.rsplit("\n\n", 1)[-1]))
    return blocks


def cells(block: Block) -> list[str]:
    """A magics block as the cells a user pastes (the rule is in the module's docstring)."""
    lines = block.source.rstrip("\n").split("\n")
    found: list[str] = []
    comments: list[str] = []
    index = 0
    while index < len(lines):
        end = index + 1
        if lines[index].startswith("%%"):
            while end < len(lines) and not (lines[end] == "" and "".join(lines[end + 1 : end + 2]).startswith("%")):
                end += 1
        if lines[index].startswith("#"):
            comments.append(lines[index])
        elif lines[index].strip():
            found.append("\n".join([*comments, *lines[index:end]]).rstrip("\n"))
            comments = []
        index = end
    return found


def command(cell: str) -> str:
    """A cell's first line that is not a comment."""
    return next(line for line in cell.split("\n") if not line.startswith("#"))


def is_ipython_config(block: Block) -> bool:
    return block.language == "python" and block.first_line.startswith("#") and "ipython_config.py" in block.first_line


def test_the_split_rule():
    block = Block("", "%a\n# b's comment\nb = %c\n\n%%d x\ne: 1\n\nf: 2\n\n%g\n", 1, "")
    assert cells(block) == ["%a", "# b's comment\nb = %c", "%%d x\ne: 1\n\nf: 2", "%g"]


# --- the shell blocks and the quoted output ---


def test_the_shell_blocks_name_what_exists_and_ci_runs_the_test_command():
    ci = [
        line
        for line in (ROOT / ".ci/run").read_text().splitlines()
        if line and not line.startswith(("#", "set ", "cd "))
    ]
    commands = []
    for block in readme_blocks():
        if block.language != "bash":
            continue
        for line in block.source.splitlines():
            words = shlex.split(line, comments=True)
            if not words:
                continue
            commands.append(words)
            program, *arguments = words
            if program == "pip":  # pip install PATH: a directory that pip can install
                paths = [a for a in arguments if not a.startswith("-") and a != "install"]
                assert paths and all((ROOT / p / "pyproject.toml").is_file() for p in paths), (block.where, line)
                continue
            assert (ROOT / program).is_file() and (ROOT / program).stat().st_mode & 0o111, (block.where, line)
    assert ["scripts/demo.sh"] in commands and ["scripts/test.sh"] in commands
    assert ci == ["exec scripts/test.sh"]  # CI runs the README's test command, as it is
    assert "python -m llm_magics.demo" in (ROOT / "scripts/demo.sh").read_text()
    assert (ROOT / "llm_magics/demo.py").is_file()


def test_the_quoted_dry_run_is_what_the_estimate_script_prints_for_the_readmes_cell():
    import runpy

    from llm_magics.config.cell import parse_cell

    script = runpy.run_path(str(ROOT / "scripts/first_run_estimate.py"))
    (cell,) = [c for b in readme_blocks() if b.language == "" for c in cells(b) if "--dry-run" in command(c)]
    configuration = parse_cell(cell.split("\n", 1)[1], {})
    assert {key: configuration[key] for key in script["CELL"]} == script["CELL"]
    quoted = [block.source.strip("\n").split("\n") for block in readme_blocks() if block.language == "text"]
    assert quoted == [script["dry_run_lines"]()]


def test_every_block_is_run_or_left_out_with_a_reason():
    known = {"bash", "text", "python", ""}
    blocks = readme_blocks()
    assert {block.language for block in blocks} <= known, "a block in a language this test does not run"
    first_lines = {block.first_line for block in blocks}
    assert set(LEFT_OUT) <= first_lines, "LEFT_OUT names a block the README no longer has"


# --- running the notebook blocks ---


@dataclass
class Form:
    """One form of SPEC §2 as a concrete cell: what the cell must show (its output, or the error it
    raises when it ``fails``), and what it must not."""

    form: str
    cell: str
    shows: tuple[str, ...]
    fails: bool = False
    hides: str = ""


BODY = "model: {{ base_path }}\ndata: docs\nlora_r: 4\nmax_steps: 4\nsave_steps: 2\neval_strategy: steps\neval_steps: 2"
PROMPT = '"### Human: what is 1? ### Assistant:" --max-new-tokens 4'
HEAVY = "{'torch', 'transformers', 'peft', 'trl', 'ray'}"


def predicted(target: str, flags: str = "") -> str:
    return f"answer = %llm_predict {target} {PROMPT}{flags}\nprint(type(answer).__name__)"


SPEC = [
    Form(
        "%load_ext llm_magics: no torch / transformers / peft / trl / ray until a magic needs them",
        f"%load_ext llm_magics\nimport sys\nprint(sorted({HEAVY} & set(sys.modules)))",
        ("[]",),
    ),
    Form("%%llm_finetune NAME -o VAR", f"%%llm_finetune spec -o spec_run\n{BODY}", ("llm-summary", "completed")),
    Form(
        "-o VAR: the Run handle",
        "print(type(spec_run).__name__, spec_run.status, [c['step'] for c in spec_run.checkpoints])",
        ("Run completed [2, 4]",),
    ),
    Form("%llm_finetune NAME --config file.yaml: the file", f"%%writefile spec.yaml\n{BODY}", ("Writing spec.yaml",)),
    Form(
        "x = %llm_finetune NAME --config file.yaml",
        "x = %llm_finetune spec-file --config spec.yaml\nprint(type(x).__name__, x.status)",
        ("Run completed",),
    ),
    Form("%llm_predict NAME PROMPT: returns the text", predicted("spec"), ("str",)),
    Form("%llm_predict NAME@STEP", predicted("spec@2"), ("str",)),
    Form("%llm_predict NAME@best", predicted("spec@best"), ("str",)),
    Form("%llm_predict NAME@latest", predicted("spec@latest"), ("str",)),
    Form(
        "--temperature, --top-p, --do-sample", predicted("spec", " --do-sample --temperature 0.7 --top-p 0.9"), ("str",)
    ),
    Form("--base: no adapter", predicted("spec", " --base"), ("str",)),
    Form("--compare @100 @200", f"%llm_predict spec {PROMPT} --compare @2 @4", ("llm-comparison", "spec@2", "spec@4")),
    Form(
        "%%llm_predict NAME: the cell body is the prompt",
        "%%llm_predict spec --max-new-tokens 4\n### Human: what is 2? ### Assistant:",
        ("execute_result",),
    ),
    Form("... returns the text", "print(type(_).__name__)", ("str",)),
    Form("%llm_checkpoints NAME", "%llm_checkpoints spec", (WIDGET, "checkpoints of spec")),
    Form("%llm_checkpoints", "%llm_checkpoints", (WIDGET,)),
    Form("%llm_runs", "%llm_runs", ("spec-file", "completed", "kernel")),
    Form(
        "--async",
        "%%llm_finetune spec-async --async -o bg\nmodel: {{ base_path }}\ndata: docs\nlora_r: 4\n"
        "max_steps: 5000\nsave_steps: 1000",
        (WIDGET,),
    ),
    Form("%llm_attach RUN_ID", "%llm_attach {bg.id}", (WIDGET,)),
    Form("%llm_stop RUN_ID", "%llm_stop {bg.id}", ("a final checkpoint is being saved",)),
    Form(
        "... gracefully: a final checkpoint",
        "bg.wait(120)\nprint(bg.status, bg.checkpoints[-1]['step'] == bg.record['step'])",
        ("stopped True",),
    ),
    Form("%llm_attach NAME", "%llm_attach spec", ("llm-summary",)),
    Form("%llm_logs RUN_ID", "%llm_logs RUN", (": stopped",)),
    Form(
        "--resume STEP",
        "%%llm_finetune spec --resume 2 -o resumed\n" + BODY.replace("max_steps: 4", "max_steps: 6"),
        ("llm-summary",),
    ),
    Form(
        "... continues from STEP",
        "print(resumed.status, [c['step'] for c in resumed.checkpoints])",
        ("completed [4, 6]",),
    ),
    Form(
        "--resume: from the latest",
        "%%llm_finetune spec --resume -o resumed\n" + BODY.replace("max_steps: 4", "max_steps: 8"),
        ("llm-summary",),
    ),
    Form(
        "... continues from the latest",
        "print(resumed.status, [c['step'] for c in resumed.checkpoints])",
        ("completed [8]",),
    ),
    Form(
        "--dry-run",
        f"%%llm_finetune spec --dry-run\n{BODY}",
        ("nothing was trained or written", "documents: 36 train · 4 valid", "trainable", "memory (estimate)"),
    ),
    Form("unknown flags are errors", "%llm_runs --bogus", ("unrecognized arguments: --bogus",), fails=True),
    Form(
        "duplicate flags are errors",
        f"%%llm_finetune spec --dry-run --dry-run\n{BODY}",
        ("--dry-run is given twice",),
        fails=True,
    ),
    Form("--help", "%llm_finetune --help", ("Fine-tunes model NAME",)),
    Form("%llm_db: shows the database", "%llm_db", ("embedded://",)),
    Form("db = %llm_db: the Database handle", "db = %llm_db\nprint(type(db).__name__)", ("Database",)),
    Form(
        "%llm_db URI: the password always redacted",
        "%llm_db mongodb://me:hunter2@127.0.0.1:99999/x",
        ("mongodb://me:***@127.0.0.1:99999/x",),
        fails=True,
        hides="hunter2",
    ),
    Form(
        "%config LLMMagics.<name> = ...",
        "%config LLMMagics.default_model = base_path\n%config LLMMagics.backend = 'thread'\n"
        "%config LLMMagics.artifacts = 'db'\n%config LLMMagics.update_interval = 0.25\n"
        "%config LLMMagics.ray_address = 'ray://127.0.0.1:10001'\n%config LLMMagics.short_errors = False\n"
        "%config LLMMagics",
        ("Current: 0.25", "Current: 'ray://127.0.0.1:10001'"),
    ),
    Form(
        "default_model, backend, artifacts",
        "%%llm_finetune spec-settings --dry-run\ndata: docs",
        ("backend: thread", "artifacts: 'db'", "/tiny (full precision)"),
    ),
    Form("short_errors = False: the traceback", "%%llm_finetune broken\nlearning_rat: 1", ("ConfigError",), fails=True),
    Form("database", "%config LLMMagics.database = 'mongomock://spec'\n%llm_db", ("mongomock://spec",)),
    Form(
        "... back to the defaults",
        "%config LLMMagics.database = None\n%config LLMMagics.backend = 'kernel'\n"
        "%config LLMMagics.artifacts = 'local'\n%config LLMMagics.short_errors = True\n%llm_db",
        ("embedded://",),
    ),
    Form(
        "errors a user can fix: one line, and Run-All stops",
        "%%llm_finetune broken\nlearning_rat: 1",
        ("UsageError: unknown key 'learning_rat' — did you mean 'learning_rate'?",),
        fails=True,
        hides="Traceback",
    ),
    Form(
        "nothing in a cell body is executed (YAML safe loading)",
        "%%llm_finetune spec --dry-run\nmodel: !!python/object/apply:os.system ['touch executed']\ndata: docs",
        ("UsageError: line 2 of the cell: YAML tags that build objects are not allowed",),
        fails=True,
    ),
    Form("... nothing ran", "import os\nprint(os.path.exists('executed'))", ("False",)),
]
# Not run here: --ray / --ray-address (Ray starts in about 20 s before the first step;
# tests/test_ray.py and notebooks/ray.ipynb run them); %magic? (IPython sends its text to the
# notebook's pager, a reply payload nbclient does not keep; --help prints the same docstring);
# --detach (the README's --detach block runs it).


class Kernel:
    """A real IPython kernel whose cells run one at a time, as a user runs them. A cell that fails
    fails the test with where it comes from, its text and the kernel's error."""

    def __init__(self, workdir: Path):
        import nbformat
        from nbclient import NotebookClient

        self.notebook = nbformat.v4.new_notebook()
        self.client = NotebookClient(
            self.notebook,
            timeout=300,
            kernel_name="python3",
            coalesce_streams=True,
            resources={"metadata": {"path": str(workdir)}},
        )

    def __enter__(self) -> Kernel:
        self._kernel = self.client.setup_kernel()
        self._kernel.__enter__()
        return self

    def __exit__(self, *error) -> None:
        self._kernel.__exit__(*error)

    def run(self, source: str, where: str, *, fails: bool = False) -> str:
        """Runs a cell; returns what it shows: text, HTML, the kinds of output and the error
        of a cell that ``fails`` as it should."""
        import nbformat
        from nbclient.exceptions import CellExecutionError

        cell = nbformat.v4.new_code_cell(source)
        self.notebook.cells.append(cell)
        try:
            self.client.execute_cell(cell, len(self.notebook.cells) - 1)
            error = None
        except CellExecutionError as raised:
            error = str(raised)
        if error is not None and not fails:
            pytest.fail(f"{where}: this cell failed\n{source}\n\nthe kernel says:\n{error}", pytrace=False)
        if error is None and fails:
            pytest.fail(f"{where}: this cell should have failed\n{source}\n\nit shows:\n{shown(cell.outputs)}")
        return shown(cell.outputs)


def shown(outputs: list) -> str:
    parts = []
    for output in outputs:
        data = output.get("data", {})
        parts += [output["output_type"], output.get("text", ""), data.get("text/plain", ""), data.get("text/html", "")]
        parts += list(data)  # the kinds of output: a widget's, say
        parts += [output.get("ename", ""), output.get("evalue", ""), *output.get("traceback", [])]
    return "\n".join(parts)


def hub_cache(root: Path, names: list[str], model: str) -> Path:
    """A Hugging Face cache (HF_HOME) in which each name is a download of the tiny model."""
    import shutil

    for name in names:
        repo = root / "hub" / f"models--{name.replace('/', '--')}"
        shutil.copytree(model, repo / "snapshots" / HUB_REVISION)
        (repo / "refs").mkdir()
        (repo / "refs" / "main").write_text(HUB_REVISION)
    return root


def hub_names(blocks: list[Block]) -> list[str]:
    """The Hub models the README's cells train (``model: ORG/NAME``)."""
    bodies = "\n".join(block.source for block in blocks if block.language == "")
    return sorted(set(re.findall(r"^model: ([\w.-]+/[\w.-]+)", bodies, flags=re.M)))


def detached_run(runs_table: str) -> str | None:
    """The id of the detached run in ``%llm_runs``' table, as a user reads it there."""
    ids = [line.split()[1] for line in runs_table.splitlines() if " process " in f" {line} "]
    assert len(ids) <= 1, runs_table
    return ids[0] if ids else None


def checked(text: str, cell: str, block: Block) -> str:
    """What a README cell showed, checked against ``README_SHOWS``."""
    missing = [each for each in README_SHOWS.get(command(cell), ()) if each not in text]
    assert not missing, f"{block.where}: this cell does not show {missing}\n{cell}\n\nit shows:\n{text}"
    return text


def test_what_the_readme_cells_should_show_names_cells_it_has():
    commands = {command(cell) for block in readme_blocks() if block.language == "" for cell in cells(block)}
    commands |= {block.first_line for block in readme_blocks() if block.language == "python"}
    assert set(README_SHOWS) <= commands


def what_the_user_has(workdir: Path, tiny_path: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """The Hub cache, the documents in the default store, and the cell that defines the user's
    variables (``base_path``, ``docs``), made before the README's cells run."""
    from llm_magics import connect

    names = hub_names(readme_blocks())
    assert "TinyLlama/TinyLlama-1.1B-Chat-v1.0" in names
    monkeypatch.setenv("HF_HOME", str(hub_cache(workdir / "hf", names, tiny_path)))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for variable in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "TRANSFORMERS_CACHE"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("IPYTHONDIR", str(workdir / "ipython"))  # no one's own IPython profile
    docs = qa_docs()
    connect()["docs"].insert_many([dict(doc) for doc in docs])  # the default store, in the kernels' directory
    return f"base_path = {tiny_path!r}\ndocs = {docs!r}"


def run_blocks(kernel: Kernel, blocks: list[Block], profile: Path) -> str | None:
    """Runs the README's blocks as a user pastes them, ``RUN`` being the detached run's id once
    ``%llm_runs`` has shown it (returned); an IPython configuration block goes into ``profile``."""
    run_id = None
    for block in blocks:
        if is_ipython_config(block):
            profile.mkdir(parents=True, exist_ok=True)
            (profile / "ipython_config.py").write_text(block.source)
        elif block.first_line not in LEFT_OUT and block.language in ("", "python"):
            for cell in cells(block) if block.language == "" else [block.source]:
                text = checked(kernel.run(re.sub(r"\bRUN\b", run_id or "RUN", cell), block.where), cell, block)
                if re.search(r"^%llm_runs$", cell, flags=re.M):
                    run_id = detached_run(text) or run_id
    return run_id


def run_spec(kernel: Kernel, run_id: str) -> None:
    for form in SPEC:
        text = kernel.run(re.sub(r"\bRUN\b", run_id, form.cell), f"SPEC §2: {form.form}", fails=form.fails)
        missing = [each for each in form.shows if each not in text]
        unwanted = bool(form.hides) and form.hides in text
        assert not missing and not unwanted, f"SPEC §2: {form.form}\n{form.cell}\nshows:\n{text}"


@pytest.mark.slow
def test_the_readme_and_the_spec_run_as_pasted(workdir, tiny_path, monkeypatch):
    from llm_magics import connect

    user = what_the_user_has(workdir, tiny_path, monkeypatch)
    profile = workdir / "ipython" / "profile_default"
    blocks = readme_blocks()
    later = next(i for i, block in enumerate(blocks) if "in any notebook" in block.above)
    try:
        with Kernel(workdir) as kernel:
            kernel.run(user, "what the user has")
            run_blocks(kernel, blocks[:later], profile)
        assert (profile / "ipython_config.py").is_file()
        with Kernel(workdir) as kernel:
            kernel.run(user, "what the user has")
            loaded = kernel.run("print('llm_magics' in get_ipython().extension_manager.loaded)", "the profile")
            assert loaded.split() == ["stream", "True"], "the README's ipython_config.py did not load the magics"
            run_id = run_blocks(kernel, blocks[later:], profile)
            assert run_id is not None, "no %llm_runs showed the detached run"
            run_spec(kernel, run_id)
    finally:  # a failure leaves no training process behind
        db = connect()
        for record in db.store.list_runs():
            if record.get("backend") == "process" and record.get("status") in ("starting", "running"):
                db.run(record["_id"]).stop()
