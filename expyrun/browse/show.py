"""`expyrun show RUN`: metadata, resolved config and the last lines of the log."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from expyrun.errors import UsageError
from expyrun.reading.runs import effective_status, load_record, record_problem
from expyrun.run.capture import LOG_FILE
from expyrun.run.status import Status
from expyrun.text.table import printable

LOG_LINES = 20
TAIL_BYTES = 64 * 1024
LINE_CHARS = 2000
_STYLES: dict[str, str] = {Status.FAILED: "red", Status.DIED: "red", Status.INTERRUPTED: "yellow"}  # as `list`
FIELDS = ("status", "name", "run_dir", "started_at", "ended_at", "duration_s", "exit_code", "result",
          "exception", "log_error", "git", "python", "host", "user", "pid", "gpu", "launcher", "attempt", "slurm",
          "argv", "cwd", "snapshot", "sweep", "trial", "batch")  # fmt: skip


def _value(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, default=str)


def _safe(text: str) -> str:
    """Control characters escaped line by line: a run.json or log can hold escape sequences that
    would retitle, clear or reprogram the user's terminal."""
    return "\n".join(printable(line) for line in text.split("\n"))


def render_show(run_dir: Path) -> str:
    record = load_record(run_dir) or {}
    problem = record_problem(record)
    if problem is None:
        record["status"] = effective_status(record)
    else:
        record = {key: record.get(key) for key in FIELDS if key != "status"} if record else {}
        record["status"] = f"unknown (run.json is not a run record: {problem})"
    lines = [f"{key:<12} {_value(record[key])}" for key in FIELDS if record.get(key) is not None]
    lines += annotation_lines(run_dir)
    from expyrun.verify.last import last_verdict, verdict_line

    verdict = last_verdict(run_dir)
    if verdict is not None:  # SPEC 14: the run's last verify
        lines.append(f"{'verified':<12} {verdict_line(verdict)}")
    config = run_dir / "config.yml"
    text = config.read_text(encoding="utf-8", errors="replace").rstrip() if config.is_file() else "(missing)"
    lines += ["", "# config.yml", text]
    if record.get("study"):  # SPEC 12.3: a study's trials, best first
        from expyrun.track.studies import trial_table

        lines += ["", trial_table(run_dir).rstrip("\n")]
    log = run_dir / LOG_FILE
    if log.is_file():
        tail = _tail(log)
        lines += ["", f"# {LOG_FILE} (last {len(tail)} lines)", "\n".join(tail).rstrip()]
    return _safe("\n".join(lines)) + "\n"


def annotation_lines(run_dir: Path) -> list[str]:
    """`tags` and `note` (annotations.json) as `show` prints record fields, a note line by line."""
    from expyrun.track.annotations import read

    found = read(run_dir)
    lines = [f"{'tags':<12} {' '.join(found.tags)}"] if found.tags else []
    for number, line in enumerate(found.note.split("\n") if found.note else []):
        lines.append(f"{'note' if number == 0 else '':<12} {line}")
    return lines


def _tail(log: Path) -> list[str]:
    """The last lines of the log, reading at most `TAIL_BYTES` from its end (a line may be 300 MB)."""
    with log.open("rb") as handle:
        size = handle.seek(0, os.SEEK_END)
        handle.seek(max(0, size - TAIL_BYTES))
        data = handle.read(TAIL_BYTES)
    lines = data.decode("utf-8", errors="replace").split("\n")
    if size > TAIL_BYTES:
        lines[0] = "…" + lines[0][-LINE_CHARS:]
    if lines and lines[-1] == "":
        lines.pop()
    return [line if len(line) <= LINE_CHARS else line[:LINE_CHARS] + "…" for line in lines[-LOG_LINES:]]


def _not_a_sweep(error: Exception) -> str:
    if isinstance(error, RecursionError):
        return "nested too deeply"
    if isinstance(error, (KeyError, TypeError)):
        return "no list of points"
    return "not JSON"


def render_sweep(folder: Path) -> str:
    """`expyrun show SWEEP`: one row per point (status, result, values, run folder), then the counts."""
    from expyrun.reading.runs import effective_sweep
    from expyrun.sweep.record import SWEEP_FILE, read_sweep
    from expyrun.text.results import result_text
    from expyrun.text.table import render

    path = folder / SWEEP_FILE
    try:
        data = effective_sweep(read_sweep(folder))  # what it says now: a killed launcher's sweep died
        points = data["points"]
    except (OSError, ValueError, KeyError, TypeError, RecursionError) as error:  # damaged, foreign or crafted
        why = error.strerror if isinstance(error, OSError) else _not_a_sweep(error)
        raise UsageError(f"{path}: not a sweep record ({why})") from None
    rows, styles = [], []
    for point in points if isinstance(points, list) else []:
        if not isinstance(point, dict):
            continue
        values = point.get("values")
        values = values if isinstance(values, dict) else {}
        shown = " ".join(f"{key}={_value(value)}" for key, value in values.items())
        status = str(point.get("status"))
        result = result_text(point.get("result"))
        run_dir = str(point.get("reused") or point.get("run_dir") or "-")
        rows.append([str(point.get("index")), status, result, shown, run_dir])
        styles.append(_STYLES.get(status))
    table = render(("point", "status", "result", "values", "run"), rows, styles, colour=sys.stderr.isatty())
    counts: dict[str, Any] = data["counts"] if isinstance(data.get("counts"), dict) else {}
    summary = ", ".join(f"{count} {status}" for status, count in sorted(counts.items()))
    return printable(f"sweep {data.get('name')} ({data.get('status')}): {summary}") + "\n" + table  # cells escaped
