"""`expyrun resume RUN|SWEEP`: execute an interrupted, failed or died run again in its own folder,
or every unfinished point of a sweep in its sweep folder (SPEC 14).

One run: its status as `list` shows it decides (`run/resume.py`), the folder goes back to `queued`
with a line naming the next attempt, its sweep's row (for a sweep point) says so, and the node entry
executes it here with the plain hooks, whatever launched it first (`node.py`: attempt + 1,
`EXPYRUN_ATTEMPT`). A sweep: `campaign/resume.py`.
"""

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
        return _sweep(folder.absolute())
    from expyrun.reading.runs import require_run

    return resume_run(require_run(options.run).absolute())


def resume_run(run_dir: Path) -> int:
    """Execute `run_dir` again in place; the exit code of a local launch (0 completed, 1 failed...)."""
    from expyrun import console
    from expyrun.execute.node_hooks import NodeHooks
    from expyrun.execute.slurm_node import update_sweep
    from expyrun.node import execute_folder
    from expyrun.reading.runs import effective_status, load_record
    from expyrun.run.resume import check_resumable, prepare_attempt
    from expyrun.run.status import Status

    record = load_record(run_dir)
    shown = effective_status(record) if isinstance(record, dict) and record else ""
    record = check_resumable(run_dir, record, shown)
    attempt = prepare_attempt(run_dir, record)
    update_sweep(record, Status.QUEUED)  # a sweep point's row
    console.info(f"resuming {run_dir}: attempt {attempt}")
    return execute_folder(run_dir, NodeHooks())


def _sweep(folder: Path) -> int:
    """The sweep as `show` sees it now (its points' processes, its launcher's) decides what runs again."""
    from expyrun.campaign.resume import resume_sweep
    from expyrun.commands.launch import FLAGS
    from expyrun.errors import UsageError
    from expyrun.reading.runs import effective_sweep
    from expyrun.sweep.record import read_sweep

    try:
        data = effective_sweep(read_sweep(folder))
    except (OSError, ValueError, TypeError, KeyError, RecursionError) as error:
        hint = "give a folder such as outputs/NAME/sweep.0"
        raise UsageError(f"{folder}: not a readable sweep folder ({error})", hint) from None
    return resume_sweep(folder, data, FLAGS)
