"""Detached runs on a Ray cluster (``%%llm_finetune NAME --ray --detach``): a Ray Job.

The kernel submits a job through Ray's job submission API; the job's driver, on the cluster, trains
with Ray Train as ``--ray`` does and writes the run's records to the database itself, with a
heartbeat, so the run survives the kernel there too. The driver reads its job from a file in the
run's directory that only its owner can read, and removes it: the cluster shares this machine's
files (a local ``ray start --head``, or nodes that mount the same paths). The database must be
one the cluster reaches: the embedded store only on this machine, MongoDB otherwise.
"""

from __future__ import annotations

import json
import os
import pickle
import shlex
import socket
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llm_magics.core.errors import ConfigError
from llm_magics.store.run_dirs import regular_file

if TYPE_CHECKING:
    from llm_magics.store.database import DatabaseHandle

SPEC = "ray-job.pkl"
SUBMITTED = "ray-job.json"  # where this kernel submitted the job: the cluster its logs are read from
_AGENT_WAIT = 90.0  # seconds a cluster just started may take before its job agent takes jobs


def on_this_machine(address: str | None) -> bool:
    """Whether the cluster at ``address`` (none: ``RAY_ADDRESS``, else the one running here) is
    this machine's."""
    text = (address or os.environ.get("RAY_ADDRESS") or "").split("://", 1)[-1]
    host = text.rsplit(":", 1)[0] if ":" in text else text
    if host in ("", "auto", "localhost", socket.gethostname()):
        return True
    try:
        found = socket.gethostbyname(host)
    except OSError:
        return False
    import psutil

    here = {address.address for addresses in psutil.net_if_addrs().values() for address in addresses}
    return found.startswith("127.") or found in here


def check_database(db: DatabaseHandle, address: str | None) -> None:
    """The job's driver opens the database itself: it must be one the cluster reaches."""
    if db.uri.startswith("embedded://") and not on_this_machine(address):
        raise ConfigError(
            f"--ray --detach: the embedded store is a file on this machine, which the cluster at {address} "
            "cannot open safely — use mongodb:// (%llm_db mongodb://...)"
        )


def write_spec(directory: Path, spec: dict[str, Any]) -> Path:
    """The job for the driver, in a file only this user can read (it holds the database URI)."""
    path = directory / SPEC
    descriptor = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as file:
        pickle.dump(spec, file, protocol=pickle.HIGHEST_PROTOCOL)
    return path


def read_spec(path: Path) -> dict[str, Any]:
    """In the driver: the job, read once; the file goes."""
    try:
        with open(path, "rb") as file:
            return pickle.load(file)
    finally:
        path.unlink(missing_ok=True)


def client(address: str | None) -> Any:
    """Ray's job submission client for the cluster at ``address`` (none: the one running here)."""
    from ray.job_submission import JobSubmissionClient

    try:
        return JobSubmissionClient(address or None)
    except (ConnectionError, ValueError, RuntimeError) as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ConfigError(
            f"--ray --detach: no Ray cluster to submit the job to at {address or 'this machine'} ({reason}) — "
            "start one with `ray start --head`, or give --ray-address ray://HEAD:10001 or http://HEAD:8265"
        ) from None


def submit(run_id: str, spec_path: Path, address: str | None) -> dict[str, str]:
    """Submits the driver as a Ray Job; returns where to find it (to read its logs)."""
    jobs = client(address)
    python = sys.executable if on_this_machine(address) else "python"
    entrypoint = f"{shlex.quote(python)} -u -m llm_magics.training.detached --ray-job {shlex.quote(str(spec_path))}"
    deadline = time.monotonic() + _AGENT_WAIT
    while True:
        try:
            submission = jobs.submit_job(entrypoint=entrypoint, submission_id=f"llm_magics-{run_id}")
            break
        except RuntimeError as error:
            # a cluster just started takes some seconds before its job agent takes jobs
            if "No available agent" not in str(error) or time.monotonic() >= deadline:
                raise ConfigError(f"--ray --detach: the cluster did not take the job ({error}){_hint(error)}") from None
            time.sleep(1.0)
    return {"address": jobs.get_address(), "submission_id": submission}


def _hint(error: RuntimeError) -> str:
    """Why a cluster's job agent may never come: its HTTP port (52365 unless set) was taken by
    another Ray on that machine, and the agent then stays up without serving jobs."""
    if "No available agent" not in str(error):
        return ""
    return (
        "; its job agent is not serving: if another Ray runs on the head's machine, start this one"
        " with `ray start --head --dashboard-agent-listen-port=PORT` (the agent's log says: dashboard_agent.log)"
    )


def remember(directory: Path, submitted: dict[str, str]) -> None:
    """Keeps where the job went in the run's own directory: its logs are read from that cluster,
    not from one a record names (a record is anyone's to write)."""
    descriptor = os.open(directory / SUBMITTED, os.O_CREAT | os.O_WRONLY | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(descriptor, "w") as file:
        json.dump(submitted, file)


def job_logs(directory: Path | None) -> str | None:
    """What the job's driver printed, from the cluster this machine submitted it to (as kept in
    the run's own ``directory``); None when it was not submitted from here."""
    if directory is None or not regular_file(directory / SUBMITTED):
        return None
    submitted = json.loads((directory / SUBMITTED).read_text())
    return client(submitted["address"]).get_job_logs(submitted["submission_id"])
