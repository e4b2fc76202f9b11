"""kill -9 at many moments of a real training process: the store stays consistent.

A server process imports the libraries once and forks a trainer per kill point (so 20+ kill
points fit in a couple of minutes). Each trainer writes to the default embedded store of the
test's directory and dies by SIGKILL: after a random delay counted from its first training step
(so it lands mid-step, mid-save or mid-prune), or from a hook that kills it inside a checkpoint
save, between a record and its pruning, halfway through deleting a pruned checkpoint's files, or
inside a SQLite transaction. After each kill a fresh connection must find every listed checkpoint
complete (sha256 of every file), no run still 'running', and an intact SQLite file.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from helpers import qa_docs

from llm_magics import connect
from llm_magics.core.errors import ModelError
from llm_magics.store.artifacts import verify

pytestmark = pytest.mark.slow

SERVER = textwrap.dedent(
    """
    import json, os, signal, sys
    import torch, transformers, trl, peft  # imported once; every fork starts warm
    from llm_magics import LLM, LLMTrainingConfiguration, connect
    from llm_magics.training import train as _train  # noqa: F401 - imports the trainer stack

    def die():
        os.kill(os.getpid(), signal.SIGKILL)

    def after_calls(obj, name, count, before=True):
        original, calls = getattr(obj, name), [0]
        def hooked(*args, **kwargs):
            calls[0] += 1
            if before and calls[0] == count:
                die()
            result = original(*args, **kwargs)
            if not before and calls[0] == count:
                die()
            return result
        setattr(obj, name, hooked)

    def hook(scenario):
        kind, count = scenario.get("hook"), scenario.get("count", 1)
        if kind == "torch.save":  # inside a checkpoint: adapter written, optimizer state not yet
            after_calls(torch, "save", count)
        elif kind == "safetensors":  # while the adapter weights are written
            import peft.peft_model
            after_calls(peft.peft_model, "safe_save_file", count)
        elif kind in ("record-before", "record-after"):  # around the checkpoint record
            from llm_magics.store.records import Store
            after_calls(Store, "add_checkpoint", count, before=kind == "record-before")
        elif kind == "prune":  # between deleting a record and deleting its files
            import shutil
            after_calls(shutil, "rmtree", count)
        elif kind == "prune-files":  # halfway through deleting a pruned checkpoint: one file gone
            import shutil
            rmtree, pruned = shutil.rmtree, [0]
            def dying_rmtree(path, *args, **kwargs):
                if os.path.basename(path).startswith("checkpoint-"):
                    pruned[0] += 1
                    if pruned[0] == count:
                        unlink = os.unlink
                        def unlink_then_die(*a, **k):
                            unlink(*a, **k)
                            die()
                        os.unlink = unlink_then_die
                return rmtree(path, *args, **kwargs)
            shutil.rmtree = dying_rmtree
        elif kind == "commit":  # inside a write transaction, its changes made, before its COMMIT
            from llm_magics.store.embedded_file import StoreFile
            commit, calls = StoreFile.commit, [0]
            def dying_commit(self):
                if self.writing:
                    calls[0] += 1
                    if calls[0] == count:
                        die()
                return commit(self)
            StoreFile.commit = dying_commit
        elif "delay" in scenario:  # tells the test when the first step is done: its delay counts from there
            from llm_magics.training.recorder import Recorder
            on_log = Recorder._on_log
            def first_log(self, event):
                on_log(self, event)
                Recorder._on_log = on_log
                print("training", flush=True)
            Recorder._on_log = first_log

    tiny = sys.argv[1]
    for line in sys.stdin:
        scenario = json.loads(line)
        pid = os.fork()
        if pid == 0:
            hook(scenario)
            db = connect()
            config = LLMTrainingConfiguration(max_steps=100000, save_steps=2, save_total_limit=2,
                                              per_device_train_batch_size=2, lora_r=4, max_length=32)
            LLM("crashy", tiny, bits=4).fit(select="docs", db=db, configuration=config)
            os._exit(0)
        print(pid, flush=True)
        _, status = os.waitpid(pid, 0)
        print("exit", status, flush=True)
    """
)

HOOKS = [
    {"hook": "torch.save", "count": 1},
    {"hook": "torch.save", "count": 5},
    {"hook": "safetensors", "count": 1},
    {"hook": "safetensors", "count": 3},
    {"hook": "record-before", "count": 2},
    {"hook": "record-after", "count": 2},
    {"hook": "prune", "count": 1},
    {"hook": "prune-files", "count": 1},
    {"hook": "commit", "count": 3},
    {"hook": "commit", "count": 12},
    {"hook": "commit", "count": 40},
]
DELAYS = 12
SPAN = 5.0  # seconds after the first step over which the random kills fall: about steps 1 to 8


def check_store(workdir: Path, runs_before: int) -> dict:
    """What a new process finds: consistent records, complete checkpoints, an intact file."""
    db = connect()
    runs = db.show("run", "crashy")
    checkpoints = db.show("checkpoint", "crashy") if "crashy" in db.show("model") else []
    sha256_ok = True
    for record in checkpoints:
        try:
            verify(record, Path(record["path"]))  # every file there, with the recorded sha256
        except ModelError:
            sha256_ok = False
    with sqlite3.connect(workdir / ".llm_magics" / "store.sqlite") as raw:
        sqlite_ok = raw.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    db.client.close()
    killed = runs[-1] if len(runs) > runs_before else None
    return {
        "runs": len(runs),
        "active": [run["status"] for run in runs if run["status"] in ("running", "starting", "stopping")],
        "checkpoints": len(checkpoints),
        "interrupted": sum(r["status"] == "interrupted" for r in runs),
        "killed": killed and killed["_id"],
        "status": killed["status"] if killed else "(no record yet)",
        "steps": [c["step"] for c in checkpoints if killed and c["run"] == killed["_id"]],
        "sha256_ok": sha256_ok,
        "sqlite_ok": sqlite_ok,
    }


def kill_point(scenario: dict) -> str:
    if "delay" in scenario:
        return f"{scenario['delay']:.2f} s after step 1"
    return f"{scenario['hook']} #{scenario['count']}"


def kill_table(outcomes: list[tuple[dict, dict]]) -> str:
    lines = [f"{'kill point':<26} {'run status':<16} {'checkpoints listed (run / all)':<31} all sha256 ok"]
    for scenario, seen in outcomes:
        listed = f"{', '.join(map(str, seen['steps'])) or 'none'} / {seen['checkpoints']}"
        ok = "yes" if seen["sha256_ok"] and seen["sqlite_ok"] else "NO"
        lines.append(f"{kill_point(scenario):<26} {seen['status']:<16} {listed:<31} {ok}")
    return "\n".join(lines)


def unlisted_checkpoint_dirs(workdir: Path, run_id: str, listed: list[int]) -> list[Path]:
    """The killed run's checkpoint directories that no record lists (a prune cut short)."""
    return [
        path
        for path in (workdir / ".llm_magics" / "artifacts" / "crashy" / run_id).glob("checkpoint-*")
        if int(path.name.rpartition("-")[2]) not in listed
    ]


