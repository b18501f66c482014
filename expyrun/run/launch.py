"""Launching a resolved config as one run: prepare its folder, execute it locally, finish its record.

The launcher (this process) supervises through the local executor; a forked tee writes
`outputs.log`; a forked run child, leader of its own process group, calls the entry point (or a
study driver). Git state and frozen requirements are recorded while the run already works.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from expyrun import console
from expyrun.config import ResolvedConfig, RunSection
from expyrun.execute.local import Job, LocalExecutor, exit_code
from expyrun.run.capture import LOG_FILE
from expyrun.run.entry_point import call_entry_point
from expyrun.run.outcome import Outcome
from expyrun.run.prepare import PreparedRun, prepare_run, snapshot_source
from expyrun.run.record import RUN_FILE, mark_outcome, mark_started
from expyrun.run.status import Status

if TYPE_CHECKING:
    from expyrun.run.git_state import GitProbe


def launch(
    resolved: ResolvedConfig,
    debug: bool,
    argv: list[str],
    config_file: Path | None = None,
    body: Callable[[Path, Path], Any] | None = None,
    record_fields: dict[str, Any] | None = None,
    gpus: tuple[str, ...] | None = None,
    needed: bool = False,
) -> int:
    """Run `resolved` in a new run folder; returns the exit code.

    `body(run_dir, import_root)` is what the run child does: by default, call the entry point.
    `gpus`: the ids the run may take one of (it gets the first; `run.json` records it).
    `needed`: do nothing when a completed run of the same config and code exists (`--needed`).
    """
    from expyrun.run.git_state import GitProbe

    run = resolved.run
    git = GitProbe(run.code, None if debug else snapshot_source(run))
    try:
        if needed and not debug:
            from expyrun.run.needed import code_digest, find_done

            done = find_done(resolved, code_digest(resolved, git.ignored()))
            if done is not None:
                console.info(f"already done: {done} has the same config and code (--needed): not run again")
                return 0
        return _launch(resolved, debug, argv, config_file, body, record_fields, git, gpus)
    finally:
        git.close()


def _launch(
    resolved: ResolvedConfig,
    debug: bool,
    argv: list[str],
    config_file: Path | None,
    body: Callable[[Path, Path], Any] | None,
    record_fields: dict[str, Any] | None,
    git: GitProbe,
    gpus: tuple[str, ...] | None,
) -> int:
    prepared = prepare_run(resolved, debug, argv, Path.cwd(), record_fields, git)
    console.info(f"run folder: {prepared.run_dir}")
    work = run_work(prepared, body)
    started = time.monotonic()

    def on_start(job: Job, pid: int, gpu: str | None) -> None:
        record_start(job.prepared, gpu, lambda: record_environment(prepared, git, config_file))

    executor = LocalExecutor(gpus=gpus, on_start=on_start)
    outcomes = executor.execute([Job(prepared, work)])
    outcome = outcomes[0] if outcomes else Outcome(Status.INTERRUPTED, exit_code([], executor.stopped_by))
    if body is None:  # a study's own run has no result file: its trials do
        outcome = complete_outcome(outcome, prepared.resolved.run, prepared.run_dir)
        outcomes = [outcome]
    finish_record(prepared, outcome, time.monotonic() - started)
    report(outcome, prepared.run_dir)
    return exit_code(outcomes, executor.stopped_by)


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
    from expyrun.track.metrics import finish_fields

    prepared.record.update(finish_fields(prepared.run_dir))  # what the run logged (SPEC 11.1), whatever its status
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
