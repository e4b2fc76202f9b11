"""The package's imports flow one way, through the layers ARCHITECTURE.md draws, and every module
stays small. Imports inside functions count; only those under ``if TYPE_CHECKING:`` (annotations)
do not."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parent.parent / "llm_magics"
MAX_LINES = 500
# Each layer imports only from the layers before it (and, without a cycle, from its own).
LAYERS = [
    ["errors", "secrets", "devices", "cache", "processes", "unsaved", "logs", "hub", "tables", "gguf_runner"],
    ["cell", "query", "refs"],
    ["validation", "config", "sweep"],
    ["artifacts", "uploads", "store", "embedded_file", "embedded", "db", "run", "follow"],
    ["loader"],
    ["data", "generate"],
    [
        "training",
        "training.callbacks",
        "training.train",
        "training.recorder",
        "training.local",
        "training.ray",
        "training.detached",
        "training.ray_job",
        "training.tune",
        "training.sweeps",
        "training.launch",
    ],
    ["export", "modelfile", "gguf_check", "gguf", "model", "classification", "estimate", "tiny", "api"],
    [
        "display",
        "widgets",
        "widgets.table",
        "widgets.scales",
        "widgets.curve",
        "widgets.probes",
        "widgets.compare",
        "widgets.export",
        "widgets.progress",
        "widgets.checkpoints",
        "widgets.sweep",
    ],
    ["commands"],
    ["magics"],
    ["", "demo", "config_reference"],  # "": the package's __init__
]
LAYER = {name: number for number, names in enumerate(LAYERS) for name in names}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _type_checking_only(tree: ast.AST) -> set[int]:
    """The ids of the nodes inside ``if TYPE_CHECKING:`` blocks."""
    inside = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and ast.unparse(node.test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING"):
            inside.update(id(child) for statement in node.body for child in ast.walk(statement))
    return inside


def _resolve(imported: str) -> str | None:
    """The package module an absolute import names (``llm_magics.x.y`` -> 'x.y'), or None."""
    if imported != "llm_magics" and not imported.startswith("llm_magics."):
        return None
    name = imported.removeprefix("llm_magics").removeprefix(".")
    return name if name in MODULES else None


def imports_of(name: str) -> set[str]:
    """The package modules that module ``name`` imports, at its top or inside functions."""
    tree = ast.parse(MODULES[name].read_text())
    skipped = _type_checking_only(tree)
    found = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found.update(_resolve(alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{name}: use absolute imports"
            base = node.module or ""
            for alias in node.names:  # `from llm_magics import commands` imports a module
                found.add(_resolve(f"{base}.{alias.name}") or _resolve(base))
    return found - {None, name}


GRAPH = {name: imports_of(name) for name in MODULES}


def _cycle() -> list[str] | None:
    """One import cycle, as the modules along it, or None."""
    state: dict[str, str] = {}
    path: list[str] = []

    def visit(name: str) -> list[str] | None:
        state[name] = "open"
        path.append(name)
        for target in sorted(GRAPH[name]):
            if state.get(target) == "open":
                return [*path[path.index(target) :], target]
            if target not in state and (found := visit(target)):
                return found
        state[name] = "done"
        path.pop()
        return None

    for name in sorted(GRAPH):
        if name not in state and (found := visit(name)):
            return found
    return None


def test_every_module_has_a_layer():
    assert set(MODULES) == set(LAYER), "add the module to LAYERS here and to ARCHITECTURE.md"


def test_there_is_no_import_cycle():
    assert _cycle() is None, " -> ".join(_cycle() or [])


@pytest.mark.parametrize("name", sorted(MODULES))
def test_imports_go_down_the_layers(name):
    upward = sorted(target for target in GRAPH[name] if LAYER[target] > LAYER[name])
    assert not upward, f"{name or '__init__'} (layer {LAYER[name]}) imports from above it: {upward}"


@pytest.mark.parametrize("name", sorted(MODULES))
def test_no_module_is_over_500_lines(name):
    lines = len(MODULES[name].read_text().splitlines())
    assert lines <= MAX_LINES, f"{MODULES[name].name}: {lines} lines"


def test_the_graph_sees_imports_inside_functions_and_skips_annotation_only_ones():
    assert "commands" in GRAPH["magics"]  # imported inside the magic methods only
    assert "db" not in GRAPH["run"]  # only under TYPE_CHECKING, for an annotation


def test_architecture_md_names_every_module():
    text = (PACKAGE.parent / "ARCHITECTURE.md").read_text()
    missing = [name for name in MODULES if name and f"`{name.replace('.', '/')}" not in text]
    assert not missing, f"ARCHITECTURE.md does not say what these own: {missing}"
