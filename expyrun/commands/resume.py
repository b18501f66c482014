"""`expyrun resume RUN|SWEEP`: execute an interrupted, failed or died run again in its own folder,
or every unfinished point of a sweep in its sweep folder (SPEC 14)."""

from __future__ import annotations

from pathlib import Path

from expyrun.commands.arguments import CommandParser


def main(args: list[str]) -> int:
    """Resume one run folder, or a sweep folder (one holding `sweep.json`)."""
    parser = CommandParser(prog="expyrun resume")
    parser.add_argument("run")
    options = parser.parse_args(args)
    folder = Path(options.run)
    if (folder / "sweep.json").is_file():
        from expyrun.sweep.resume import resume_sweep

        return resume_sweep(folder)
    from expyrun.browse.runs import require_run
    from expyrun.run.resume import resume_run

    return resume_run(require_run(options.run))
