"""A folder's public names, imported from their modules on first use (PEP 562).

Importing one module of a folder imports the folder's ``__init__`` first; if that imported every
module, ``llm_magics.config.cell`` would import trl through its neighbour, and ``%load_ext`` would
stop being light. So each ``__init__`` names its public objects and where they live, and this
imports a module only when one of its names is asked for.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from typing import Any


def exports(package: str, where: dict[str, str]) -> Callable[[str], Any]:
    """The ``__getattr__`` of ``package``, whose public names live in its modules as ``where`` maps
    them (name -> module, relative to the package)."""

    def attribute(name: str) -> Any:
        module = where.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{module}"), name)
        setattr(sys.modules[package], name, value)  # found once, then an ordinary attribute
        return value

    return attribute
