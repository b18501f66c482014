"""`expyrun list [DIR] [--json]` (alias `ls`): every run below a folder, one line or JSON object each."""

from __future__ import annotations

from pathlib import Path

from expyrun.commands.arguments import CommandParser
from expyrun.errors import UsageError


def main(args: list[str]) -> int:
    """List the runs below DIR (default: the current folder)."""
    parser = CommandParser(prog="expyrun list")
    parser.add_argument("dir", nargs="?", default=".")
    parser.add_argument("--json", action="store_true", help="one JSON object per run on stdout")
    from expyrun.browse.listing import add_list_options, list_runs, sort_values

    add_list_options(parser)
    options = parser.parse_args(sort_values(args))

    root = Path(options.dir)
    if not root.is_dir():
        raise UsageError(f"{options.dir}: no such folder")
    return list_runs(root, options.json, options)
