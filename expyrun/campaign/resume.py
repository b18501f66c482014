"""`expyrun resume SWEEP`: a sweep stopped (Ctrl-C, a reboot) runs to its end in its own sweep folder.

Why: a sweep of hundreds of points stopped at the tenth should not start over in `sweep.{i+1}/`.
Its points that ended `interrupted`, `failed` or `died` (or were prepared and never started) execute
again in their own folders, as `expyrun resume RUN` does (attempt + 1, a line in their log), and its
pending points are prepared and run as the sweep would have: through the one loop
(`campaign/loop.py`), the sweep's proposer (`campaign/sweep.py`) and its executor, with the same
`__launch__` slots. `sweep.json` stays the sweep's one record (`SweepRecord.reopen`, its owner).
The way in is `commands/resume.py`, which reads the sweep as it stands now.

The sweep's config is resolved again from its recorded command line, in the folder it was launched
from: pending points run what that config and `__code__` hold now (points already prepared run their
own snapshot). Costs one resolution of the config and a read of the sweep's rows.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from expyrun import console
from expyrun.campaign.sweep import SweepPoints, run_sweep_points
from expyrun.errors import UsageError
from expyrun.execute.contract import Job
from expyrun.run.record import load_record
from expyrun.run.status import ACTIVE, Status

if TYPE_CHECKING:
    from expyrun.config import ResolvedConfig
    from expyrun.execute.launch_spec import LaunchSpec
    from expyrun.run.prepare import PreparedRun
    from expyrun.sweep.record import SweepRecord
    from expyrun.sweep.spec import Point, SweepSpec

_DONE = (Status.COMPLETED, Status.SKIPPED)


def resume_sweep(folder: Path, data: dict[str, Any], flags: tuple[str, ...]) -> int:
    """Run the sweep folder's unfinished and pending points; exit 0 when every point completed.

    `data`: its `sweep.json` as it stands now (`reading.runs.effective_sweep`: a point whose process
    is gone is `died`); `flags`: the launch's flags, left out of the recorded command line."""
    if data.get("status") in ACTIVE:
        hint = "wait for it to end, or stop it first"
        raise UsageError(f"{folder}: the sweep is {data.get('status')}: not resumed", hint)
    rows = [row for row in data.get("points") or [] if isinstance(row, dict)]
    size: int = data["size"] if isinstance(data.get("size"), int) else len(rows)
    unfinished = [row for row in rows if row.get("status") not in _DONE]
    if not unfinished and size <= len(rows):
        raise UsageError(f"{folder}: every point of the sweep is completed: not resumed", "nothing is left to run")
    cwd = _launch_cwd(data, rows)
    with contextlib.suppress(OSError):
        os.chdir(cwd)
    resolved, spec, launch, debug = _resolve(data, flags)
    if spec.size != size:
        raise UsageError(f"{folder}: its config now gives {spec.size} points, the sweep had {size}: not resumed",
                         "the config or a file it reads changed since; run it again as a new sweep")  # fmt: skip
    return _run(folder, resolved, spec, launch, [str(a) for a in data.get("argv") or []], debug)


def _launch_cwd(data: dict[str, Any], rows: list[dict[str, Any]]) -> Path:
    """Where the sweep was launched: its header's `cwd`, else one of its points' records', else here."""
    if isinstance(data.get("cwd"), str):
        return Path(data["cwd"])
    for row in rows:
        record = load_record(str(row["run_dir"])) if isinstance(row.get("run_dir"), str) else None
        if isinstance(record, dict) and isinstance(record.get("cwd"), str):
            return Path(record["cwd"])
    return Path.cwd()


def _resolve(data: dict[str, Any], flags: tuple[str, ...]) -> tuple[ResolvedConfig, SweepSpec, LaunchSpec, bool]:
    """The sweep's config, resolved again (here: where it was launched) from its recorded command line."""
    from expyrun.config import parse_overrides, resolve_config
    from expyrun.execute.launch_spec import parse_launch
    from expyrun.sweep.spec import parse_sweep

    argv = [str(arg) for arg in data.get("argv") or []]
    rest = [arg for arg in argv if arg not in flags]
    if not rest:
        raise UsageError(f"{data.get('dir')}: the sweep's record holds no command line", "run the sweep again")
    config_file = rest[0]
    resolved = resolve_config(config_file, parse_overrides(rest[1:]))
    values = resolved.values
    launch = parse_launch(values.get("__launch__"), values.get("__optuna__"))
    if launch.launcher != "local":
        raise UsageError(f"{data.get('dir')}: a {launch.launcher} sweep is not resumed here",
                         "resume its points one by one: expyrun resume RUN")  # fmt: skip
    if values.get("__sweep__") is None:
        raise UsageError(f"{config_file}: holds no __sweep__ any more: the sweep is not resumed", "run it again")
    spec = parse_sweep(values["__sweep__"], resolved.raw, Path(config_file).stem)
    return resolved, spec, launch, "--debug" in argv


