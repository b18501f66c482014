"""`expyrun verify RUN [--rtol R] [--atol A]`: rerun a run from its snapshot in a matching environment
and say whether its result and metric curves reproduced (SPEC 14)."""

from __future__ import annotations

from expyrun.commands.arguments import CommandParser


def main(args: list[str]) -> int:
    """Exit 0 when the run reproduced (identical or within tolerance), 1 otherwise, 2 for bad input."""
    parser = CommandParser(prog="expyrun verify")
    parser.add_argument("run")
    parser.add_argument("--rtol", type=float, default=0.0, help="relative tolerance (default 0: exact)")
    parser.add_argument("--atol", type=float, default=0.0, help="absolute tolerance (default 0: exact)")
    options = parser.parse_args(args)
    from expyrun.errors import UsageError

    if options.rtol < 0 or options.atol < 0:
        raise UsageError("expyrun verify: --rtol and --atol must be 0 or more", "0 (the default) is exact")
    from expyrun.reading.runs import require_run
    from expyrun.verify.run import verify_run

    return verify_run(require_run(options.run), options.rtol, options.atol)
