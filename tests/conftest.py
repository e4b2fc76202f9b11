"""Shared fixtures: a tiny offline model, a fresh in-memory database, a clean working directory."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

# The suite runs in parallel workers (scripts/test.sh) on small machines. PyTorch's default of one
# OpenMP thread per core in every process (workers, kernels, trainers they start) makes threads
# spin against each other: a notebook test went from 25 s to 220 s. The tiny models train as fast
# on one thread. Set before torch is imported here or in any process a test starts.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest
from helpers import Shell

pytest_plugins = ["browser_lab"]  # JupyterLab and a browser page, for the browser tests


@pytest.fixture(scope="session")
def tiny_path(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A tiny random causal LM with a byte-level tokenizer, built once per session."""
    from llm_magics import tiny_model

    return str(tiny_model(tmp_path_factory.mktemp("models") / "tiny"))


@pytest.fixture(autouse=True)
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test runs in its own directory, so .llm_magics/ never lands in the repository."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def db():
    """A fresh in-memory database (mongomock://<unique name>)."""
    from llm_magics import connect

    return connect(f"mongomock://test-{uuid.uuid4().hex[:8]}")


@pytest.fixture
def shell(db, tiny_path):
    """A shell whose current database is ``db``, with ``base_path`` naming the tiny model."""
    testing = Shell()
    testing.run(f"%llm_db {db.uri}")
    testing.ns.update(base_path=tiny_path)
    return testing


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The tests that share one Ray (xdist group "ray", one worker) first: they are the suite's
    longest chain, so under ``-n 2 --dist loadgroup`` it starts at once and the other worker
    takes everything else beside it."""

    def ray_group(item: pytest.Item) -> bool:
        return any(mark.args == ("ray",) for mark in item.iter_markers("xdist_group"))

    items.sort(key=lambda item: not ray_group(item))
