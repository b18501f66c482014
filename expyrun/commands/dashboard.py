"""`expyrun dashboard STUDY_RUN [--port P] [--allow-edits]`: serve optuna-dashboard for a study.

optuna-dashboard is imported by `browse.dashboard` only once the arguments are read, so this
module costs nothing to the other commands.
"""

from __future__ import annotations

from pathlib import Path

from expyrun.commands.arguments import CommandParser


def main(args: list[str]) -> int:
    """Serve the study of a study run folder until Ctrl-C."""
    parser = CommandParser(prog="expyrun dashboard")
    parser.add_argument("run")
    parser.add_argument("--port", type=int, help="first port to try (default 8080)")
    parser.add_argument("--allow-edits", action="store_true", help="let the dashboard change the study")
    options = parser.parse_args(args)
    from expyrun.browse.dashboard import dashboard

    return dashboard(Path(options.run), options.port, options.allow_edits)
