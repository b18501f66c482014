"""Finding run folders below a directory and reading their records."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from expyrun.errors import UsageError
from expyrun.run.record import host_name

RUN_FILE = "run.json"
_NOT_RUNS = {".expyrun", "__pycache__", ".git"}


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


def load_record(run_dir: Path | str) -> dict[str, Any] | None:
    """The run.json of a folder; None when there is none, `{}` when it is unreadable."""
    try:
        fd = os.open(os.path.join(run_dir, RUN_FILE), os.O_RDONLY)
    except OSError:
        return None
    try:
        data = os.read(fd, 1 << 16)
        if len(data) == 1 << 16:  # a large record: read the rest
            chunks = [data]
            while chunk := os.read(fd, 1 << 20):
                chunks.append(chunk)
            data = b"".join(chunks)
        record = json.loads(data)
    except (OSError, ValueError, RecursionError):  # RecursionError: JSON nested 100,000 levels deep
        return {}
    finally:
        os.close(fd)
    return record if isinstance(record, dict) else {}


_HOST = host_name()
# The fields browsing reads, with the types expyrun writes them in (None is always allowed).
_FIELD_TYPES: dict[str, type | tuple[type, ...]] = {
    "status": str, "name": str, "started_at": str, "ended_at": str, "duration_s": (int, float),
    "git": dict, "trial": dict, "config": dict, "pid": int, "host": str, "study": str,
}  # fmt: skip


def record_problem(record: dict[str, Any]) -> str | None:
    """Why a run.json is not one expyrun wrote (a foreign or damaged file), or None when it fits."""
    if not record:
        return "not a JSON object"
    for key, kind in _FIELD_TYPES.items():
        value = record.get(key)
        if value is not None and (not isinstance(value, kind) or isinstance(value, bool)):
            return f"`{key}` is a {type(value).__name__}"
    return None


def slurm_jobs(records: list[dict[str, Any]]) -> Any:
    """What Slurm says of the jobs of the queued or running Slurm runs among `records` (one squeue call)."""
    active = [r["slurm"] for r in records if r.get("status") in ("queued", "running") and _on_slurm(r)]
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
    if status in ("queued", "running") and _on_slurm(record):
        if jobs is None:
            from expyrun.execute.slurm_queue import JobStates

            jobs = JobStates.ask([record["slurm"]])
        if jobs.gone(record["slurm"]):
            return "died"
    if status != "running" or record.get("host") != _HOST or not isinstance(record.get("pid"), int):
        return status
    try:
        os.kill(record["pid"], 0)
    except ProcessLookupError:
        return "died"
    except PermissionError:
        return status
    return status


def require_run(path: str) -> Path:
    """A RUN argument: a run folder, or a file inside one (such as its config.yml)."""
    run_dir = Path(path)
    if run_dir.is_file():
        run_dir = run_dir.parent
    if not (run_dir / RUN_FILE).is_file():
        raise UsageError(f"{path}: not a run folder (no {RUN_FILE})", "give a folder such as outputs/NAME/exp.0")
    return run_dir
