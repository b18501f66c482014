"""`expyrun diff RUN_A RUN_B`: config keys, requirements and commit that differ between two runs."""

from __future__ import annotations

import sys

from expyrun.commands.arguments import CommandParser


def main(args: list[str]) -> int:
    """Print the differences between two run folders on stderr."""
    parser = CommandParser(prog="expyrun diff")
    parser.add_argument("run_a")
    parser.add_argument("run_b")
    parser.add_argument("--code", action="store_true", help="also a unified diff of the two code snapshots")
    options = parser.parse_args(args)
    from expyrun.browse.diff import render_diff
    from expyrun.reading.runs import require_run

    sys.stderr.write(render_diff(require_run(options.run_a), require_run(options.run_b), options.code))
    return 0
