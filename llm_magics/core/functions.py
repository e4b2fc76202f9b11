"""The user's own Python functions: reward functions (SPEC §11) and notebook metrics (SPEC §12).

A function comes from the notebook (``{{ f }}`` in a cell, or passed in Python) or is named
``module:function`` and imported. It travels to a detached process or a Ray worker by value
(cloudpickle); one that cannot travel is refused by name. A record keeps only its name and source
text, which are shown and never run.
"""

from __future__ import annotations

import importlib
import inspect
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from llm_magics.core.errors import ConfigError

_SOURCE_LIMIT = 20_000
_MODULE_FUNCTION = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*")


@dataclass
class UserFunction:
    """A function the user wrote, as a run holds it."""

    name: str
    function: Callable[..., Any]
    source: str

    def record(self) -> dict[str, str]:
        """What a record keeps: text to show, never to run."""
        return {"name": self.name, "source": self.source}


def resolve_function(spec: Any, setting: str) -> UserFunction:
    """A callable, or a ``module:function`` name imported; a short error naming ``setting`` else."""
    if callable(spec):
        return UserFunction(function_name(spec), spec, source_of(spec))
    if isinstance(spec, str) and _MODULE_FUNCTION.fullmatch(spec):
        module_name, _, attribute = spec.partition(":")
        try:
            function = getattr(importlib.import_module(module_name), attribute)
        except (ImportError, AttributeError) as error:
            raise ConfigError(f"{setting}: cannot import {spec!r}: {error}") from None
        if not callable(function):
            raise ConfigError(f"{setting}: {spec!r} is {type(function).__name__}, not a function")
        return UserFunction(function_name(function), function, source_of(function))
    if isinstance(spec, str):
        raise ConfigError(
            f"{setting}: {spec!r} is a name, not a function — pass the function ({{{{ {spec} }}}} in a cell, "
            f"[{spec}] in Python) or 'module:function'"
        )
    raise ConfigError(f"{setting}: {spec!r} is {type(spec).__name__}, not a function or 'module:function'")


def unique_names(functions: list[UserFunction], setting: str) -> None:
    """Each function's results are named by it: two of one name are refused."""
    names = [function.name for function in functions]
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise ConfigError(f"{setting}: two functions are named {twice[0]!r} — their results would share a name")


def function_name(function: Any) -> str:
    return getattr(function, "__name__", None) or type(function).__name__


def source_of(function: Any) -> str:
    try:
        text = inspect.getsource(function)
    except (OSError, TypeError):
        return f"# the source of {function_name(function)} is not available"
    return text if len(text) <= _SOURCE_LIMIT else text[:_SOURCE_LIMIT] + "\n# ..."


def packed(functions: list[UserFunction], what: str) -> list[bytes]:
    """Each function by value, for a process or a Ray worker; one that cannot travel is refused
    by name, with the reason (a lock, a socket, an open file it holds)."""
    import cloudpickle

    payloads = []
    for user in functions:
        try:
            payloads.append(cloudpickle.dumps(user.function))
        except Exception as error:  # pickling raises whatever the object's __reduce__ raises
            raise ConfigError(
                f"{what} {user.name!r} cannot travel to the training process: {error} — "
                "define what it needs inside the function, or train in the kernel"
            ) from None
    return payloads


def unpacked(payloads: list[bytes]) -> list[Callable[..., Any]]:
    import cloudpickle

    return [cloudpickle.loads(payload) for payload in payloads]


def shown(value: Any) -> str:
    """A value as an error message quotes it: its repr, cut short."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
