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

import contextlib
import os
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from expyrun import console
from expyrun.campaign.loop import Next, PointFailed, run_points
from expyrun.errors import ExpyrunError
from expyrun.execute.contract import Job
from expyrun.execute.outcome import Outcome
from expyrun.run.status import Status
from expyrun.sweep.run import check_points, point_config, point_fields

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from expyrun.config import ResolvedConfig, RunSection
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
        # Per distinct `__code__` (a sweep may sweep it): git probe, `--needed` digest, the first point
        # whose snapshot later points clone; per distinct (interpreter, code): the point whose frozen
        # requirements and git state later points link. Each point's record describes what it ran.
        self.sources: dict[tuple[bool, Path, str], Path] = {}  # what each run section's snapshot copies
        self.codes: dict[Path, _Code] = {self._source(resolved.run): _Code(git, digest)}
        self.recorded: dict[tuple[str | None, Path], PreparedRun] = {}

    def next(self) -> Point | Literal[Next.EXHAUSTED]:
        return next(self.points, Next.EXHAUSTED)

    def prepare(self, point: Point) -> Job | None:
        from expyrun.run.launch import run_work

        try:
            config = point_config(self.resolved, point, self.cwd)
            self.record.update(point.index, name=config.run.name)
            code = self._code(config)
            if code.digest is not None:
                from expyrun.run.needed import find_done_run

                done = find_done_run(config, code.digest)
                if done is not None:
                    self.record.skip(point.index, done)
                    return None
            prepared = self._prepare(config, point, code)
        except (ExpyrunError, OSError) as error:
            raise PointFailed(self._failed(point, error)) from error
        code.first = code.first or prepared
        self.record.update(point.index, run_dir=str(prepared.run_dir), status=Status.QUEUED)
        return Job(prepared, run_work(prepared), {"EXPYRUN_SWEEP_POINT": str(point.index)})

    def _source(self, run: RunSection) -> Path:
        """`snapshot_source(run)`, found once per code and entry module (it looks at the file system:
        twice a point, a tenth of a millisecond each, in the sweep process that every point waits for)."""
        key = (run.is_command, run.code, run.module)
        source = self.sources.get(key)
        if source is None:
            from expyrun.run.prepare import snapshot_source

            source = self.sources[key] = snapshot_source(run)
        return source

    def _code(self, config: ResolvedConfig) -> _Code:
        """What the points running this point's `__code__` share, made when the first of them comes
        (a sweep over `__run__.__code__` snapshots and digests each code, not the first point's)."""
        from expyrun.run.git_state import GitProbe

        source = self._source(config.run)
        code = self.codes.get(source)
        if code is None:
            git = GitProbe(config.run.code, None if self.debug else source)
            digest = None
            if self.digest is not None:
                from expyrun.run.needed import code_digest

                digest = code_digest(config, git.ignored())
            code = self.codes[source] = _Code(git, digest)
        return code

    def _prepare(self, config: ResolvedConfig, point: Point, code: _Code) -> PreparedRun:
        """The point's folder; its snapshot cloned from the first point's with the same code, or copied
        afresh when that clone fails (the first point's folder was deleted or changed meanwhile)."""
        from expyrun.run.prepare import prepare_run

        fields = point_fields(self.record.folder, point)
        if code.first is None:
            return prepare_run(config, self.debug, self.argv, self.cwd, fields, code.git, None)
        try:
            return prepare_run(config, self.debug, self.argv, self.cwd, fields, code.git, code.first)
        except (ExpyrunError, OSError):  # the first point's files may be gone (in part): copy afresh
            prepared = prepare_run(config, self.debug, self.argv, self.cwd, fields, code.git, None)
            code.first = None  # (if that fails too, the failure is this point's own); later points
            return prepared  # clone this one

    def close(self) -> None:
        """End the git probes of the codes other than the sweep's own (run_sweep closes that one)."""
        for code in list(self.codes.values())[1:]:
            code.git.close()

    def _failed(self, point: Point, error: BaseException) -> Outcome:
        """A point that could not be prepared: `failed` in `sweep.json` with why, and its line."""
        message = str(error) if isinstance(error, ExpyrunError) else f"{type(error).__name__}: {error}"
        exception = {"type": type(error).__name__, "message": message}
        outcome = Outcome(Status.FAILED, 1, exception=exception)
        self.record.update(point.index, status=Status.FAILED, exception=exception)
        values = ", ".join(f"{k}={v}" for k, v in point.values.items())
        self.record.ended(point.index, f"point {point.index} failed (not prepared: {message}) ({values})")
        return outcome

    def gather(self, prepared: PreparedRun) -> None:
        """Frozen requirements and git state: gathered for the first point of each interpreter and
        code, linked for the others (a sweep over `__python__` freezes each interpreter's packages)."""
        from expyrun.run.freeze import FROZEN_FILE
        from expyrun.run.git_state import DIFF_FILE
        from expyrun.run.launch import record_environment

        run = prepared.resolved.run
        key = (None if run.python is None else str(run.python), self._source(run))
        source = self.recorded.get(key)
        if source is None or not os.path.isdir(source.run_dir):
            record_environment(prepared, self._code(prepared.resolved).git)
            self.recorded[key] = prepared
            return
        # string paths, and a link tried without looking first: this runs once a point, in the sweep process
        for name in (FROZEN_FILE, DIFF_FILE):
            with contextlib.suppress(FileNotFoundError):
                os.link(f"{source.run_dir}/{name}", f"{prepared.run_dir}/{name}")
        if "git" in source.record:
            prepared.record["git"] = source.record["git"]

    def started(self, job: Job) -> None:
        self.record.update(job.prepared.record["sweep"]["point"], status=Status.RUNNING)

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
        check_reused_code(spec)
    check_points(resolved, spec, cwd)  # a point whose config does not resolve is found before anything exists
    base = run.output_dir / "DEBUG" / spec.name if debug else run.output_dir / spec.name
    folder = allocate_run_dir(base, "sweep")
    record = SweepRecord(folder, spec, argv)
    console.info(f"sweep folder: {folder} ({spec.size} points)")
    git = GitProbe(run.code, None if debug else snapshot_source(run))

    def propose() -> SweepPoints:
        digest = None
        if needed and not debug:
            from expyrun.run.needed import code_digest

            digest = code_digest(resolved, git.ignored())
        return SweepPoints(resolved, spec, record, argv, debug, git, digest)

    return run_sweep_points(propose, folder, record, git, launch, cwd, debug)


