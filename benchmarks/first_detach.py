"""What the first ``%%llm_finetune NAME --detach`` cell of a kernel costs, beside the next one.

Each round starts a fresh kernel (jupyter_client), runs ``%load_ext llm_magics``, then times, from
the moment the cell is sent to its reply, a ``--detach`` cell on the embedded store, then a
second one in the same kernel. The tiny model and the documents are made beforehand by this
process, so the kernel imports nothing before the first cell (the OS file cache is warm). The
runs are stopped through the store once timed. The median of the rounds is reported.

    python benchmarks/first_detach.py [--rounds 5] [--json]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any

from workload import documents, emit, median, tiny, workdir

CELL = "%%llm_finetune {name} --detach\nmodel: {base}\ndata: docs\nlora_r: 4\nmax_steps: 100000\nsave_steps: 50000\n"


def timed(client: Any, code: str) -> float:
    started = time.perf_counter()
    reply = client.execute_interactive(code, timeout=600, output_hook=lambda message: None)
    elapsed = time.perf_counter() - started
    if reply["content"]["status"] != "ok":
        raise RuntimeError(f"the cell failed: {reply['content']}")
    return elapsed


def one_round(root: Path, base: str, round_: int) -> dict[str, float]:
    """A fresh kernel: %load_ext, then two --detach cells, each timed."""
    from jupyter_client.manager import start_new_kernel

    from llm_magics import connect

    manager, client = start_new_kernel(kernel_name="python3", cwd=str(root))
    try:
        load = timed(client, "%load_ext llm_magics")
        first = timed(client, CELL.format(name=f"first-{round_}", base=base))
        second = timed(client, CELL.format(name=f"second-{round_}", base=base))
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)
    db = connect()
    for run in db.show("run"):
        if run["status"] in ("starting", "running"):
            db.run(run["_id"]).stop().wait(300)
    return {"load_ext_s": load, "first_s": first, "second_s": second}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)

    os.environ.setdefault("OMP_NUM_THREADS", "1")  # the training processes share the machine with the kernel
    root = workdir("first-detach")
    base = tiny(root)
    from llm_magics import connect

    connect()["docs"].insert_many(documents(40))
    rounds = [one_round(root, base, round_) for round_ in range(args.rounds)]
    result = {
        "rounds": args.rounds,
        **{key: median(r[key] for r in rounds) for key in rounds[0]},
        "each": rounds,
    }
    return emit(result, args.json, show)


def show(result: dict[str, Any]) -> None:
    print(f"from a cell's start to its reply, the median of {result['rounds']} fresh kernels:")
    print(f"  %load_ext llm_magics          {result['load_ext_s']:6.2f} s")
    print(f"  the first --detach cell       {result['first_s']:6.2f} s")
    print(f"  the next --detach cell        {result['second_s']:6.2f} s")


if __name__ == "__main__":
    main()
