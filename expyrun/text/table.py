"""Aligned text tables for people: plain into a pipe or a file, ANSI colour on a terminal.

`expyrun list` draws one row per run, and 10,000 runs are a normal output folder: rich's `Table`
took 5 s to lay them out (every cell becomes styled, measured and wrapped objects), where joining
padded strings takes milliseconds. Both outputs share one layout, so a terminal shows exactly what
a pipe receives, with colour added around whole lines (escape codes never enter a width).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence

from expyrun.console import visible

BOLD = "\x1b[1m"
RESET = "\x1b[0m"
COLOURS = {"red": "\x1b[31m", "yellow": "\x1b[33m"}
GAP = "  "
MIN_WRAP = 20  # narrower than this, the last column is left to the terminal's own wrapping


def cell_width(text: str) -> int:
    """Terminal columns `text` takes: wide East Asian characters take two, combining marks none.

    Counting characters would misalign every row holding a CJK path or value; the check is paid
    only by non-ASCII text.
    """
    if text.isascii():
        return len(text)
    return sum(0 if unicodedata.combining(c) else 2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def printable(text: str) -> str:
    """`text` with control characters escaped (`\\n`, `\\x1b`).

    Cells come from folder names and config values; a newline would break the one-line-per-row
    layout and an escape sequence would drive the user's terminal.
    """
    return visible(text, one_line=True)


def _pad(text: str, width: int) -> str:
    return text + " " * (width - cell_width(text))


def _wrap(text: str, width: int) -> list[str]:
    """`text` cut at spaces into lines of at most `width` columns (a longer word stays whole)."""
    lines: list[str] = []
    line = ""
    for word in text.split(" "):
        if line and cell_width(line) + 1 + cell_width(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    return [*lines, line]


def render(
    header: Sequence[str],
    rows: Sequence[Sequence[str]],
    styles: Sequence[str | None] | None = None,
    colour: bool = False,
    width: int | None = None,
) -> str:
    """The table as text, one line per row (more when the last column wraps), header first.

    Every column but the last is padded to its widest cell; the last is not padded (no trailing
    blanks) and, given the terminal `width`, wraps at spaces under its own column instead of
    running into the next line's first column. `styles` names a colour per row (`COLOURS`);
    `colour` turns colour and a bold header on, for a terminal only.
    """
    table = [[printable(cell) for cell in line] for line in (header, *rows)]
    widths = [max(cell_width(line[i]) for line in table) for i in range(len(header) - 1)]
    indent = sum(widths) + len(GAP) * len(widths)
    last_width = width - indent if width and width - indent >= MIN_WRAP else None
    row_styles = [BOLD, *(COLOURS.get(style or "", "") for style in styles or [None] * len(rows))]
    out = []
    for line, style in zip(table, row_styles, strict=True):
        lead = GAP.join(_pad(cell, w) for cell, w in zip(line, widths, strict=False)) + GAP
        last = line[-1]
        if last_width is None or cell_width(last) <= last_width:
            text = (lead + last).rstrip(" ")
        else:
            first, *rest = _wrap(last, last_width)
            text = "\n".join([lead + first, *(" " * indent + part for part in rest)])
        out.append(f"{style}{text}{RESET}\n" if colour and style else text + "\n")
    return "".join(out)
