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


def find_runs(root: Path) -> Iterator[Path]:
    """Every folder holding a run.json below `root` (any depth), trials of studies included.

    A run folder's own content (snapshot, outputs) is not searched, except its `trials/`.
    """
    stack = [str(root)]
    while stack:
        folder = stack.pop()
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        names = {entry.name for entry in entries}
        if RUN_FILE in names:
            yield Path(folder)
            if "trials" in names:
                stack.append(os.path.join(folder, "trials"))
            continue
        stack.extend(
            entry.path
            for entry in sorted(entries, key=lambda e: e.name, reverse=True)
            if entry.name not in _NOT_RUNS and entry.is_dir(follow_symlinks=False)
        )


def load_record(run_dir: Path) -> dict[str, Any] | None:
    try:
        with open(run_dir / RUN_FILE, "rb") as handle:
            record = json.loads(handle.read())
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
