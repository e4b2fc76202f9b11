"""The README stays true: its configuration reference is the class's, its commands exist."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

from llm_magics.config_reference import reference, section

ROOT = Path(__file__).parent.parent


def test_the_configuration_reference_is_current():
    assert section(ROOT / "README.md") == reference(), "run: python -m llm_magics.config_reference README.md"


def test_every_configuration_key_is_in_the_reference():
    from llm_magics.config import LLMTrainingConfiguration

    listed = set(re.findall(r"^\| `(\w+)` \|", section(ROOT / "README.md"), flags=re.MULTILINE))
    own = set(inspect.get_annotations(LLMTrainingConfiguration))
    assert own <= listed and {"max_steps", "save_steps", "eval_strategy"} <= listed


def test_the_two_commands_and_ci_use_the_same_scripts():
    readme = (ROOT / "README.md").read_text()
    assert "scripts/demo.sh" in readme and "scripts/test.sh" in readme
    assert "scripts/test.sh" in (ROOT / ".ci/run").read_text()


def test_every_magic_is_documented():
    from llm_magics.magics import LLMMagics

    readme = (ROOT / "README.md").read_text()
    magics = [name for kind in LLMMagics.magics.values() for name in kind]
    assert magics and all(f"%{name}" in readme for name in magics)