def run_sweep_points(propose: Callable[[], SweepPoints], folder: Path, record: SweepRecord, git: GitProbe,
                     launch: LaunchSpec, cwd: Path, debug: bool) -> int:  # fmt: skip
    """The points `propose()` gives, on the sweep's executor; then the sweep's record is closed with
    what they gave (and the git probe with it, whatever happened) and the sweep's last line said.
    Shared by a sweep launched and one resumed."""
    status = Status.FAILED  # unless the loop returns: an error of ours
    try:
        proposer = propose()
        try:
            code = run_points(proposer, sweep_executor(launch, cwd, debug)).exit_code
        finally:
            proposer.close()
        status = {0: Status.COMPLETED, 1: Status.FAILED}.get(code, Status.INTERRUPTED)
    finally:
        git.close()
        record.close(status)
    counts = record.data["counts"]
    console.info(f"sweep {status}: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) + f": {folder}")
    return code


class _Code:
    """What the points running one `__code__` share: its git probe, its `--needed` digest (or None)
    and its first prepared point, whose snapshot the others clone."""

    def __init__(self, git: GitProbe, digest: str | None) -> None:
        self.git = git
        self.digest = digest
        self.first: PreparedRun | None = None


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


def check_reused_code(spec: SweepSpec) -> None:
    """A worker imports the entry module once, from one `__code__`, in one interpreter: a sweep over
    what is imported or who imports it cannot reuse workers (each point must run its own; exit 2)."""
    from expyrun.errors import ConfigError

    swept = {*spec.grid, *spec.zip, *(key for values in spec.variants.values() for key in values)}
    for key in sorted(swept):
        if key.removeprefix("+") in ("__run__.__code__", "__run__.__main__", "__run__.__python__"):
            raise ConfigError(
                f"`__launch__.reuse_workers`: `__sweep__` sweeps `{key.removeprefix('+')}`: a reused worker "
                "imports one entry point from one code folder",
                "remove reuse_workers: each point then runs its own code in its own process",
            )


def sweep_executor(launch: LaunchSpec, cwd: Path, debug: bool) -> Executor:
    """Where the points execute: forked run children, or reused worker processes (for a sweep
    launched here and one resumed by `campaign/resume.py`: the same `__launch__`, the same choice)."""
    if launch.reuse_workers:
        from expyrun.execute.reused_workers import ReusedWorkers

        return ReusedWorkers(launch.slots, launch.gpus, cwd, no_bytecode=not debug)
    from expyrun.execute.local import LocalExecutor

    return LocalExecutor(launch.slots, launch.gpus, fork_from_tee=True)
