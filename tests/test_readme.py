"""The README stays true: its configuration reference is the class's, its commands exist."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

from llm_magics.config.reference import reference, section

ROOT = Path(__file__).parent.parent


def test_the_configuration_reference_is_current():
    assert section(ROOT / "README.md") == reference(), "run: python -m llm_magics.config.reference README.md"


def test_every_configuration_key_is_in_the_reference():
    from llm_magics.config.configuration import LLMTrainingConfiguration

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


def test_the_readmes_cell_bodies_parse_as_pasted():
    """Every %%llm_finetune cell of the README (up to the end of its block or a blank line)
    reads as a configuration mapping, comments included, with {{ base_path }} and the README's
    reward functions set."""
    from llm_magics.config.cell import parse_cell

    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"^```[a-z]*\n(.*?)^```", readme, flags=re.S | re.M)
    cells = [block.split("%%llm_finetune", 1)[1] for block in blocks if "%%llm_finetune" in block]
    assert len(cells) >= 3
    for cell in cells:
        body = cell.split("\n", 1)[1].split("\n\n", 1)[0]
        mapping = parse_cell(body, {"base_path": "/models/tiny", "has_letter": len, "short": len, "first_word": len})
        assert isinstance(mapping, dict) and mapping, body
