"""`run.json`: the run's metadata, rewritten atomically (temp file + rename)."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import math
import os
import sys
from pathlib import Path
from typing import Any

RUN_FILE = "run.json"


def now() -> str:
    return dt.datetime.now().astimezone().isoformat(timespec="milliseconds")


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    """Write `data` as JSON (temp file + rename); a reader never sees half a file."""
    try:
        text = json.dumps(data, indent=2, ensure_ascii=False, default=str, allow_nan=False)
    except ValueError:  # NaN or infinity somewhere: not JSON, which most readers refuse
        text = json.dumps(finite(data), indent=2, ensure_ascii=False, default=str, allow_nan=False)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        temporary.write_text(text + "\n", encoding="utf-8")
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise


def finite(value: Any) -> Any:
    """`value` with every NaN or infinite float written as the string Python prints (`nan`, `inf`)."""
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    if isinstance(value, dict):
        return {key: finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(item) for item in value]
    return value


def host_name() -> str:
    return os.uname().nodename


def _user() -> str:
    try:
        import pwd

        return pwd.getpwuid(os.getuid()).pw_name
    except (ImportError, KeyError):
        return os.environ.get("USER") or str(os.getuid())


def _platform() -> str:
    """`platform.platform()`'s answer on Linux without its cost (it scans the interpreter binary)."""
    system = os.uname()
    text = f"{system.sysname}-{system.release}-{system.machine}"
    try:
        libc = os.confstr("CS_GNU_LIBC_VERSION") or ""
    except (ValueError, OSError):
        libc = ""
    return f"{text}-with-{libc.replace(' ', '')}" if libc else text


def start_record(
    name: str, run_dir: Path, debug: bool, argv: list[str], cwd: Path, status: str = "running"
) -> dict[str, Any]:
    """The fields known when the run is prepared or starts; the rest are filled as the run goes."""
    from expyrun import __version__

    return {
        "status": status,
        "name": name,
        "run_dir": str(run_dir),
        "debug": debug,
        "argv": argv,
        "cwd": str(cwd),
        "host": host_name(),
        "user": _user(),
        "pid": os.getpid(),
        "python": {"version": sys.version.split()[0], "executable": sys.executable},
        "platform": _platform(),
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
