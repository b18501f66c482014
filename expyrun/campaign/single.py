"""One run launched: the proposer of a single point, `--needed`, and the launch of one config.

The folder is prepared before the loop starts (as before the refactor): a Ctrl-C or an error
while it is prepared removes it again and creates nothing, which the loop's stop handlers, once
installed, would turn into an `interrupted` run instead.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from expyrun import console
from expyrun.campaign.loop import Next, run_points
from expyrun.execute.contract import Job
from expyrun.execute.outcome import Outcome
from expyrun.run.status import Status

if TYPE_CHECKING:
    from expyrun.config import ResolvedConfig
    from expyrun.run.git_state import GitProbe
    from expyrun.run.prepare import PreparedRun


class SingleRun:
    """Proposes one prepared run; records its environment at start and reports how it ended."""

    def __init__(
        self, job: Job, git: GitProbe, config_file: Path | None, after: Callable[[Path, Outcome], None] | None = None
    ) -> None:
        self.job: Job | None = job
        self.git = git
        self.config_file = config_file
        self.after = after
        self.outcome: Outcome | None = None

    def next(self) -> Job | Literal[Next.EXHAUSTED]:
        job, self.job = self.job, None
        return Next.EXHAUSTED if job is None else job

    def prepare(self, point: Job) -> Job:
        return point

    def gather(self, prepared: PreparedRun) -> None:
        from expyrun.run.launch import record_environment

        record_environment(prepared, self.git, self.config_file)

    def started(self, job: Job) -> None:
        pass

    def tell(self, job: Job, outcome: Outcome) -> None:
        from expyrun.run.launch import report

        self.outcome = outcome
        if self.after is not None:  # a study settles the trials its dead process left running
            self.after(job.prepared.run_dir, outcome)
        report(outcome, job.prepared.run_dir)

    def tick(self) -> None:
        pass


def launch(
    resolved: ResolvedConfig,
    debug: bool,
    argv: list[str],
    config_file: Path | None = None,
    body: Callable[[Path, Path], Any] | None = None,
    record_fields: dict[str, Any] | None = None,
    gpus: tuple[str, ...] | None = None,
    needed: bool = False,
    after: Callable[[Path, Outcome], None] | None = None,
) -> int:
    """Run `resolved` in a new run folder; returns the exit code.

    `body(run_dir, import_root)` is what the run child does: by default, call the entry point.
    `gpus`: the ids the run may take one of (it gets the first; `run.json` records it).
    `needed`: do nothing when a completed run of the same config and code exists (`--needed`).
    `after(run_dir, outcome)`: called in this process once the run ended, before its end is reported.
    """
    from expyrun.run.git_state import GitProbe
    from expyrun.run.prepare import prepare_run, snapshot_source

    run = resolved.run
    git = GitProbe(run.code, None if debug else snapshot_source(run))
    try:
        if needed and not debug:
            from expyrun.run.needed import code_digest, find_done

            done = find_done(resolved, code_digest(resolved, git.ignored()))
            if done is not None:
                console.info(f"already done: {done} has the same config and code (--needed): not run again")
                return 0
        prepared = prepare_run(resolved, debug, argv, Path.cwd(), record_fields, git)
        console.info(f"run folder: {prepared.run_dir}")
        return _execute(prepared, body, git, config_file, gpus, after)
    finally:
        git.close()


def _execute(
    prepared: PreparedRun,
    body: Callable[[Path, Path], Any] | None,
    git: GitProbe,
    config_file: Path | None,
    gpus: tuple[str, ...] | None,
    after: Callable[[Path, Outcome], None] | None = None,
) -> int:
    from expyrun.execute.local import LocalExecutor
    from expyrun.run.launch import finish_record, report, run_work

    job = Job(prepared, run_work(prepared, body), reads_result=body is None)
    proposer = SingleRun(job, git, config_file, after)
    result = run_points(proposer, LocalExecutor(gpus=gpus))
    if proposer.outcome is None:  # stopped before it could start: interrupted all the same
        outcome = Outcome(Status.INTERRUPTED, result.exit_code)
        finish_record(prepared, outcome, 0.0)
        report(outcome, prepared.run_dir)
        result.outcomes.append(outcome)
    return result.exit_code