def test_kill_nine_at_many_moments_leaves_the_store_consistent(tiny_path, workdir):
    connect()["docs"].insert_many(qa_docs(40))
    script = workdir / "server.py"
    script.write_text(SERVER)
    server = subprocess.Popen(
        [sys.executable, str(script), tiny_path],
        cwd=workdir,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        bufsize=1,
    )
    rng = random.Random(1234)
    scenarios = [*HOOKS, *({"delay": rng.uniform(0.0, SPAN)} for _ in range(DELAYS))]
    outcomes = []
    try:
        for scenario in scenarios:
            runs_before = outcomes[-1][1]["runs"] if outcomes else 0
            server.stdin.write(json.dumps(scenario) + "\n")
            pid = int(server.stdout.readline())
            if "delay" in scenario:
                started = server.stdout.readline()
                assert started == "training\n", f"the trainer ended before its first step: {started}"
                time.sleep(scenario["delay"])
                os.kill(pid, signal.SIGKILL)
            else:
                deadline = time.monotonic() + 30  # the hook kills it
                while not _zombie(pid):
                    if time.monotonic() > deadline:
                        os.kill(pid, signal.SIGKILL)
                        pytest.fail(f"the hook {scenario} never fired")
                    time.sleep(0.05)
            status = int(server.stdout.readline().split()[1])
            assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, scenario
            seen = check_store(workdir, runs_before)
            outcomes.append((scenario, seen))
            assert seen["sha256_ok"] and seen["sqlite_ok"] and not seen["active"], (scenario, seen)
            if scenario.get("hook") == "prune-files":  # the pruned record went first, so it is not listed
                assert unlisted_checkpoint_dirs(workdir, seen["killed"], seen["steps"]), seen
    finally:
        server.stdin.close()
        server.wait(timeout=60)
        print("\n" + kill_table(outcomes))
    final = outcomes[-1][1]
    assert len(outcomes) == len(HOOKS) + DELAYS >= 22
    assert final["interrupted"] == final["runs"] > 10  # every killed run that got a record reads as interrupted
    assert final["checkpoints"] > 0
    assert sum(bool(seen["steps"]) for scenario, seen in outcomes if "delay" in scenario) >= DELAYS // 2  # mid-run
    db = connect()
    for record in db.show("checkpoint", "crashy"):  # and every one of them loads and generates
        assert isinstance(
            db.load("model", "crashy", checkpoint=f"{record['run']}:{record['step']}").predict("hi", max_new_tokens=2),
            str,
        )


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True
