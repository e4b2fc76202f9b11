"""One pass from cell to trainer (issue #26): a setting, followed from ``commands.finetune`` to
the trainer, enters few files and seldom climbs back up a floor; the configuration is validated
once and passed on as an object.

Followed here: every call inside the package whose frame holds an object that carries
``learning_rate`` (the configuration, the plan, the job, the trainer's ``SFTConfig``), up to the
trainer's construction. A climb is a step of that walk into a folder on a higher floor than the
step before: control coming back up to use the setting again."""

from __future__ import annotations

import itertools
import sys

import pytest
from test_architecture import FLOOR, place

GOAL_FILES, GOAL_CLIMBS = 10, 3


def walk(db, tiny_path: str) -> list[tuple[str, str]]:
    from trl import SFTConfig, SFTTrainer

    from llm_magics import commands
    from llm_magics.config.configuration import LLMTrainingConfiguration
    from llm_magics.training.launch import Plan
    from llm_magics.training.train import TrainJob

    carriers = (LLMTrainingConfiguration, Plan, TrainJob, SFTConfig)
    steps: list[tuple[str, str]] = []
    reached = []

    def profile(frame, event, _):
        if reached or event != "call":
            return
        module, function = frame.f_globals.get("__name__", ""), frame.f_code.co_name
        if function == "__init__" and isinstance(frame.f_locals.get("self"), SFTTrainer):
            reached.append(True)
        elif module.startswith("llm_magics.") and (
            function in ("finetune", "from_dict") or any(isinstance(v, carriers) for v in frame.f_locals.values())
        ):
            step = (module.removeprefix("llm_magics."), function)
            if not steps or steps[-1][0] != step[0]:
                steps.append(step)

    db["docs"].insert_many([{"text": f"### Human: q{i} ### Assistant: a{i}"} for i in range(8)])
    mapping = {"model": tiny_path, "data": "docs", "max_steps": 1, "learning_rate": 1e-3, "max_length": 32}
    sys.setprofile(profile)
    try:
        commands.finetune(db, "walked", mapping)
    finally:
        sys.setprofile(None)
    assert reached, "the walk did not reach the trainer"
    return steps


@pytest.mark.slow
def test_a_setting_reaches_the_trainer_through_few_files_and_few_climbs(db, tiny_path):
    steps = walk(db, tiny_path)
    files = sorted({module for module, _ in steps})
    climbs = [
        f"{a[0]}.{a[1]} -> {b[0]}.{b[1]}"
        for a, b in itertools.pairwise(steps)
        if FLOOR[place(b[0])] > FLOOR[place(a[0])]
    ]
    print(f"{len(files)} files: {files}\n{len(climbs)} climbs: {climbs}")
    assert len(files) <= GOAL_FILES, files
    assert len(climbs) <= GOAL_CLIMBS, climbs
    # validated once: the cell's mapping becomes an object in one place
    assert [step for step in steps if step[1] == "from_dict"] == [("config.configuration", "from_dict")]
