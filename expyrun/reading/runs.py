"""Finding run folders below a directory and reading their records, and the status each run has now
(`effective_status`: a run whose process or Slurm job is gone is `died`)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from expyrun.errors import UsageError
from expyrun.run.record import RUN_FILE, host_name, load_record, record_problem
from expyrun.run.status import ACTIVE, Status

__all__ = ["RUN_FILE", "effective_status", "iter_runs", "load_record", "record_problem", "require_run", "slurm_jobs"]
_NOT_RUNS = {".expyrun", "__pycache__", ".git"}
_HOST = host_name()


def iter_runs(root: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every run below `root` (any depth) with its record, trials of studies included.

    A folder is a run when it holds a run.json; its own content (snapshot, outputs) is not searched,
    except the `trials/` of a study. Opening run.json is the test, so a run costs one open and no
    other system call; paths are plain strings (pathlib costs more than the listing at 10,000 runs).
    """
    stack = [str(root)]
    join = os.path.join
    while stack:
        folder = stack.pop()
        record = load_record(folder)
        if record is not None:
            yield folder, record
            if record.get("study"):
                stack.append(join(folder, "trials"))
            continue
        try:
            with os.scandir(folder) as scan:
                children = [e.path for e in scan if e.name not in _NOT_RUNS and e.is_dir(follow_symlinks=False)]
        except OSError:
            continue
        stack.extend(sorted(children, reverse=True))


def slurm_jobs(records: list[dict[str, Any]]) -> Any:
    """What Slurm says of the jobs of the queued or running Slurm runs among `records` (one squeue call)."""
    active = [r["slurm"] for r in records if r.get("status") in ACTIVE and _on_slurm(r)]
    if not active:
        return None
    from expyrun.execute.slurm_queue import JobStates

    return JobStates.ask(active)


def _on_slurm(record: dict[str, Any]) -> bool:
    return isinstance(record.get("slurm"), dict)


def effective_status(record: dict[str, Any], jobs: Any = None) -> str:
    """`died` for a run still marked running whose process is gone from this host, or for a queued or
    running Slurm run whose job Slurm no longer holds (`jobs`: from `slurm_jobs`, else asked now)."""
    status = record.get("status", "unknown")
    if status in ACTIVE and _on_slurm(record):
        if jobs is None:
            from expyrun.execute.slurm_queue import JobStates

            jobs = JobStates.ask([record["slurm"]])
        if jobs.gone(record["slurm"]):
            return Status.DIED
    if status != Status.RUNNING or record.get("host") != _HOST or not isinstance(record.get("pid"), int):
        return status
    try:
        os.kill(record["pid"], 0)
    except ProcessLookupError:
        return Status.DIED
    except PermissionError:
        return status
    return status


def effective_sweep(data: dict[str, Any]) -> dict[str, Any]:
    """A sweep record (`read_sweep`) as it stands now, not as its writers last left it: a point still
    queued or running in it takes its run's effective status (its run.json, its process, Slurm's
    queue: a cancelled array's points are `died`, not `queued` forever); a sweep whose launcher is
    gone from this host is `died`; one with no point left is `completed` or `failed` as its points
    are. Counts are taken again from the points."""
    from expyrun.sweep.record import ended_status

    status = data.get("status")
    rows = [row for row in data.get("points") or [] if isinstance(row, dict)]
    if status not in ACTIVE or not isinstance(data.get("points"), list):
        return data
    live = [(row, load_record(str(row["run_dir"]))) for row in rows
            if row.get("status") in ACTIVE and isinstance(row.get("run_dir"), str)]  # fmt: skip
    known = [(row, record) for row, record in live if record is not None]
    jobs = slurm_jobs([record for _, record in known])
    launcher = {"status": Status.RUNNING, "host": data.get("host"), "pid": data.get("pid")}
    gone = isinstance(data.get("pid"), int) and effective_status(launcher) == Status.DIED
    for row, record in known:
        row["status"] = effective_status(record, jobs)
        if row["status"] in ACTIVE and gone:  # prepared, never to be started
            row["status"] = Status.DIED
        if record.get("status") not in ACTIVE:
            row["result"] = record.get("result")
    counts: dict[str, int] = {}
    for row in rows:
        counts[str(row.get("status"))] = counts.get(str(row.get("status")), 0) + 1
    size = data.get("size")
    if isinstance(size, int) and size > len(rows):
        counts["pending"] = counts.get("pending", 0) + size - len(rows)
    if gone:
        status = Status.DIED
    elif not any(name in ACTIVE or name == "pending" for name in counts):
        status = ended_status(counts)
    return {**data, "status": status, "counts": counts, "points": rows}


def require_run(path: str) -> Path:
    """A RUN argument: a run folder, or a file inside one (such as its config.yml)."""
    run_dir = Path(path)
    if run_dir.is_file():
        run_dir = run_dir.parent
    if not (run_dir / RUN_FILE).is_file():
        raise UsageError(f"{path}: not a run folder (no {RUN_FILE})", "give a folder such as outputs/NAME/exp.0")
    return run_dir
