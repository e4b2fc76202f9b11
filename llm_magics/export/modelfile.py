"""An Ollama ``Modelfile`` that writes prompts the way the checkpoint was trained on them.

The prompt format a checkpoint keeps (a prompt template, a chat template, or plain text) is
rendered once around a marker; the text between the markers becomes the ``TEMPLATE`` around
``{{ .Prompt }}`` (one turn: what ``%llm_predict`` sends; a template that writes the prompt twice
gets it twice). Stop words are the EOS token's
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


def prompt_parts(template: dict[str, Any] | None, tokenizer: Any) -> list[str]:
    """The text training wrote around a prompt: before it, between its copies, after it."""
    parts = format_prompt(_MARK, template, tokenizer).split(_MARK)
    if len(parts) < 2:
        raise ConfigError("gguf: the checkpoint's prompt format drops the prompt — cannot write a Modelfile for it")
    return parts


def go_template(parts: list[str]) -> str:
    """A Go template (Ollama's) that writes ``parts`` with the prompt between them."""
    return "{{ .Prompt }}".join(_literal(part, last=number == len(parts) - 1) for number, part in enumerate(parts))


def _literal(text: str, *, last: bool) -> str:
    """Text as Go template text: a ``{{`` in it, or a ``{`` that an action follows, is written by
    an action, not read as one."""
    text = text.replace("{{", '{{ "{{" }}')
    return text[:-1] + '{{ "{" }}' if not last and text.endswith("{") else text


def stops(before: str, tokenizer: Any) -> list[str]:
    """Where an answer ends: the EOS token, and the marker of the next turn when prompts open
    with one ("### Human:" before "### Human: hi ### Assistant: ")."""
    words = [tokenizer.eos_token] if tokenizer.eos_token else []
    lines = before.strip().splitlines()
    opener = lines[-1].strip() if lines else ""  # a stop word is one line: Ollama drops line breaks
    if opener and opener not in words:
        words.append(opener)
    return words


def modelfile(gguf_name: str, template: str, stop_words: list[str], source: str) -> str:
    """The Modelfile's text: a comment saying where it came from (one line, whatever a record
    holds), the GGUF beside it, the template, the stop words."""
    if '"""' in template:
        raise ConfigError('gguf: the prompt template holds """, which a Modelfile cannot quote')
    lines = [f"# {_one_line(source)}", f"FROM ./{gguf_name}", f'TEMPLATE """{template}"""']
    lines += [f"PARAMETER stop {_quoted(word)}" for word in stop_words]
    return "\n".join(lines) + "\n"


def _one_line(text: str) -> str:
    """Text that cannot end a Modelfile comment: control characters (line breaks) become spaces."""
    return re.sub(r"[\x00-\x1f\x7f\x85\u2028\u2029]", " ", text)[:300]


def _quoted(text: str) -> str:
    """A Modelfile value as Ollama's parser reads it: it strips the quotes and reads no escapes,
    so a value with a quote in it goes in triple quotes."""
    if '"""' in text or _one_line(text) != text:
        raise ConfigError(f"gguf: the stop word {text[:40]!r} cannot be written in a Modelfile")
    return f'"""{text}"""' if '"' in text else f'"{text}"'


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
