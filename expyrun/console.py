"""Messages for people, on stderr.

On a terminal they go through rich (colour, markup-safe); elsewhere they are plain lines, so a
launch whose stderr is a file or a pipe does not pay for importing rich.
"""

from __future__ import annotations

import sys
from functools import cache
from typing import Any


@cache
def _rich_stderr() -> Any | None:
    if not sys.stderr.isatty():
        return None
    from rich.console import Console

    return Console(stderr=True, highlight=False, soft_wrap=True)


def _emit(label: str, style: str, message: str) -> None:
    console = _rich_stderr()
    if console is None:
        sys.stderr.write(f"expyrun: {label}: {message}\n")
        sys.stderr.flush()
        return
    from rich.text import Text

    console.print(Text.assemble(("expyrun: ", "bold"), (f"{label}: ", style), message))


def error(message: str) -> None:
    _emit("error", "bold red", message)


def warning(message: str) -> None:
    _emit("warning", "yellow", message)


def info(message: str) -> None:
    _emit("info", "cyan", message)
