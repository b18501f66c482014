"""`expyrun worker [--jobs N] [--gpus auto|0,1] [--once]`: execute queued runs (SPEC 13; `queue/worker.py`)."""

from __future__ import annotations

from expyrun.commands.arguments import CommandParser
from expyrun.errors import UsageError


def main(args: list[str]) -> int:
    """Serve the queue (`$EXPYRUN_QUEUE`) until stopped, or until it is empty with `--once`; the exit
    code says whether every run executed completed (0, else 1), or the stop signal (130/143)."""
    parser = CommandParser(prog="expyrun worker")
    parser.add_argument("--jobs", type=int, default=1, help="runs executed at once (default 1)")
    parser.add_argument("--gpus", help="auto, or GPU ids such as 0,1: one per run, leased machine-wide")
    parser.add_argument(
        "--once", action="store_true", help="stop when the queue is empty; exit 1 if a run it executed did not complete"
    )
    options = parser.parse_args(args)
    if options.jobs < 1:
        raise UsageError(f"expyrun worker: --jobs {options.jobs}: expected 1 or more")
    gpus = None
    if options.gpus is not None:
        from expyrun.execute.launch_spec import parse_launch

        value = "auto" if options.gpus == "auto" else [part.strip() for part in options.gpus.split(",")]
        gpus = parse_launch({"gpus": value}, None).gpus
    from expyrun.queue.store import writable_folder
    from expyrun.queue.worker import Worker

    return Worker(writable_folder(), options.jobs, gpus, options.once).run()
