"""A sweep's points proposed to the one loop: each an ordinary run folder, prepared when a slot frees.

Points are resolved and prepared one at a time, so the sweep's memory does not grow with its
size. What cannot differ between points is computed once: the code snapshot (later points hard-link
the first point's files), the frozen requirements and the git state. A point whose folder cannot
be prepared (its template fails for its values only; the first point's folder, whose snapshot the
others clone, was deleted) fails alone: its row and its line say why, and the sweep goes on.
`sweep.json` (through `expyrun.sweep.record`) is kept current; its `outputs.log` gets a line per
point as it ends.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from expyrun import console
from expyrun.campaign.loop import Next, PointFailed, run_points
from expyrun.errors import ExpyrunError
from expyrun.execute.contract import Job
from expyrun.execute.outcome import Outcome
from expyrun.sweep.run import check_points, point_config, point_fields

if TYPE_CHECKING:
    from collections.abc import Iterator

    from expyrun.config import ResolvedConfig
    from expyrun.execute.contract import Executor
    from expyrun.execute.launch_spec import LaunchSpec
    from expyrun.run.git_state import GitProbe
    from expyrun.run.prepare import PreparedRun
    from expyrun.sweep.record import SweepRecord
    from expyrun.sweep.spec import Point, SweepSpec


class SweepPoints:
    """Proposes the sweep's points in order; records each in `sweep.json` as it is prepared, starts and ends."""

    def __init__(
        self,
        resolved: ResolvedConfig,
        spec: SweepSpec,
        record: SweepRecord,
        argv: list[str],
        debug: bool,
        git: GitProbe,
        digest: str | None,
    ) -> None:
        self.resolved = resolved
        self.record = record
        self.argv = argv
        self.debug = debug
        self.git = git
        self.digest = digest  # the code digest `--needed` compares, or None
        self.cwd = Path.cwd()
        self.points: Iterator[Point] = spec.points()
        self.first: PreparedRun | None = None  # whose snapshot later points clone
        self.recorded: PreparedRun | None = None  # whose requirements and git state later points link

    def next(self) -> Point | Literal[Next.EXHAUSTED]:
        return next(self.points, Next.EXHAUSTED)

    def prepare(self, point: Point) -> Job | None:
        from expyrun.run.launch import run_work

        try:
            config = point_config(self.resolved, point, self.cwd)
            self.record.update(point.index, name=config.run.name)
            if self.digest is not None:
                from expyrun.run.needed import find_done_run

                done = find_done_run(config, self.digest)
                if done is not None:
                    self.record.skip(point.index, done)
                    return None
            prepared = self._prepare(config, point)
        except (ExpyrunError, OSError) as error:
            raise PointFailed(self._failed(point, error)) from error
        self.first = self.first or prepared
        self.record.update(point.index, run_dir=str(prepared.run_dir), status="queued")
        return Job(prepared, run_work(prepared), {"EXPYRUN_SWEEP_POINT": str(point.index)})

    def _prepare(self, config: ResolvedConfig, point: Point) -> PreparedRun:
        """The point's folder; its snapshot cloned from the first point's, or copied afresh when that
        clone fails (the first point's folder was deleted or changed meanwhile)."""
        from expyrun.run.prepare import prepare_run

        fields = point_fields(self.record.folder, point)
        if self.first is None:
            return prepare_run(config, self.debug, self.argv, self.cwd, fields, self.git, None)
        try:
            return prepare_run(config, self.debug, self.argv, self.cwd, fields, self.git, self.first)
        except (ExpyrunError, OSError):
            if self.first.run_dir.is_dir() and (self.first.run_dir / "run.json").is_file():
                raise  # the first point is intact: the failure is this point's own
            self.first = None
            return prepare_run(config, self.debug, self.argv, self.cwd, fields, self.git, None)

    def _failed(self, point: Point, error: BaseException) -> Outcome:
        """A point that could not be prepared: `failed` in `sweep.json` with why, and its line."""
        message = str(error) if isinstance(error, ExpyrunError) else f"{type(error).__name__}: {error}"
        exception = {"type": type(error).__name__, "message": message}
        outcome = Outcome("failed", 1, exception=exception)
        self.record.update(point.index, status="failed", exception=exception)
        values = ", ".join(f"{k}={v}" for k, v in point.values.items())
        self.record.ended(point.index, f"point {point.index} failed (not prepared: {message}) ({values})")
        return outcome

    def gather(self, prepared: PreparedRun) -> None:
        """Frozen requirements and git state: gathered for the first point, linked for the others."""
        from expyrun.run.freeze import FROZEN_FILE
        from expyrun.run.git_state import DIFF_FILE
        from expyrun.run.launch import record_environment

        source = self.recorded
        if source is None or not source.run_dir.is_dir():
            record_environment(prepared, self.git)
            self.recorded = prepared
            return
        for name in (FROZEN_FILE, DIFF_FILE):
            if (source.run_dir / name).exists():
                os.link(source.run_dir / name, prepared.run_dir / name)
        if "git" in source.record:
            prepared.record["git"] = source.record["git"]

    def started(self, job: Job) -> None:
        self.record.update(job.prepared.record["sweep"]["point"], status="running")

    def tell(self, job: Job, outcome: Outcome) -> None:
        prepared = job.prepared
        index = prepared.record["sweep"]["point"]
        self.record.update(index, status=outcome.status, result=outcome.result)
        values = ", ".join(f"{k}={v}" for k, v in prepared.record["sweep"]["overrides"].items())
        exception = outcome.exception or {}
        why = f" ({exception.get('type', 'error')}: {exception.get('message', '')})" if exception else ""
        self.record.ended(index, f"point {index} {outcome.status}{why} ({values}): {prepared.run_dir}")

    def tick(self) -> None:
        self.record.write()


