"""The errors a user can fix: short, naming the key or value and what would be valid."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

from IPython.core.error import UsageError


class LLMMagicsError(UsageError):
    """A problem the user can fix. The magics show it without a traceback."""


class ConfigError(LLMMagicsError):
    """One or more problems in a training configuration, reported together."""

    def __init__(self, problems: str | list[str]):
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        if len(self.problems) == 1:
            message = self.problems[0]
        else:
            lines = "\n".join(f"  - {problem}" for problem in self.problems)
            message = f"{len(self.problems)} problems in the configuration:\n{lines}"
        super().__init__(message)


class DataError(LLMMagicsError):
    """The documents cannot become a training set (empty, missing field, wrong type)."""


class DataWarning(UserWarning):
    """What the data report finds in a run's documents (cut at max_length, duplicated), said at
    the run's start."""


class DatabaseError(LLMMagicsError):
    """The database cannot be reached or used."""


class ModelError(LLMMagicsError):
    """A model, adapter or checkpoint cannot be found or loaded."""


class RunError(LLMMagicsError):
    """A run cannot be found, started, stopped or resumed."""


# Run ids are 8 random hex digits: two of them share half their characters by chance (1234abcd and
# 2d34974b score 0.5), so an id is suggested only when it differs by a typo or two.
CLOSE_ID = 0.75


def did_you_mean(word: str, choices: Iterable[str], cutoff: float = 0.5) -> str:
    """Returns " — did you mean 'x'?" for the closest choice at least ``cutoff`` alike (difflib's
    ratio), or an empty string."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=cutoff)
    return f" — did you mean '{close[0]}'?" if close else ""


def one_of(choices: Iterable[object]) -> str:
    """Formats valid values for a message: 'a', 'b' or 'c'."""
    shown = [repr(choice) for choice in choices]
    if len(shown) <= 1:
        return "".join(shown)
    return f"{', '.join(shown[:-1])} or {shown[-1]}"
