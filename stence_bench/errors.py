"""Errors a user can cause and fix. The CLI prints them as one line and exits 2; anything else is a bug."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class StenceBenchError(Exception):
    """A user error (bad input, bad configuration, bad environment): reported in one line, no traceback."""

    exit_code = 2


class UnknownNameError(StenceBenchError, KeyError):
    """A name that is not registered."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0])


class DuplicateNameError(StenceBenchError):
    """Two plugins registered the same name."""


class PluginError(StenceBenchError):
    """A plugin failed to import, registered something invalid, or implements an unknown hook."""


class SuiteError(StenceBenchError):
    """A suite file that cannot be read or does not validate. One line per problem."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """`"; did you mean 'x'?"` for the closest choice, or `""` when nothing is close."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def unknown_name_message(kind: str, name: str, known: Iterable[str], context: str = "") -> str:
    """`unknown encoder 'x'; did you mean 'y'? (known: a, b, c)`; ``context`` follows the name (`" of ..."`)."""
    known = sorted(known)
    listing = ", ".join(known) if known else "none registered"
    return f"unknown {kind} {name!r}{context}{did_you_mean(name, known)} (known: {listing})"
