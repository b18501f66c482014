"""Finding run folders below a directory and reading their records."""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from expyrun.errors import UsageError

RUN_FILE = "run.json"
_NOT_RUNS = {".expyrun", "__pycache__", ".git"}


def find_runs(root: Path) -> Iterator[str]:
    """Every folder holding a run.json below `root` (any depth), trials of studies included.

    A run folder's own content (snapshot, outputs) is not searched, except its `trials/`.
    Paths are plain strings: pathlib objects cost more than the listing itself at 10,000 runs.
    """
    stack = [str(root)]
    isfile, isdir, join = os.path.isfile, os.path.isdir, os.path.join
    while stack:
        folder = stack.pop()
        if isfile(join(folder, RUN_FILE)):
            yield folder
            if isdir(join(folder, "trials")):
                stack.append(join(folder, "trials"))
            continue
        try:
            with os.scandir(folder) as scan:
                children = [e.path for e in scan if e.name not in _NOT_RUNS and e.is_dir(follow_symlinks=False)]
        except OSError:
            continue
        stack.extend(sorted(children, reverse=True))


def load_record(run_dir: Path | str) -> dict[str, Any] | None:
    try:
        fd = os.open(os.path.join(run_dir, RUN_FILE), os.O_RDONLY)
        try:
            chunks = []
            while chunk := os.read(fd, 1 << 20):
                chunks.append(chunk)
        finally:
            os.close(fd)
        record = json.loads(b"".join(chunks))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


_HOST = socket.gethostname()


def effective_status(record: dict[str, Any]) -> str:
    """`died` for a run still marked running whose process is gone from this host."""
    status = record.get("status", "unknown")
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
