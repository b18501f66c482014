"""Argument parsing shared by the commands: argparse errors as `UsageError`, and did-you-mean.

`cli.py` prints every error once (one line, exit 2); argparse's own `error` would print a usage
block and exit by itself, so the commands' parsers raise instead.
"""

from __future__ import annotations

import argparse
from typing import NoReturn

from expyrun.errors import UsageError


class CommandParser(argparse.ArgumentParser):
    """An argparse parser whose mistakes are `UsageError`s (printed by the CLI as one line)."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message}", f"see {self.prog} --help")


def misspelt(word: str, choices: tuple[str, ...]) -> str | None:
    """The choice `word` is a misspelling of (`--dryrun`, `--Debug`, `--neded`, `lst`), or None.

    Compared without dashes and case, and closer than `difflib`'s default: `--seed` is a key, not
    a misspelt `--needed`.
    """
    import difflib

    def bare(text: str) -> str:
        return text.lstrip("-").lower().replace("_", "-")

    by_bare = {bare(choice): choice for choice in choices}
    close = difflib.get_close_matches(bare(word), list(by_bare), n=1, cutoff=0.75)
    return by_bare[close[0]] if close else None
