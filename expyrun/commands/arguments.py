"""Argument parsing shared by the browsing commands: argparse errors as `UsageError`.

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
