"""Messages for people, on stderr, and `visible()`: what expyrun prints of config and run data.

On a terminal messages go through rich (colour, markup-safe); elsewhere they are plain lines, so a
launch whose stderr is a file or a pipe does not pay for importing rich.

Config values, names, paths, exception texts and log lines are not expyrun's to trust: a value
holding ESC `]0;...` retitles the user's terminal, ESC `[2J` clears it, and the same bytes in a
log file act when the file is `cat`. Everything expyrun prints that came from a config or a run
goes through `visible()` (every message of this module does), and what goes through rich is
never read as markup (an objective named `[/]` is a markup error).
"""

from __future__ import annotations

import sys
from functools import cache
from typing import Any


def visible(text: object, one_line: bool = False) -> str:
    """`text` with control characters shown as escapes (`\\x1b`, `\\r`, `\\u202e`) instead of acting.

    Newlines and tabs are kept unless `one_line` (a value inside a one-line record or a table
    cell). Printable text, the common case, is returned as is after one C-level check.
    """
    text = str(text)
    if text.isprintable():
        return text
    keep = "" if one_line else "\n\t"
    return "".join(c if c.isprintable() or c in keep else _escaped(c) for c in text)


def _escaped(char: str) -> str:
    """One character as Python writes it in a string literal: `\\x1b`, `\\t`, `\\u202e`."""
    return char.encode("unicode_escape").decode("ascii")


@cache
def _rich_stderr() -> Any | None:
    if not sys.stderr.isatty():
        return None
    from rich.console import Console

    return Console(stderr=True, highlight=False, soft_wrap=True)


def _emit(label: str, style: str, message: str) -> None:
    message = visible(message)
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
