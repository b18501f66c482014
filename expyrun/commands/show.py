"""`expyrun show RUN`: a run's (or a sweep's) metadata, resolved config and last log lines, on stderr."""

from __future__ import annotations

import sys
from pathlib import Path

from expyrun.commands.arguments import CommandParser


def main(args: list[str]) -> int:
    """Show one run folder, or a sweep folder (one holding `sweep.json`)."""
    parser = CommandParser(prog="expyrun show")
    parser.add_argument("run")
    options = parser.parse_args(args)
    from expyrun.browse.show import render_show, render_sweep

    if (Path(options.run) / "sweep.json").is_file():
        sys.stderr.write(render_sweep(Path(options.run)))
        return 0
    from expyrun.reading.runs import require_run

    sys.stderr.write(render_show(require_run(options.run)))
    return 0
