"""An Ollama ``Modelfile`` that writes prompts the way the checkpoint was trained on them.

The prompt format a checkpoint keeps (a prompt template, a chat template, or plain text) is
rendered once around a marker; the text before and after the marker becomes the ``TEMPLATE``
around ``{{ .Prompt }}`` (one turn: what ``%llm_predict`` sends). Stop words are the EOS token's
text and, for a "### Human: ... ### Assistant:" format, the marker that opens the next turn.
``render`` writes a prompt with such a template as Ollama does, for the GGUF check.
"""

from __future__ import annotations

import re
from typing import Any

from llm_magics.core.errors import ConfigError
from llm_magics.models.generate import format_prompt

_MARK = "\ue000PROMPT\ue000"  # a private-use character: in no training text
_ACTION = re.compile(r"\{\{-?\s*(.*?)\s*-?\}\}", re.S)


def prompt_parts(template: dict[str, Any] | None, tokenizer: Any) -> tuple[str, str]:
    """The text training wrote before and after a prompt."""
    before, mark, after = format_prompt(_MARK, template, tokenizer).partition(_MARK)
    if not mark:
        raise ConfigError("gguf: the checkpoint's prompt format drops the prompt — cannot write a Modelfile for it")
    return before, after


def go_template(before: str, after: str) -> str:
    """A Go template (Ollama's) that writes ``before``, the prompt, then ``after``."""
    return f"{_literal(before)}{{{{ .Prompt }}}}{_literal(after)}"


def _literal(text: str) -> str:
    """Text as Go template text: a ``{{`` in it is written by an action, not read as one."""
    return text.replace("{{", '{{ "{{" }}')


def stops(before: str, tokenizer: Any) -> list[str]:
    """Where an answer ends: the EOS token, and the marker of the next turn when prompts open
    with one ("### Human:" before "### Human: hi ### Assistant: ")."""
    words = [tokenizer.eos_token] if tokenizer.eos_token else []
    opener = before.strip()
    if opener and opener not in words:
        words.append(opener)
    return words


def modelfile(gguf_name: str, template: str, stop_words: list[str], source: str) -> str:
    """The Modelfile's text: the GGUF beside it, the template, the stop words."""
    if '"""' in template:
        raise ConfigError('gguf: the prompt template holds """, which a Modelfile cannot quote')
    lines = [f"# {source}", f"FROM ./{gguf_name}", f'TEMPLATE """{template}"""']
    lines += [f"PARAMETER stop {_quoted(word)}" for word in stop_words]
    return "\n".join(lines) + "\n"


def _quoted(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def render(template: str, prompt: str) -> str:
    """The text Ollama sends for ``prompt`` with ``template``: the actions this module writes
    (``.Prompt``, an empty ``.System``, quoted strings) and nothing else; another action is an
    error that says so (the check cannot vouch for it)."""

    def action(match: re.Match[str]) -> str:
        inner = match.group(1)
        if inner == ".Prompt":
            return prompt
        if inner == ".System":
            return ""
        if len(inner) >= 2 and inner[0] == inner[-1] == '"':
            return inner[1:-1].replace('\\"', '"').replace("\\\\", "\\")
        raise ConfigError(f"gguf: the template's action '{{{{ {inner} }}}}' is not one the check can render")

    return _ACTION.sub(action, template)
