"""Shared fixtures: a tiny offline model, a fresh in-memory database, a clean working directory."""

from __future__ import annotations

import os
import sys
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


@pytest.fixture(scope="module", autouse=True)
def ray_ends_with_the_module(request: pytest.FixtureRequest):
    """A Ray that a module's tests started in this worker (llm_magics starts a local one for a run
    with no address) ends with the module, so no idle Ray stays behind it; except between two
    tests of the chain that shares a local Ray (test_ray.py's, then test_sweep.py's): the next
    module uses it, and starting another costs a Ray's start."""
    yield
    if request.config.stash.get(RAY_CARRIES_ON, False):
        return
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        ray.shutdown()


RAY_CARRIES_ON = pytest.StashKey[bool]()  # the test being torn down and the next share the local Ray


def _shares_the_local_ray(item: pytest.Item | None) -> bool:
    group = item.get_closest_marker("xdist_group") if item is not None else None
    return group is not None and group.args[0] == "ray"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None):
    """Tells ``ray_ends_with_the_module`` whether the next test goes on on this test's Ray."""
    item.config.stash[RAY_CARRIES_ON] = _shares_the_local_ray(item) and _shares_the_local_ray(nextitem)
    return (yield)


def _cost(item: pytest.Item) -> int:
    """A rough rank of a test's time: the two chains of Ray tests (one on a shared local Ray,
    one whose tests start their own), then the tests that start a browser or a training process
    of their own, then the rest."""
    group = item.get_closest_marker("xdist_group")
    if group is not None and group.args[0] in ("ray", "ray-own"):
        return 0
    for rank, marker in enumerate(("ray", "browser", "slow"), start=1):
        if item.get_closest_marker(marker) is not None:
            return rank
    return 4


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The longest tests first: ``scripts/test.sh`` runs ``--dist loadgroup --no-loadscope-reorder``,
    so the workers take them in this order and none starts a long test last."""
    items.sort(key=_cost)


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Under loadgroup each test of an ``xdist_group`` carries the group's name in its id: that is
    how pytest-xdist keeps a group in one worker. With a pytest that xdist does not fit, the
    groups would be ignored silently; their tests fail instead, saying so."""
    group = item.get_closest_marker("xdist_group")
    if group is None or not getattr(item.config.option, "loadgroup", False):
        return
    if not item.nodeid.endswith(f"@{group.args[0]}"):
        pytest.fail(
            f"pytest-xdist ignores xdist_group {group.args[0]!r} under pytest {pytest.__version__}: "
            "install the pytest that pyproject.toml pins",
            pytrace=False,
        )
