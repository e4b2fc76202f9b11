"""Loaded models kept in memory, so predictions and checkpoint switches do not reload weights."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

Loaded = TypeVar("Loaded")


class ModelCache:
    """The most recently used ``max_models`` loaded base models, by key, and the checkpoint
    directories whose files were already checked (by checkpoint id)."""

    def __init__(self, max_models: int = 1):
        self.max_models = max_models
        self._loaded: OrderedDict[str, Any] = OrderedDict()
        self._lock = threading.Lock()
        self.loads = 0  # base models loaded so far: a switch of checkpoint must not add one
        self.verified: dict[str, Path] = {}

    def get(self, key: str, load: Callable[[], Loaded]) -> Loaded:
        """The model loaded under ``key``, loading it with ``load()`` the first time."""
        with self._lock:
            loaded = self._loaded.get(key)
            if loaded is None:
                loaded = self._loaded[key] = load()
                self.loads += 1
                while len(self._loaded) > self.max_models:
                    self._loaded.popitem(last=False)
            self._loaded.move_to_end(key)
            return loaded

    def clear(self) -> None:
        with self._lock:
            self._loaded.clear()
