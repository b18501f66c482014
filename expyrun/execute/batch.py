"""A batch of run folders prepared here for a scheduler: Slurm, the machine's queue or Ray.

Why one module: `launcher: slurm`, `launcher: ray` and `--queue` all hand over folders that are
complete before anything executes them (configs, the code snapshot, the git state of the copied
code, a `run.json` that says `queued`), one per run, sweep point or study worker; only where they
then wait differs (`execute/slurm_submit.py`, `execute/ray_submit.py`, `queue/enqueue.py`). A batch
knows every folder and parent it made, so a submission that fails before the scheduler has the
folders takes them all back (`discard`): exit 2, nothing left queued. With `--needed`, a run or
point whose config and code already completed is not prepared (`already_done`, `run/needed.py`).
Costs nothing at import: the git probe, the sweep record and `--needed` are imported when used.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from expyrun import console
from expyrun.run.folder import missing_parents, remove_created
from expyrun.run.prepare import STORE_FOLDER, PreparedRun, prepare_run, run_base, snapshot_source
from expyrun.run.status import Status

if TYPE_CHECKING:
    from expyrun.config import ResolvedConfig
    from expyrun.execute.launch_spec import LaunchSpec


def already_done(resolved: ResolvedConfig, git: Any) -> Path | None:
    """`--needed` for one run: the completed run with the same config and code, said on stderr, or None."""
    from expyrun.run.needed import code_digest, find_done

    done = find_done(resolved, code_digest(resolved, git.ignored()))
    if done is not None:
        console.info(f"already done: {done} has the same config and code (--needed): not submitted")
    return done


class Batch:
    """The folders one submission prepares, and how to take them all back. `launcher` is what
    run.json says until the node records its own (`slurm`, `ray`, `queue`)."""

    def __init__(self, resolved: ResolvedConfig, debug: bool, argv: list[str], cwd: Path, launcher: str) -> None:
        from expyrun.run.git_state import GitProbe

        self.resolved = resolved
        self.debug = debug
        self.argv = argv
        self.cwd = cwd
        self.launcher = launcher
        self.git = GitProbe(resolved.run.code, None if debug else snapshot_source(resolved.run))
        # per distinct `__code__` (a sweep may sweep it): its git probe and its first prepared folder,
        # whose snapshot the others with that code clone; each folder's code
        self.gits: dict[Path, GitProbe] = {snapshot_source(resolved.run): self.git}
        self.firsts: dict[Path, PreparedRun] = {}
        self.sources: dict[Path, Path] = {}  # run folder -> its snapshot source
        self.prepared: list[PreparedRun] = []
        self.created: list[Path] = []  # parents this launch made (deepest first within each group)
        self.store_made = False
        self.sweep_folder: Path | None = None
        self.sweep_record: Any = None

    def prepare_launch(self, launch: LaunchSpec, sweep: Any, study: Any, needed: bool, nothing: str) -> bool:
        """Every folder of the launch: the sweep's points, the study's workers or the one run (none
        when `--needed` finds it done); False, with `nothing` said, when no folder is left to hand over."""
        if sweep is not None:
            self.prepare_sweep(sweep, needed)
        elif needed and not self.debug and already_done(self.resolved, self.git) is not None:
            return False
        else:
            fields = {"study": study.study_name} if study is not None else {}
            for _ in range(launch.workers if study is not None else 1):
                self.prepare(self.resolved, dict(fields))
        if not self.prepared:
            self.close_sweep(Status.COMPLETED)
            console.info(f"every point is done already (--needed): {nothing}")
            return False
        return True

    def _note_parents(self, base: Path) -> None:
        self.created = missing_parents(base) + self.created
        store = self.resolved.run.output_dir / STORE_FOLDER
        if not self.debug and not store.exists():
            self.store_made = True

    def prepare(self, resolved: ResolvedConfig, fields: dict[str, Any]) -> PreparedRun:
        """One folder, `queued`, cloning the snapshot of the first folder with the same code."""
        self._note_parents(run_base(resolved, self.debug))
        fields.update(launcher=self.launcher, attempt=None)  # the node counts attempts
        source = snapshot_source(resolved.run)
        prepared = prepare_run(resolved, self.debug, self.argv, self.cwd, fields, self._git(resolved),
                               self.firsts.get(source))  # fmt: skip
        self.firsts.setdefault(source, prepared)
        self.sources[prepared.run_dir] = source
        self.prepared.append(prepared)
        return prepared

    def _git(self, resolved: ResolvedConfig) -> Any:
        """The git probe of this config's `__code__` (one per distinct code)."""
        from expyrun.run.git_state import GitProbe

        source = snapshot_source(resolved.run)
        if source not in self.gits:
            self.gits[source] = GitProbe(resolved.run.code, None if self.debug else source)
        return self.gits[source]

    def close_git(self) -> None:
        for git in self.gits.values():
            git.close()

    def prepare_sweep(self, sweep: Any, needed: bool) -> None:
        """The sweep folder and a folder per point (a point `--needed` finds done is skipped in sweep.json)."""
        from expyrun.run.folder import allocate_run_dir
        from expyrun.sweep.record import SweepRecord
        from expyrun.sweep.run import point_config, point_fields

        run = self.resolved.run
        points = [(point, point_config(self.resolved, point, self.cwd)) for point in sweep.points()]  # exit 2 first
        base = run.output_dir / "DEBUG" / sweep.name if self.debug else run.output_dir / sweep.name
        self.created = missing_parents(base) + self.created
        self.sweep_folder = allocate_run_dir(base, "sweep")
        self.sweep_record = SweepRecord(self.sweep_folder, sweep, self.argv, local=False)
        digests: dict[Path, str] = {}  # per distinct `__code__`
        for point, config in points:
            self.sweep_record.update(point.index, name=config.run.name)
            if needed and not self.debug:
                from expyrun.run.needed import code_digest, find_done_run

                source = snapshot_source(config.run)
                if source not in digests:
                    digests[source] = code_digest(config, self._git(config).ignored())
                done = find_done_run(config, digests[source])
                if done is not None:
                    self.sweep_record.skip(point.index, done)
                    continue
            fields = point_fields(self.sweep_folder, point)
            prepared = self.prepare(config, fields)
            self.sweep_record.update(point.index, run_dir=str(prepared.run_dir), status=Status.QUEUED)

    def close_sweep(self, status: str) -> None:
        if self.sweep_record is not None:
            self.sweep_record.close(status)

    def record_git(self) -> None:
        """The git state of the code as it was copied (here, now), in every folder: the node runs the copy."""
        if self.debug:
            return  # the node runs `__code__` as it is then, and reads its state then
        from expyrun.run.git_state import DIFF_FILE

        for source, git in self.gits.items():  # each folder gets the state of the code it copied
            group = [prepared for prepared in self.prepared if self.sources[prepared.run_dir] == source]
            state = git.state() if group else None
            if state is None:
                continue
            first = group[0]
            if state.dirty:
                git.write_diff(first.run_dir)
            for prepared in group:
                prepared.record["git"] = state.as_record()
                if prepared is not first and (first.run_dir / DIFF_FILE).exists():
                    os.link(first.run_dir / DIFF_FILE, prepared.run_dir / DIFF_FILE)

    def discard(self) -> None:
        """Remove every folder this launch made (runs, sweep folder, store and parents made for them)."""
        from expyrun.run.folder import discard_run_dir

        for prepared in self.prepared:
            discard_run_dir(prepared.run_dir, [])
        if self.sweep_record is not None:
            with contextlib.suppress(OSError):
                self.sweep_record.log.close()
                self.sweep_record.lines.close()
        if self.sweep_folder is not None:
            shutil.rmtree(self.sweep_folder, ignore_errors=True)
        if self.store_made:
            shutil.rmtree(self.resolved.run.output_dir / STORE_FOLDER, ignore_errors=True)
            remove_created([self.resolved.run.output_dir / ".expyrun"])
        remove_created(sorted(set(self.created), key=lambda p: -len(p.parts)))
