"""The one exception hierarchy of expyrun.

Errors are raised deep in the code with a message a user can act on; only the command line
prints them (one line, no traceback) and turns them into an exit code.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable


class ExpyrunError(Exception):
    """An error the user can fix, carrying a one-line message and an optional hint."""

    exit_code = 2

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if self.hint is None else f"{self.message} ({self.hint})"


class ConfigError(ExpyrunError):
    """A configuration file, override or reference is wrong."""


class UsageError(ExpyrunError):
    """The command line itself is wrong."""


class EntryPointError(ExpyrunError):
    """The entry point named by `__run__.__main__` cannot be found or called."""


class Quiet:
    """Mixed into an exception expyrun's own run body raises on purpose (a study stopped by Ctrl-C,
    or ended with no completed trial): the launcher's one line says it, and a traceback through
    expyrun's modules would only look like a bug. An entry point's exceptions keep their traceback."""


def did_you_mean(
    word: str,
    choices: Iterable[str],
    otherwise: str | None = None,
    normalise: Callable[[str], str] | None = None,
) -> str | None:
    """The hint for a misspelt setting: "did you mean `closest`?", else `otherwise`.

    `normalise` compares what differs between names: without it the underscores every section
    shares make `__extra__` "close" to `__optuna__`. (`difflib` is imported only when a hint is
    needed: it is not on the launch path.)
    """
    import difflib

    normal = normalise or (lambda text: text)
    by_normal = {normal(choice): choice for choice in sorted(choices)}
    close = difflib.get_close_matches(normal(word), list(by_normal), n=1)
    return f"did you mean `{by_normal[close[0]]}`?" if close else otherwise
