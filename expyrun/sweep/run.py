"""Running a sweep: every point an ordinary run folder, executed by the local executor.

Points are resolved and prepared one at a time, when a slot frees, so the sweep's memory does
not grow with its size. What cannot differ between points is computed once: the code snapshot
(later points hard-link the first point's files), the frozen requirements and the git state.
`{output_dir}/{name}/sweep.{i}/sweep.json` is kept current; its `outputs.log` gets a line per
point as it ends.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from expyrun import console
from expyrun.config import ResolvedConfig
from expyrun.config.overrides import add_key, existing_key
from expyrun.config.resolve import interpolate, resolution_environ
from expyrun.config.tree import copy_tree, set_at
from expyrun.execute.launch_spec import LaunchSpec
from expyrun.execute.local import Job, LocalExecutor, exit_code
from expyrun.execute.outcome import Outcome
from expyrun.run.folder import allocate_run_dir
from expyrun.run.git_state import DIFF_FILE, GitProbe
from expyrun.run.launch import complete_outcome, finish_record, record_environment, record_start, run_work
from expyrun.run.prepare import PreparedRun, prepare_run, snapshot_source
from expyrun.sweep.record import SWEEP_FILE, SWEEP_LOG, SweepRecord
from expyrun.sweep.references import set_point_references
from expyrun.sweep.spec import Point, SweepSpec

__all__ = ["SWEEP_FILE", "SWEEP_LOG", "SweepRecord", "describe_points", "point_config", "point_fields", "run_sweep"]


def point_config(resolved: ResolvedConfig, point: Point, cwd: Path) -> ResolvedConfig:
    """The point's config: its values set in the raw config, as overrides are, and its variant and
    index where `{__sweep__.variant}` and `{__sweep__.point}` name them; then interpolated.

    The config without its `__sweep__` section is taken once per sweep (`_base`): copying the section
    for every point made checking a swept list of N values cost N^2."""
    raw, environ = _base(resolved, cwd)
    raw = copy_tree(raw)
    paths = set()
    for key, value in point.values.items():
        label = f"`__sweep__` point {point.index}: {key}"
        if key.startswith("+"):
            paths.add(add_key(raw, key[1:], copy_tree(value), label))
        else:
            path, _ = existing_key(raw, key, label)
            set_at(raw, path, copy_tree(value))
            paths.add(path)
    resolved.provenance.sweep_paths |= paths
    set_point_references(raw, point.variant, point.index, resolved.provenance.where)
    return interpolate(raw, resolved.provenance, cwd, environ, [])


_BASE: list[tuple[ResolvedConfig, Path, dict[str, Any], dict[str, str]]] = []  # the last sweep's, see _base


def _base(resolved: ResolvedConfig, cwd: Path) -> tuple[dict[str, Any], dict[str, str]]:
    """The raw config without `__sweep__` and the resolution environment, computed once per sweep
    (per resolved config and folder): every point starts from a copy of it."""
    if _BASE and _BASE[0][0] is resolved and _BASE[0][1] == cwd:
        return _BASE[0][2], _BASE[0][3]
    raw = {key: value for key, value in resolved.raw.items() if key != "__sweep__"}
    raw = copy_tree(raw)
    _BASE[:] = [(resolved, cwd, raw, resolution_environ(cwd))]
    return raw, _BASE[0][3]


def point_fields(folder: Path, point: Point) -> dict[str, Any]:
    """What a point's `run.json` says of its sweep: the sweep folder, the point's index, variant and values."""
    return {"sweep": {"dir": str(folder), "point": point.index, "variant": point.variant, "overrides": point.values}}


def describe_points(resolved: ResolvedConfig, spec: SweepSpec, cwd: Path) -> Iterator[dict[str, Any]]:
    """Each point as `--dry-run` prints it: index, variant, values and the run name it resolves to."""
    for point in spec.points():
        config = point_config(resolved, point, cwd)
        yield {"point": point.index, "variant": point.variant, "values": point.values, "name": config.run.name}


def run_sweep(
    resolved: ResolvedConfig, spec: SweepSpec, launch: LaunchSpec, argv: list[str], debug: bool, needed: bool
) -> int:
    """Run every point of the sweep; exit 0 when all completed or were skipped, 1 if any failed."""
    cwd = Path.cwd()
    run = resolved.run
    for point in spec.points():  # a point whose config does not resolve is found before anything exists
        point_config(resolved, point, cwd)
    base = run.output_dir / "DEBUG" / spec.name if debug else run.output_dir / spec.name
    folder = allocate_run_dir(base, "sweep")
    record = SweepRecord(folder, spec, argv)
    console.info(f"sweep folder: {folder} ({spec.size} points)")
    git = GitProbe(run.code, None if debug else snapshot_source(run))
    shared = _Shared(git)
    digest = None
    if needed and not debug:
        from expyrun.run.needed import code_digest

        digest = code_digest(resolved, git.ignored())
    started: dict[int, float] = {}
    finished: list[Outcome] = []  # as completed by each point's result file, for the exit code

    def jobs() -> Iterator[Job]:
        for point in spec.points():
            config = point_config(resolved, point, cwd)
            record.update(point.index, name=config.run.name)
            if digest is not None:
                from expyrun.run.needed import find_done_run

                done = find_done_run(config, digest)
                if done is not None:
                    record.skip(point.index, done)
                    continue
            fields = point_fields(folder, point)
            prepared = prepare_run(config, debug, argv, cwd, fields, git, shared.first)
            shared.first = shared.first or prepared
            record.update(point.index, run_dir=str(prepared.run_dir), status="queued")
            yield Job(prepared, run_work(prepared), {"EXPYRUN_SWEEP_POINT": str(point.index)})

    def on_start(job: Job, pid: int, gpu: str | None) -> None:
        index = job.prepared.record["sweep"]["point"]
        started[index] = time.monotonic()
        record_start(job.prepared, gpu, lambda: shared.record(job.prepared))
        record.update(index, status="running")

    def on_end(job: Job, outcome: Outcome) -> None:
        index = job.prepared.record["sweep"]["point"]
        outcome = complete_outcome(outcome, job.prepared.resolved.run, job.prepared.run_dir)
        finished.append(outcome)
        finish_record(job.prepared, outcome, time.monotonic() - started.get(index, time.monotonic()))
        record.update(index, status=outcome.status, result=outcome.result)
        values = ", ".join(f"{k}={v}" for k, v in job.prepared.record["sweep"]["overrides"].items())
        exception = outcome.exception or {}
        why = f" ({exception.get('type', 'error')}: {exception.get('message', '')})" if exception else ""
        record.ended(index, f"point {index} {outcome.status}{why} ({values}): {job.prepared.run_dir}")

    executor = LocalExecutor(launch.slots, launch.gpus, on_start, on_end, on_tick=record.write)
    status = "failed"  # unless the executor returns: an error of ours or a point that could not be prepared
    try:
        executor.execute(jobs())
        code = exit_code(finished, executor.stopped_by)
        status = {0: "completed", 1: "failed"}.get(code, "interrupted")
    finally:
        git.close()
        record.close(status)
    counts = record.data["counts"]
    console.info(f"sweep {status}: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) + f": {folder}")
    return code


class _Shared:
    """What every point shares: the first prepared point (whose snapshot the others clone), and the
    frozen requirements and git state recorded once."""

    def __init__(self, git: GitProbe) -> None:
        self.git = git
        self.first: PreparedRun | None = None
        self.recorded: PreparedRun | None = None

    def record(self, prepared: PreparedRun) -> None:
        """Frozen requirements and git state: gathered for the first point, linked for the others."""
        from expyrun.run.freeze import FROZEN_FILE

        if self.recorded is None:
            record_environment(prepared, self.git)
            self.recorded = prepared
            return
        source = self.recorded
        for name in (FROZEN_FILE, DIFF_FILE):
            if (source.run_dir / name).exists():
                os.link(source.run_dir / name, prepared.run_dir / name)
        if "git" in source.record:
            prepared.record["git"] = source.record["git"]
