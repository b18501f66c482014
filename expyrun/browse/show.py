"""`expyrun show RUN`: metadata, resolved config and the last lines of the log."""

from __future__ import annotations

import json
from collections import deque
from pathlib import Path
from typing import Any

from expyrun.browse.runs import effective_status, load_record
from expyrun.run.capture import LOG_FILE

LOG_LINES = 20
FIELDS = ("status", "name", "run_dir", "started_at", "ended_at", "duration_s", "exit_code", "result",
          "exception", "git", "python", "host", "user", "pid", "argv", "cwd", "snapshot", "trial")  # fmt: skip


def _value(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, default=str)


def render_show(run_dir: Path) -> str:
    record = load_record(run_dir) or {}
    record["status"] = effective_status(record) if record else "unknown (run.json unreadable)"
    lines = [f"{key:<12} {_value(record[key])}" for key in FIELDS if record.get(key) is not None]
    config = run_dir / "config.yml"
    lines += ["", "# config.yml", config.read_text(encoding="utf-8").rstrip() if config.exists() else "(missing)"]
    log = run_dir / LOG_FILE
    if log.exists():
        with log.open(encoding="utf-8", errors="replace") as handle:
            tail = deque(handle, maxlen=LOG_LINES)
        lines += ["", f"# {LOG_FILE} (last {len(tail)} lines)", "".join(tail).rstrip()]
    return "\n".join(lines) + "\n"