def _run(folder: Path, resolved: ResolvedConfig, spec: SweepSpec, launch: LaunchSpec, argv: list[str],
         debug: bool) -> int:  # fmt: skip
    from expyrun.run.git_state import GitProbe
    from expyrun.run.prepare import snapshot_source
    from expyrun.sweep.record import SweepRecord

    record, rows = SweepRecord.reopen(folder, spec)
    console.info(f"resuming sweep {folder} ({spec.size} points)")
    git = GitProbe(resolved.run.code, None if debug else snapshot_source(resolved.run))
    return run_sweep_points(lambda: _ResumedPoints(resolved, spec, record, argv, debug, git, rows), folder, record,
                            git, launch, Path.cwd(), debug)  # fmt: skip


class _ResumedPoints(SweepPoints):
    """The sweep's proposer over the points left: an unfinished point's own folder executes again
    (its attempt + 1); a pending one is prepared as the sweep prepares any point."""

    def __init__(self, resolved: ResolvedConfig, spec: SweepSpec, record: SweepRecord, argv: list[str],
                 debug: bool, git: Any, rows: list[dict[str, Any]]) -> None:  # fmt: skip
        super().__init__(resolved, spec, record, argv, debug, git, None)
        self.folders: dict[int, str] = {}
        done: set[int] = set()
        for row in rows:
            index, status = int(row["index"]), row.get("status")
            run = load_record(str(row["run_dir"])) if isinstance(row.get("run_dir"), str) else None
            if isinstance(run, dict) and run.get("status") in _DONE and status not in _DONE:
                status = run["status"]  # it ended after its sweep stopped listening: its row says so now
                record.update(index, status=status, result=run.get("result"))
            if status in _DONE:
                done.add(index)
            elif isinstance(run, dict):
                self.folders[index] = str(row["run_dir"])
        self.points = (point for point in spec.points() if point.index not in done)
        self.resumed: set[Path] = set()
        self.scanned: dict[Path, dict[Any, str]] = {}  # a point name's folder -> its folders by sweep point

    def prepare(self, point: Point) -> Job | None:
        folder = self.folders.get(point.index) or self._unlisted(point)
        if folder is None:
            return super().prepare(point)
        record = load_record(folder)
        if isinstance(record, dict) and record.get("status") in _DONE:  # ended after its sweep was killed
            self.record.update(point.index, run_dir=folder, status=record["status"], result=record.get("result"))
            self.record.ended(point.index, f"point {point.index} {record['status']} before the sweep stopped: {folder}")
            return None
        return self._again(point, Path(folder))

    def _unlisted(self, point: Point) -> str | None:
        """The folder of a point that `sweep.json` still calls pending although it was prepared: a
        sweep killed outright (SIGKILL, a reboot) had not written its last lines. Its run's record
        names the sweep and the point (`sweep.dir`, `sweep.point`); the folders of the point's name
        are read once per name."""
        from expyrun.run.prepare import run_base
        from expyrun.sweep.run import point_config

        try:
            base = run_base(point_config(self.resolved, point, self.cwd), self.debug)
        except Exception:  # preparing it says what is wrong
            return None
        found = self.scanned.get(base)
        if found is None:
            found = self.scanned[base] = {}
            with contextlib.suppress(OSError):
                for entry in os.scandir(base):
                    record = load_record(entry.path) if entry.name.startswith("exp.") else None
                    sweep = record.get("sweep") if isinstance(record, dict) else None
                    if isinstance(sweep, dict) and sweep.get("dir") == str(self.record.folder):
                        found[sweep.get("point")] = entry.path
        return found.get(point.index)

    def _again(self, point: Point, run_dir: Path) -> Job:
        """The point's own folder, back to `queued` with a line naming its next attempt."""
        from expyrun.config import resolve_config
        from expyrun.run.launch import run_work
        from expyrun.run.prepare import PreparedRun
        from expyrun.run.resume import prepare_attempt

        record = load_record(run_dir)
        assert isinstance(record, dict)
        if record.get("status") == Status.RUNNING:
            record["status"] = Status.DIED  # its sweep is gone (checked): so is its process
        if record.get("status") == Status.QUEUED:  # prepared, never started: its first attempt
            attempt = int(record.get("attempt") or 1)
        else:
            attempt = prepare_attempt(run_dir, record)  # its row: through self.record
        record["attempt"] = attempt
        config = resolve_config(run_dir / "config.yml", [], cwd=Path(record["cwd"]))
        prepared = PreparedRun(config, run_dir, record, bool(record.get("debug")))
        self.resumed.add(run_dir)
        self.record.update(point.index, run_dir=str(run_dir), status=Status.QUEUED)
        environment = {"EXPYRUN_SWEEP_POINT": str(point.index), "EXPYRUN_ATTEMPT": str(attempt)}
        return Job(prepared, run_work(prepared), environment)

    def gather(self, prepared: PreparedRun) -> None:
        """A resumed folder has its requirements and git state already; a new one gathers them."""
        if prepared.run_dir not in self.resumed:
            super().gather(prepared)
