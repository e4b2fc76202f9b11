"""A cell body is data: safe YAML, typed {{ name }} interpolation, nothing evaluated."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from llm_magics.config.cell import parse_cell
from llm_magics.core.errors import ConfigError


def test_interpolation_keeps_the_values_type():
    body = "model: {{ base }}\nlora_target_modules: {{ mods }}\nmax_steps: {{ steps }}\nnote: 'on {{ base }}'"
    values = {"base": Path("/models/tiny"), "mods": ("q_proj", "v_proj"), "steps": 5}
    assert parse_cell(body, values) == {
        "model": "/models/tiny",
        "lora_target_modules": ["q_proj", "v_proj"],
        "max_steps": 5,
        "note": "on /models/tiny",
    }


def test_an_undefined_name_is_named():
    with pytest.raises(ConfigError, match="'base_path' is not defined in the notebook"):
        parse_cell("model: {{ base_path }}", {})


@pytest.mark.parametrize("expression", ["os.system('id')", "x + 1", "__import__('os')", "a.b", "f()"])
def test_interpolation_takes_names_only(expression):
    with pytest.raises(ConfigError, match="interpolation takes one variable name"):
        parse_cell(f"model: {{{{ {expression} }}}}", {"x": 1, "a": object(), "f": print})


@pytest.mark.parametrize(
    "body",
    [
        "a: !!python/object/apply:os.system ['touch pwned']",
        "a: !!python/name:os.system",
        "a: !!python/object/new:subprocess.Popen [['id']]",
        "a: !local-tag x",
        "a:\n  <<: {b: !!python/object/apply:os.system ['touch pwned']}\n",
    ],
)
def test_tags_that_build_objects_are_refused(body, tmp_path):
    with pytest.raises(ConfigError, match="YAML tags that build objects are not allowed"):
        parse_cell(body)
    assert not (tmp_path / "pwned").exists()


def test_a_repeated_key_is_an_error():
    with pytest.raises(ConfigError, match="line 2: 'lora_r' is given twice"):
        parse_cell("lora_r: 4\nlora_r: 8")


def test_merge_keys_copy_plain_data_and_own_keys_win():
    body = "base: &base {lora_r: 4, max_steps: 2}\nrun:\n  <<: *base\n  lora_r: 8\n"
    assert parse_cell(body)["run"] == {"lora_r": 8, "max_steps": 2}
    with pytest.raises(ConfigError, match="line 4: 'lora_r' is given twice"):
        parse_cell("run:\n  lora_r: 4\n  <<: {max_steps: 2}\n  lora_r: 8\n")  # a repeat is still one


def test_a_merge_key_without_a_mapping_says_so():
    with pytest.raises(ConfigError, match="line 1: expected a mapping or list of mappings for merging"):
        parse_cell("run: {<<: 3}")


@pytest.mark.parametrize("opening", ["[", "{a: "])
def test_hundreds_of_nested_brackets_are_a_short_error(opening):
    with pytest.raises(ConfigError, match="nested too deeply"):
        parse_cell("lora_target_modules: " + opening * 600)


def test_a_syntax_error_names_the_line():
    with pytest.raises(ConfigError, match=r"YAML syntax error at line 3.*while parsing a flow mapping on line 2"):
        parse_cell("lora_r: 4\nselect: {collection: docs\n")


def test_the_body_must_be_a_mapping():
    with pytest.raises(ConfigError, match="must be a YAML mapping"):
        parse_cell("- lora_r: 4\n- max_steps: 2")


def test_an_empty_body_is_an_empty_mapping():
    assert parse_cell("# nothing here\n") == {}


def test_comments_are_left_alone_and_an_interpolation_error_names_its_line():
    """The README's own example has '{{ }}' in a YAML comment: pasted, it failed (issue #18)."""
    text = (
        "model: {{ base_path }}     # {{ }} reads a notebook variable\n"
        "prompt_template: 'Q: {prompt} # not a comment' # {{ nor this }}\n"
        "# a whole line of comment with {{ weird stuff }}\n"
        "data: docs"
    )
    assert parse_cell(text, {"base_path": "/models/tiny"}) == {
        "model": "/models/tiny",
        "prompt_template": "Q: {prompt} # not a comment",
        "data": "docs",
    }
    with pytest.raises(ConfigError, match=r"^line 3: '\{\{ 1 \+ 1 \}\}': interpolation takes one variable name"):
        parse_cell("a: 1\n# fine {{ }}\nb: {{ 1 + 1 }}", {})


@pytest.mark.parametrize(
    ("body", "wording"),
    [
        ("lora_r: 4\nlora_r: 8", "line 3 of the cell: 'lora_r' is given twice"),
        ("a: 1\nb: 0b_", "line 3 of the cell: '0b_' is not a number — quote it if it is text"),
        ("a: 1\nb: !!python/name:os.system", "line 3 of the cell: YAML tags that build objects are not allowed"),
        ("a: 1\nb: {{ 1 + 1 }}", "line 3 of the cell: '{{ 1 + 1 }}': interpolation takes one variable name"),
        (
            "lora_r: 4\nselect: {collection: docs\n",
            "YAML syntax error at line 4 of the cell, column 1: expected ',' or '}', but got '<stream end>' "
            "(while parsing a flow mapping on line 3)",
        ),
    ],
)
def test_a_cells_errors_count_lines_as_the_notebook_shows_the_cell(body, wording):
    """The body starts under the %%llm_finetune line, which the notebook numbers 1."""
    from llm_magics.config.cell import CELL

    with pytest.raises(ConfigError, match=f"^{re.escape(wording)}"):
        parse_cell(body, {}, CELL)


def test_a_files_errors_name_the_file():
    from llm_magics.config.cell import Source

    with pytest.raises(ConfigError, match=r"^line 2 of run\.yaml: 'lora_r' is given twice$"):
        parse_cell("lora_r: 4\nlora_r: 8", {}, Source("run.yaml"))
