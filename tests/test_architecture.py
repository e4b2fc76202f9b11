"""The package's folders are its floors, and imports flow one way through them: a folder imports
only from the folders below it (and from itself, without a cycle). Every module stays small.
Imports inside functions count; only those under ``if TYPE_CHECKING:`` (annotations) do not."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parent.parent / "llm_magics"
MAX_LINES = 500
# The floors, bottom first: a folder (or a top-level module of the package's face) per floor.
FLOORS = [
    ["core"],
    ["config"],
    ["store"],
    ["runs"],
    ["data"],
    ["models"],
    ["eval"],  # issue #29's, once it exists: training evaluates at each save
    ["training"],
    ["export"],
    ["api"],
    ["widgets"],
    ["commands"],
    ["magics"],
    ["", "demo"],  # "": the package's __init__
]
FLOOR = {place: number for number, places in enumerate(FLOORS) for place in places}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}
FOLDERS = {path.parent.name for path in PACKAGE.glob("*/__init__.py")}


def place(module: str) -> str:
    """The folder a module sits in, or the module itself at the top level."""
    first = module.split(".")[0]
    return first if first in FOLDERS else module


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


def _imports(name: str) -> list[tuple[str, str]]:
    """(module imported, the name taken from it) for each import of a package module by ``name``."""
    tree = ast.parse(MODULES[name].read_text())
    skipped = _type_checking_only(tree)
    found = []
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found += [(target, "") for alias in node.names if (target := _resolve(alias.name)) is not None]
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{name}: use absolute imports"
            base = node.module or ""
            for alias in node.names:  # `from llm_magics.store import records` imports a module
                module = _resolve(f"{base}.{alias.name}")
                if module is not None:
                    found.append((module, ""))
                elif (target := _resolve(base)) is not None:
                    found.append((target, alias.name))
    return [(target, taken) for target, taken in found if target != name]


GRAPH = {name: {target for target, _ in _imports(name)} for name in MODULES}


def upward(graph: dict[str, set[str]]) -> list[str]:
    """Each import that goes up a floor, or sideways into another folder of the same floor."""
    found = []
    for name, targets in graph.items():
        for target in sorted(targets):
            if FLOOR[place(target)] > FLOOR[place(name)] or (
                FLOOR[place(target)] == FLOOR[place(name)] and place(target) != place(name) and place(name) in FOLDERS
            ):
                found.append(f"{name or '__init__'} ({place(name) or 'llm_magics'}) imports {target} ({place(target)})")
    return found


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle, as the modules along it, or None."""
    state: dict[str, str] = {}
    path: list[str] = []

    def visit(name: str) -> list[str] | None:
        state[name] = "open"
        path.append(name)
        for target in sorted(graph[name]):
            if state.get(target) == "open":
                return [*path[path.index(target) :], target]
            if target not in state and (found := visit(target)):
                return found
        state[name] = "done"
        path.pop()
        return None

    for name in sorted(graph):
        if name not in state and (found := visit(name)):
            return found
    return None


def test_every_module_sits_in_a_folder_that_has_a_floor():
    # at the top level, only the package's face: __init__, magics, commands, demo
    assert {place(name) for name in MODULES} <= set(FLOOR), "add the folder to FLOORS and to ARCHITECTURE.md"
    assert set(FLOOR) >= FOLDERS


def test_there_is_no_import_cycle():
    assert _cycle(GRAPH) is None, " -> ".join(_cycle(GRAPH) or [])


@pytest.mark.parametrize("name", sorted(MODULES))
def test_imports_go_down_the_floors(name):
    assert not upward({name: GRAPH[name]})


def test_a_planted_upward_import_is_caught():
    # the storage floor asking for the run handle: the cycle issue #26 removed
    planted = {**GRAPH, "store.database": GRAPH["store.database"] | {"runs.run"}}
    assert upward(planted) == ["store.database (store) imports runs.run (runs)"]
    sideways = {**GRAPH, "training.train": GRAPH["training.train"] | {"export.gguf"}}
    assert upward(sideways) == ["training.train (training) imports export.gguf (export)"]


def test_modules_import_names_from_the_module_that_defines_them():
    # a folder's __init__ exports its names lazily, out of this graph's sight: inside the package,
    # `from llm_magics.store.records import Store`, not `from llm_magics.store import Store`
    through = [
        f"{name}: {taken} from llm_magics.{target}"
        for name in MODULES
        if name
        for target, taken in _imports(name)
        if taken and target in FOLDERS
    ]
    assert not through


@pytest.mark.parametrize("name", sorted(MODULES))
def test_no_module_is_over_500_lines(name):
    lines = len(MODULES[name].read_text().splitlines())
    assert lines <= MAX_LINES, f"{MODULES[name].name}: {lines} lines"


def test_the_graph_sees_imports_inside_functions_and_skips_annotation_only_ones():
    assert "commands" in GRAPH["magics"]  # imported inside the magic methods only
    assert "store.database" not in GRAPH["runs.run"]  # only under TYPE_CHECKING, for an annotation


def test_every_folder_names_its_public_objects():
    import importlib

    for folder in sorted(FOLDERS):
        package = importlib.import_module(f"llm_magics.{folder}")
        assert package.__all__ == sorted(package.__all__), folder
        for name in package.__all__:
            assert getattr(package, name) is not None, f"llm_magics.{folder}.{name}"


def test_architecture_md_names_every_module_and_folder():
    text = (PACKAGE.parent / "ARCHITECTURE.md").read_text()
    missing = [name for name in MODULES if name and f"`{name.replace('.', '/')}" not in text]
    assert not missing, f"ARCHITECTURE.md does not say what these own: {missing}"
    assert not [folder for folder in FOLDERS if f"### `{folder}/`" not in text]
