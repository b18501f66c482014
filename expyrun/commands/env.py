"""`expyrun env RUN [--venv PATH] [--check]`: compare or rebuild a run's frozen environment."""

from __future__ import annotations

from pathlib import Path

from expyrun.commands.arguments import CommandParser


def main(args: list[str]) -> int:
    """Check this interpreter against RUN's requirements (exit 1 on differences), or sync `--venv`."""
    parser = CommandParser(prog="expyrun env")
    parser.add_argument("run")
    parser.add_argument("--venv", type=Path, help="create or sync this virtual environment")
    parser.add_argument("--check", action="store_true", help="only compare with this interpreter")
    options = parser.parse_args(args)
    from expyrun.reading.runs import require_run
    from expyrun.verify.restore import check, restore

    run_dir = require_run(options.run)
    if options.check or options.venv is None:
        return check(run_dir)
    return restore(run_dir, options.venv)
