"""A magic's line read as a shell reads it and parsed by its argparse parser: options given once,
an unclosed quote or an unknown flag as one line (with the flag meant), the usage when an argument
is missing."""

from __future__ import annotations

import argparse
import itertools
from collections.abc import Callable
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic_arguments import argument
from IPython.utils.process import arg_split

from llm_magics.core.errors import did_you_mean


class Once(argparse.Action):
    """An option that may be given once: a repeated flag is an error, not a silent override."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        seen = namespace.__dict__.setdefault("_given", set())
        if self.dest in seen:
            raise UsageError(f"{option_string} is given twice")
        seen.add(self.dest)
        setattr(namespace, self.dest, self.const if self.nargs == 0 else values)


def flag(*names: str, **kwargs: Any) -> Callable:
    return argument(*names, action=Once, nargs=0, const=True, default=False, **kwargs)


def option(*names: str, **kwargs: Any) -> Callable:
    return argument(*names, action=Once, **kwargs)


def words(line: str) -> list[str]:
    """The line's words, as a shell reads them; an unclosed quote is a one-line error."""
    try:
        return arg_split(line, posix=True, strict=True)
    except ValueError as error:  # shlex: "No closing quotation"
        raise UsageError(f'{str(error).lower()} in the line: close the quote, e.g. "What is X?"') from None


def parse_line(method: Callable, line: str) -> argparse.Namespace:
    parser: argparse.ArgumentParser = method.parser  # type: ignore[attr-defined] # magic_arguments sets it
    parser.allow_abbrev = False  # --dry is not --dry-run: a typo is an error, not a guess
    try:
        # intermixed: options may come after the name and before or between the prompts
        return parser.parse_intermixed_args(words(line))
    except UsageError as error:
        message = str(error)
        if "arguments are required" in message:
            usage = " ".join(parser.format_usage().removeprefix("usage:").split()).removeprefix(":: ")
            message = f"{message} — usage: {usage}"
        if "unrecognized arguments" in message:
            options = [option for action in parser._actions for option in action.option_strings]
            unknown = message.split(":", 1)[1].split()
            hints = "".join(closest_flag(flag, options) for flag in unknown if flag.startswith("-"))
            message = f"{message}{hints}; see --help"
        raise UsageError(message) from None


def closest_flag(flag: str, options: list[str]) -> str:
    """A shortened flag names the one it starts; otherwise the closest spelling."""
    started = [option for option in options if option.startswith(flag)]
    return f" — did you mean '{started[0]}'?" if len(started) == 1 else did_you_mean(flag, options)


# line magics whose words are free text: a prompt may end in '?'
FREE_TEXT = ("llm_predict",)


def question_lines(lines: list[str]) -> list[str]:
    """An input transformer (``shell.input_transformers_cleanup``): a line such as
    ``%llm_predict NAME What is X?`` goes to its magic whole. IPython takes any line ending in ``?``
    for help (``obj?``: "Object `X` not found") before a magic runs; here it becomes the magic's
    call, as IPython makes it of any other magic line (``%llm_predict?`` stays help)."""
    if not lines or lines[0].lstrip().startswith("%%"):
        return lines  # a cell magic's body is its own
    from IPython.core.inputtransformer2 import (
        assemble_continued_line,
        find_end_of_continued_line,
        make_tokens_by_line,
    )

    for start, column in reversed(_questions(make_tokens_by_line(lines))):
        end = find_end_of_continued_line(lines, start)
        magic, _, words = assemble_continued_line(lines, (start, column), end)[1:].partition(" ")
        call = f"get_ipython().run_line_magic({magic!r}, {words!r})"
        lines = [*lines[:start], lines[start][:column] + call + "\n", *lines[end + 1 :]]
    return lines


def _questions(tokens_by_line: list[list[Any]]) -> list[tuple[int, int]]:
    """Where the ``%`` of each free-text magic line that ends in ``?`` is: (line, column), from 0.
    Tokens, not text: a string that merely contains such a line is left alone."""
    import tokenize

    found = []
    for line in tokens_by_line:
        words = [token for token in line if token.type not in (tokenize.INDENT, tokenize.DEDENT)]
        if len(words) < 4 or words[-2].string != "?":  # the last is the NEWLINE
            continue
        for at, (escape, name) in enumerate(itertools.pairwise(words[:-3])):
            starts = at == 0 or (at == 2 and words[1].string == "=" and words[0].type == tokenize.NAME)
            if starts and escape.string == "%" and name.string in FREE_TEXT and name.start == escape.end:
                found.append((escape.start[0] - 1, escape.start[1]))
                break
    return found