def run_sweep(
    resolved: ResolvedConfig, spec: SweepSpec, launch: LaunchSpec, argv: list[str], debug: bool, needed: bool
) -> int:
    """Run every point of the sweep; exit 0 when all completed or were skipped, 1 if any failed."""
    from expyrun.run.folder import allocate_run_dir
    from expyrun.run.git_state import GitProbe
    from expyrun.run.prepare import snapshot_source
    from expyrun.sweep.record import SweepRecord

    cwd = Path.cwd()
    run = resolved.run
    if launch.reuse_workers:
        check_reuse_workers(resolved)
    check_points(resolved, spec, cwd)  # a point whose config does not resolve is found before anything exists
    base = run.output_dir / "DEBUG" / spec.name if debug else run.output_dir / spec.name
    folder = allocate_run_dir(base, "sweep")
    record = SweepRecord(folder, spec, argv)
    console.info(f"sweep folder: {folder} ({spec.size} points)")
    git = GitProbe(run.code, None if debug else snapshot_source(run))
    status = "failed"  # unless the loop returns: an error of ours
    try:
        digest = None
        if needed and not debug:
            from expyrun.run.needed import code_digest

            digest = code_digest(resolved, git.ignored())
        proposer = SweepPoints(resolved, spec, record, argv, debug, git, digest)
        result = run_points(proposer, _executor(launch, cwd, debug))
        code = result.exit_code
        status = {0: "completed", 1: "failed"}.get(code, "interrupted")
    finally:
        git.close()
        record.close(status)
    counts = record.data["counts"]
    console.info(f"sweep {status}: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) + f": {folder}")
    return code


def check_reuse_workers(resolved: ResolvedConfig) -> None:
    """`__launch__.reuse_workers` needs a Python entry point run by expyrun's interpreter: a command
    or `__python__` executes a new program per point, so there is nothing to import once (exit 2)."""
    from expyrun.errors import ConfigError

    run = resolved.run
    if run.is_command or run.python is not None:
        what = "`__command__`" if run.is_command else "`__python__`"
        raise ConfigError(
            f"`__launch__.reuse_workers`: needs a `__main__` entry point run by expyrun's interpreter, not {what}",
            "a command or another interpreter starts a new process per point anyway: remove reuse_workers",
        )


def _executor(launch: LaunchSpec, cwd: Path, debug: bool) -> Executor:
    """Where the points execute: forked run children, or reused worker processes."""
    if launch.reuse_workers:
        from expyrun.execute.reused_workers import ReusedWorkers

        return ReusedWorkers(launch.slots, launch.gpus, cwd, no_bytecode=not debug)
    from expyrun.execute.local import LocalExecutor

    return LocalExecutor(launch.slots, launch.gpus)
