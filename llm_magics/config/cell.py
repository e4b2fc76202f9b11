"""A cell body or YAML file -> a plain mapping: safe YAML loading and {{ name }} interpolation.

Nothing here evaluates what the user typed: YAML is loaded with the safe loader (no tag builds an
object) and ``{{ name }}`` reads one name from the namespace, nothing more.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from llm_magics.core.errors import ConfigError

_PLACEHOLDER = re.compile(r"\{\{(.*?)\}\}", re.S)
_NAME = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*")
_TOKEN = "__llm_magics_var_{}__"
_TOKEN_PATTERN = re.compile(r"__llm_magics_var_(\d+)__")
# How big a configuration may grow through YAML aliases (*name repeats what &name marks): a few
# hundred bytes of nested aliases expand a thousandfold a level. Text counts a unit per 64 characters.
MAX_SIZE = 100_000


@dataclass(frozen=True)
class Source:
    """Where a YAML text is, for the line numbers its errors name: what it is called, and the number
    the user sees on its first line."""

    name: str | None = None
    first_line: int = 1

    def line(self, index: int) -> str:
        """Line ``index`` (0-based in the text) as the user finds it, e.g. 'line 6 of the cell'."""
        number = f"line {index + self.first_line}"
        return f"{number} of {self.name}" if self.name else number


# A cell body starts under its %%llm_finetune line: Jupyter numbers that line 1, the body's first 2.
CELL = Source("the cell", first_line=2)


class _Loader(yaml.SafeLoader):
    """The safe loader, plus floats written without a dot (2e-4) and errors on repeated keys."""

    source = Source()

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # `<<: *base` copies plain data; the safe loader merges it below
            key = self.construct_object(key_node, deep=True)
            if not isinstance(key, str):
                continue
            if key in seen:
                raise ConfigError(f"{self.source.line(key_node.start_mark.line)}: '{key}' is given twice")
            seen.add(key)
        return super().construct_mapping(node, deep=deep)

    def construct_yaml_int(self, node: yaml.ScalarNode) -> Any:
        """An integer; a scalar that only looks like one (``0b_``, ``0x_``: YAML 1.1's pattern
        takes them, its constructor fails) is a short error naming it and its line."""
        try:
            return super().construct_yaml_int(node)
        except ValueError:
            raise ConfigError(
                f"{self.source.line(node.start_mark.line)}: {node.value!r} is not a number — quote it if it is text"
            ) from None


_Loader.add_constructor("tag:yaml.org,2002:int", _Loader.construct_yaml_int)
# YAML 1.1 reads 2e-4 as a string; everyone writes learning rates that way.
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def load_yaml(text: str, source: Source = Source()) -> Any:
    """Parses YAML safely; a syntax error, an object-building tag, or aliases that refer to
    themselves or expand past ``MAX_SIZE`` become a ConfigError naming the line as ``source``
    numbers it."""
    loader = None
    try:
        loader = _Loader(text)  # its reader refuses some characters at once
        loader.source = source
        loaded = loader.get_single_data()
        _expanded_size(loaded, {}, set())  # aliases share what they repeat: expanding is the risk
        return loaded
    except RecursionError:
        raise ConfigError("the YAML is nested too deeply (hundreds of [ or { inside each other)") from None
    except yaml.constructor.ConstructorError as error:
        line = source.line(error.problem_mark.line) if error.problem_mark else source.name or "the YAML"
        if " for the tag " not in (error.problem or ""):  # e.g. `<<:` followed by no mapping
            raise ConfigError(f"{line}: {error.problem}") from None
        raise ConfigError(
            f"{line}: YAML tags that build objects are not allowed ({error.problem.split(' for the tag ')[-1]})"
        ) from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"{source.line(mark.line)}, column {mark.column + 1}: " if mark else ""
        problem = getattr(error, "problem", None) or str(error)
        context = getattr(error, "context_mark", None)
        started = f" ({error.context} on line {context.line + source.first_line})" if context and error.context else ""
        raise ConfigError(f"YAML syntax error at {where}{problem}{started}") from None
    finally:
        if loader is not None:
            loader.dispose()


def _expanded_size(node: Any, sizes: dict[int, int], open_: set[int]) -> int:
    """How big ``node`` is once every alias is written out; each shared part is counted once."""
    if isinstance(node, str):
        return 1 + len(node) // 64
    if not isinstance(node, dict | list):
        return 1
    key = id(node)
    if key in sizes:
        return sizes[key]
    if key in open_:
        raise ConfigError("the YAML refers to itself: an alias (*name) inside what its anchor (&name) marks")
    open_.add(key)
    total = 1
    for child in (*node.keys(), *node.values()) if isinstance(node, dict) else node:
        total += _expanded_size(child, sizes, open_)
        if total > MAX_SIZE:
            raise ConfigError(
                f"the YAML expands to more than {MAX_SIZE:,} values through its aliases (*name); "
                "write the values out instead of nesting aliases"
            )
    open_.discard(key)
    sizes[key] = total
    return total


def parse_cell(text: str, namespace: Mapping[str, Any] | None = None, source: Source = Source()) -> dict[str, Any]:
    """Turns a cell body into a mapping, reading each ``{{ name }}`` from ``namespace``; an error
    names its line as ``source`` numbers it (``CELL``: as the notebook shows the cell)."""
    names: list[str] = []
    lines = text.split("\n")
    for number, line in enumerate(lines):
        code, comment = _split_comment(line)

        def to_token(match: re.Match[str], number: int = number) -> str:
            name = _NAME.fullmatch(match.group(1))
            if name is None:
                raise ConfigError(
                    f"{source.line(number)}: {match.group(0)!r}: interpolation takes one variable name, "
                    "e.g. {{ base_model }}"
                )
            names.append(name.group(1))
            return _TOKEN.format(len(names) - 1)

        lines[number] = _PLACEHOLDER.sub(to_token, code) + comment  # a comment is left as it is
    body = load_yaml("\n".join(lines), source)
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise ConfigError(f"the cell body must be a YAML mapping (key: value lines), not {type(body).__name__}")
    values = _lookup(names, namespace or {})
    return _substitute(body, values)


def _split_comment(line: str) -> tuple[str, str]:
    """A line's YAML before its comment, and the comment: a '#' after a space (or first on the
    line), outside quotes."""
    quote = None
    for index, char in enumerate(line):
        if quote == '"' and char == "\\":
            continue
        if quote is None and char in "'\"":
            quote = char
        elif char == quote and not (quote == '"' and index and line[index - 1] == "\\"):
            quote = None
        elif quote is None and char == "#" and (index == 0 or line[index - 1] in " \t"):
            return line[:index], line[index:]
    return line, ""


def _lookup(names: list[str], namespace: Mapping[str, Any]) -> list[Any]:
    missing = [name for name in dict.fromkeys(names) if name not in namespace]
    if missing:
        raise ConfigError([f"{{{{ {name} }}}}: '{name}' is not defined in the notebook" for name in missing])
    return [namespace[name] for name in names]


def _substitute(node: Any, values: list[Any]) -> Any:
    if isinstance(node, dict):
        return {_substitute(key, values): _substitute(value, values) for key, value in node.items()}
    if isinstance(node, list):
        return [_substitute(item, values) for item in node]
    if not isinstance(node, str):
        return node
    whole = _TOKEN_PATTERN.fullmatch(node)
    if whole:
        return _data(values[int(whole.group(1))])
    return _TOKEN_PATTERN.sub(lambda match: str(_data(values[int(match.group(1))])), node)


def _data(value: Any) -> Any:
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, tuple):
        return list(value)
    return value
