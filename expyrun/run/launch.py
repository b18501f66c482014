"""The steps of one run around its execution: what its child does, its start and end in the record.

Whoever executes a prepared folder calls them (the loop, `campaign/`, for runs and sweep points;
the node entry, `expyrun/node.py`, on a cluster node): git state and frozen requirements are
recorded while the run already works, the outcome of a command run is read from its exit status
and result file, and the end is reported. (Launching one run is `campaign/single.py`.)
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from expyrun import console
from expyrun.config import RunSection
from expyrun.run.capture import LOG_FILE
from expyrun.run.entry_point import call_entry_point
from expyrun.run.outcome import Outcome
from expyrun.run.prepare import PreparedRun
from expyrun.run.record import RUN_FILE, mark_outcome, mark_started
from expyrun.run.status import Status

if TYPE_CHECKING:
    from expyrun.run.git_state import GitProbe


def run_work(prepared: PreparedRun, body: Callable[[Path, Path], Any] | None = None) -> Any:
    """What the run child does: a study driver (`body`), a command or `__python__` entry point to
    `exec`, or the entry point called in the child itself."""
    resolved = prepared.resolved
    if body is not None:
        return partial(body, prepared.run_dir, prepared.import_root)
    if resolved.run.is_command or resolved.run.python is not None:
        from expyrun.run.command import exec_spec

        return exec_spec(resolved, prepared.run_dir, prepared.import_root)
    return partial(call_entry_point, resolved.run, prepared.import_root, resolved.user_config())


def complete_outcome(outcome: Outcome, run: RunSection, run_dir: Path) -> Outcome:
    """A command run's exit status and `__result__` file turned into its outcome."""
    if not run.is_command and run.result_file is None:
        return outcome
    from expyrun.run import command

    return command.complete_outcome(outcome, run, run_dir)


def record_start(prepared: PreparedRun, gpu: str | None, gather: Callable[[], None]) -> None:
    """The run has started: `running`, with the launcher's pid (gone: `list` says died), its GPU and
    the environment `gather` adds, in one write. The run is already working: neither a failure to
    gather nor to write is a reason to stop it."""
    mark_started(prepared.record, os.getpid(), gpu)
    try:
        gather()
    except Exception as error:
        console.warning(f"could not record the environment: {type(error).__name__}: {error}")
    try:
        prepared.write_record()
    except OSError as error:
        console.warning(f"could not write {prepared.run_dir / RUN_FILE}: {error.strerror}")


def finish_record(prepared: PreparedRun, outcome: Outcome, duration_s: float) -> None:
    """The end of the record: status, times, result and exception with secrets scrubbed."""
    resolved = prepared.resolved
    outcome.exception, outcome.result = resolved.scrub(outcome.exception), resolved.scrub(outcome.result)
    if outcome.log_error is not None:
        console.warning(f"{prepared.run_dir / LOG_FILE} is incomplete: {outcome.log_error}")
    mark_outcome(prepared.record, outcome, duration_s)
    from expyrun.track.files import METRICS_FILE, SKIPPED_FILE

    # what the run logged (SPEC 11.1), whatever its status; a run that logged nothing imports nothing for it
    if any(os.path.exists(prepared.run_dir / name) for name in (METRICS_FILE, SKIPPED_FILE)):
        from expyrun.track.metrics import finish_fields

        prepared.record.update(finish_fields(prepared.run_dir))
    prepared.release_reserve()
    try:
        prepared.write_record()
    except OSError as error:
        console.error(f"cannot write {prepared.run_dir / RUN_FILE}: {error.strerror} (was the run folder removed?)")


def record_environment(prepared: PreparedRun, git: GitProbe | None, config_file: Path | None = None) -> None:
    """Git state and frozen requirements, gathered while the run already works; `git` None: the
    git state was recorded where the snapshot was taken (a Slurm node runs the copied code)."""
    run_dir, record = prepared.run_dir, prepared.record
    if not prepared.debug:
        from expyrun.run.freeze import FROZEN_FILE, requirement_drift, write_frozen_requirements

        run = prepared.resolved.run
        write_frozen_requirements(run_dir, run.output_dir / ".expyrun" / "frozen", run.python)
        stored = config_file.parent / FROZEN_FILE if config_file is not None else None
        if stored is not None and stored.is_file() and stored != run_dir / FROZEN_FILE:
            drift = requirement_drift(stored, run.python)  # the run's interpreter, not expyrun's
            if drift:
                console.warning(
                    f"installed packages differ from {stored} ({len(drift)}): "
                    + "; ".join(drift[:20])
                    + (" ..." if len(drift) > 20 else "")
                )
    state = git.state() if git is not None else None
    if git is not None and state is not None:
        record["git"] = state.as_record()
        if state.dirty:
            git.write_diff(run_dir)


def report(outcome: Outcome, run_dir: Path) -> None:
    if outcome.status == Status.COMPLETED:
        console.info(f"completed: {run_dir}")
    elif outcome.status == Status.INTERRUPTED:
        console.warning(f"interrupted: {run_dir}")
    else:
        exception = outcome.exception or {}
        console.error(f"run failed ({exception.get('type', 'error')}: {exception.get('message', '')}): {run_dir}")
    sys.stderr.flush()
