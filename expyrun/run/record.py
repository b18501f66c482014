"""`run.json`: the run's metadata, rewritten atomically (temp file + rename)."""

from __future__ import annotations

import datetime as dt
import getpass
import json
import os
import platform
import socket
import sys
from pathlib import Path
from typing import Any

RUN_FILE = "run.json"


def now() -> str:
    return dt.datetime.now().astimezone().isoformat(timespec="milliseconds")


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8")
    os.replace(temporary, path)


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())


def start_record(name: str, run_dir: Path, debug: bool, argv: list[str], cwd: Path) -> dict[str, Any]:
    """The fields known when the run starts; the rest are filled as the run goes."""
    from expyrun import __version__

    return {
        "status": "running",
        "name": name,
        "run_dir": str(run_dir),
        "debug": debug,
        "argv": argv,
        "cwd": str(cwd),
        "host": socket.gethostname(),
        "user": _user(),
        "pid": os.getpid(),
        "python": {"version": platform.python_version(), "executable": sys.executable},
        "platform": platform.platform(),
        "expyrun_version": __version__,
        "started_at": now(),
        "ended_at": None,
        "duration_s": None,
        "exit_code": None,
        "exception": None,
        "result": None,
        "git": None,
        "snapshot": None,
    }
