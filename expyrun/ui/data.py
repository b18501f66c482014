"""What the runs viewer's page asks for, answered as JSON-ready values; never writes a run folder.

Everything is read through the owners of the files (`browse.listing.collect` and `reading.runs` for
`run.json` and `annotations.json` as `expyrun list` reads them, `track.metrics` for metrics, texts
and figures, `reading.query` for the query box, `track.studies` for a study's trials): the viewer
shows exactly what `list`, `show` and `expyrun.runs()` show.

Paths from the page are folders relative to DIR; `run_folder` refuses any that is absolute, holds
`..`, or resolves (through links) outside DIR: nothing outside DIR is ever read. Cost: the table
re-reads every `run.json` below DIR (as `list` does: about 0.3 s for 10,000 runs) at most once per
`TABLE_SECONDS`, shared by every request in that time; nothing else is kept, so the server's memory
does not grow with the runs' metrics.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from pathlib import Path
from typing import Any

from expyrun.errors import UsageError
from expyrun.track import metrics as metric_files
from expyrun.ui import live

TABLE_SECONDS = 0.7  # the table is read again when older than this (live updates within 2 s)
LOG_TAIL_BYTES = 64 * 1024
NAMES_PROBE_BYTES = 64 * 1024  # a running run's metric names: read from its first and last lines
DEFAULT_BUCKETS = 1000  # up to 2,000 points per curve (see `reduce.py`)
# what the table keeps of each run's record between readings: what it shows and what queries name
# (requirements, provenance, environment are read again only on a run's page)
KEPT = ("path", "name", "status", "result", "tags", "started_at", "duration_s", "metrics", "config", "trial",
        "differs", "study", "sweep", "note")  # fmt: skip


class Refused(Exception):
    """A path from the page that names nothing the viewer may show (HTTP 403)."""


class Missing(Exception):
    """A path that names no run (HTTP 404)."""


def run_folder(root: Path, relative: str) -> Path:
    """The run folder `relative` names below `root`; `Refused` when it would leave `root`."""
    if not relative or "\0" in relative or relative.startswith(("/", "\\")) or os.path.isabs(relative):
        raise Refused(f"{relative!r}: not a folder below the viewed one")
    if ".." in relative.replace("\\", "/").split("/"):
        raise Refused(f"{relative!r}: `..` is refused")
    folder = root / relative
    real = Path(os.path.realpath(folder))
    if not real.is_relative_to(Path(os.path.realpath(root))):
        raise Refused(f"{relative!r}: outside the viewed folder")
    if not (real / "run.json").is_file():
        raise Missing(f"{relative!r}: not a run folder")
    return real


def file_below(run_dir: Path, relative: str) -> Path:
    """A figure file of a run (`figures/...png|json`), refused when it leaves the run's `figures/`."""
    parts = relative.replace("\\", "/").split("/")
    if not relative or os.path.isabs(relative) or ".." in parts or parts[0] != metric_files.FIGURES_FOLDER:
        raise Refused(f"{relative!r}: not a figure of the run")
    path = Path(os.path.realpath(run_dir / relative))
    if not path.is_relative_to(run_dir / metric_files.FIGURES_FOLDER) or path.suffix not in (".png", ".json"):
        raise Refused(f"{relative!r}: not a figure of the run")
    if not path.is_file():
        raise Missing(f"{relative!r}: no such figure")
    return path


class Table:
    """The runs below DIR as the page's table, read again at most every `TABLE_SECONDS`.

    A run whose record (with what `list` adds: tags, differing values) is unchanged since the last
    reading keeps its shown row, and the table keeps its version: a page polling an unchanged
    table gets `{"version": ..., "unchanged": true}` instead of every row again (4 MB for 10,000 runs).
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self._real_root = os.path.realpath(root)
        self._lock = threading.Lock()
        self._rows: list[dict[str, Any]] = []
        self._shown: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}  # path -> (record, shown row)
        self._generation = 0
        self._read_at = -1e9
        self._warned: set[str] = set()

    def rows(self) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        """Every run's record (`list`'s rows) with its shown row, fresh within `TABLE_SECONDS`."""
        with self._lock:
            if time.monotonic() - self._read_at > TABLE_SECONDS:
                self._refresh()
                self._read_at = time.monotonic()
            return [self._shown[row["path"]] for row in self._rows]

    def _warn_once(self, message: str) -> None:
        """A folder skipped by `list` (not a run record) is said once, not at every reading."""
        if message not in self._warned:
            self._warned.add(message)
            from expyrun import console

            console.warning(message)

    def _refresh(self) -> None:
        from expyrun.browse.listing import collect

        rows = collect(self.root, self._warn_once)
        previous = self._shown
        shown: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}
        changed = len(rows) != len(self._rows)
        for index, full in enumerate(rows):
            row = rows[index] = {key: full[key] for key in KEPT if key in full}  # the rest of run.json is not kept
            old = previous.get(row["path"])
            if old is not None and old[0] == row:
                shown[row["path"]] = old
                rows[index] = old[0]  # the kept record, not an equal copy: the table is held once
            else:
                shown[row["path"]] = (row, _table_row(full, self._real_root))
                changed = True
        if changed or [r["path"] for r in rows] != [r["path"] for r in self._rows]:
            self._generation += 1
        self._rows, self._shown = rows, shown

    def answer(self, where: list[str], known: str = "") -> dict[str, Any]:
        """`{"runs": [...], "version": ...}` of the runs satisfying `where` (the query box, SPEC 12.1),
        or `{"version": known, "unchanged": true}` when the page's version `known` is still current;
        a bad query is `{"error": ...}` with the table unfiltered."""
        pairs = self.rows()
        version = hashlib.sha1(f"{self._generation}\0{chr(0).join(where)}".encode()).hexdigest()[:16]
        if known == version:
            return {"root": str(self.root), "version": version, "unchanged": True, "error": None}
        error = None
        if where:
            from expyrun.reading import query

            try:
                kept = {id(row) for row in query.select([record for record, _ in pairs], where)}
                pairs = [pair for pair in pairs if id(pair[0]) in kept]
            except UsageError as problem:
                error = str(problem)
        return {"root": str(self.root), "runs": [shown for _, shown in pairs], "error": error, "version": version}


def _table_row(row: dict[str, Any], root: str) -> dict[str, Any]:
    """One run as the page shows it: texts for the cells, numbers for sorting, where it is grouped."""
    from expyrun.browse.listing import cells

    path, status, started, duration, commit, result, _ = cells(row)
    summaries = row.get("metrics")
    last = {}
    if isinstance(summaries, dict):
        for name, summary in summaries.items():
            if isinstance(summary, dict):
                last[str(name)] = _json_number(summary.get("last"))
    return {
        "path": path, "name": row.get("name"), "status": status, "started": started, "duration": duration,
        "duration_s": _json_number(row.get("duration_s")), "commit": commit, "result": result,
        "tags": [str(t) for t in row.get("tags") or ()],
        "differs": {key: _cell(value) for key, value in (row.get("differs") or {}).items()},
        "config": _flat(row.get("config")), "metrics": last, "group": _group(row, path, root),
        "study": bool(row.get("study")),
    }  # fmt: skip


def _group(row: dict[str, Any], path: str, root: str) -> dict[str, str] | None:
    """The sweep or study a run belongs to: `{"kind": "sweep"|"study", "key": its folder below DIR}`."""
    sweep = row.get("sweep")
    if isinstance(sweep, dict) and isinstance(sweep.get("dir"), str):
        return {"kind": "sweep", "key": os.path.relpath(os.path.realpath(sweep["dir"]), root)}
    if isinstance(row.get("trial"), dict) and "/trials/" in f"/{path}":
        return {"kind": "study", "key": path.rsplit("/trials/", 1)[0]}
    if row.get("study"):
        return {"kind": "study", "key": path}
    return None


def _flat(node: Any, prefix: str = "", out: dict[str, Any] | None = None) -> dict[str, Any]:
    """Config leaves by dotted key (what `group by` and the config columns name)."""
    out = {} if out is None else out
    if isinstance(node, dict):
        for key, child in node.items():
            if isinstance(child, dict) and child:
                _flat(child, f"{prefix}{key}.", out)
            else:
                out[f"{prefix}{key}"] = _cell(child)
    return out


def _cell(value: Any) -> Any:
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float):
        return _json_number(value)
    return json.dumps(value, default=str)


def _json_number(value: Any) -> Any:
    """A number JSON can hold (NaN and infinities as their names); other values as they are."""
    if isinstance(value, float) and value - value != 0:
        return "nan" if value != value else ("inf" if value > 0 else "-inf")
    return value


def metric_names(run_dir: Path) -> list[str]:
    """The names of a run's metrics: `run.json`'s summary when it ended; while it runs, the names of
    its first and last lines (the whole file is not read at every poll)."""
    from expyrun.run.record import load_record

    record = load_record(run_dir) or {}
    names: dict[str, None] = {}
    summaries = record.get("metrics")
    if isinstance(summaries, dict):
        names.update(dict.fromkeys(str(name) for name in summaries))
    path = run_dir / metric_files.METRICS_FILE
    try:
        size = path.stat().st_size
        with open(path, "rb") as file:
            head = file.read(NAMES_PROBE_BYTES)
            tail = b""
            if size > NAMES_PROBE_BYTES:  # from the byte before, to know whether it starts a line
                file.seek(max(0, size - NAMES_PROBE_BYTES - 1))
                tail = file.read(NAMES_PROBE_BYTES + 1)
    except OSError:
        return list(names)
    names.update(dict.fromkeys(metric_files.names_in(head)))
    names.update(dict.fromkeys(metric_files.names_in(tail[tail.find(b"\n") + 1 :])))
    return list(names)


def series(run_dir: Path, name: str, curves: live.Curves, buckets: int = DEFAULT_BUCKETS) -> dict[str, Any]:
    """One metric of a run for drawing: steps and values reduced to at most about `2 * buckets`
    points (each bucket's min and max), with the number of points logged. A running run's curve is
    followed by `curves` (`live.Curves`: only new lines are read at each poll); an ended run's is
    read whole, from `.metrics.columns` when it is current."""
    from expyrun.reading.runs import effective_status
    from expyrun.run.record import load_record
    from expyrun.run.status import ACTIVE

    if effective_status(load_record(run_dir) or {}) in ACTIVE:
        return curves.read(run_dir, name)
    return live.ended(run_dir, name, max(1, min(buckets, 10_000)))


def texts(run_dir: Path) -> dict[str, list[tuple[int, str]]]:
    return metric_files.read_texts(run_dir)


def figures(run_dir: Path) -> dict[str, list[tuple[int, str]]]:
    """Each figure tag's `(step, path relative to the run folder)`, by step."""
    return {
        tag: [(step, path.relative_to(run_dir).as_posix()) for step, path in found]
        for tag, found in metric_files.list_figures(run_dir).items()
    }


def log_tail(run_dir: Path, size: int = LOG_TAIL_BYTES) -> str:
    """The last `size` bytes of the run's `outputs.log` (from a line's start), as text."""
    try:
        with open(run_dir / "outputs.log", "rb") as file:
            file.seek(0, os.SEEK_END)
            end = file.tell()
            file.seek(max(0, end - size))
            data = file.read(size)
    except OSError:
        return ""
    if end > size and b"\n" in data:
        data = data[data.index(b"\n") + 1 :]
    return data.decode("utf-8", "replace")


def run_page(root: Path, run_dir: Path) -> dict[str, Any]:
    """A run's page: its record, tags and note, metric names, log tail, and a study's trials."""
    from expyrun.reading.runs import effective_status
    from expyrun.run.record import load_record
    from expyrun.track.annotations import read as read_annotations

    record = load_record(run_dir) or {}
    record["status"] = effective_status(record)
    found = read_annotations(run_dir)
    answer: dict[str, Any] = {
        "path": run_dir.relative_to(Path(os.path.realpath(root))).as_posix(), "record": record,
        "tags": list(found.tags), "note": found.note, "metrics": metric_names(run_dir), "log": log_tail(run_dir),
    }  # fmt: skip
    answer["requirements"] = requirements(root, run_dir)
    if record.get("study"):
        answer["trials"] = _trials(root, run_dir)
        answer["dashboard"] = _dashboard_installed()
    return answer


def requirements(root: Path, run_dir: Path) -> str | None:
    """The run's `frozen_requirements.txt` (its first 256 KB), when it lies below DIR (it may be a
    link into the output folder's store, which a viewer of one sub-folder does not serve)."""
    from expyrun.run.freeze import FROZEN_FILE

    path = os.path.realpath(run_dir / FROZEN_FILE)
    if not Path(path).is_relative_to(Path(os.path.realpath(root))):
        return None
    try:
        with open(path, "rb") as file:
            return file.read(256 * 1024).decode("utf-8", "replace")
    except OSError:
        return None


def _trials(root: Path, study_dir: Path) -> list[dict[str, Any]]:
    from expyrun.track.studies import trial_rows

    try:
        summary = json.loads((study_dir / "study.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        summary = {}
    directions = summary.get("directions") if isinstance(summary, dict) else None
    rows = trial_rows(study_dir, [str(d) for d in directions] if isinstance(directions, list) else ["minimize"])
    real_root = Path(os.path.realpath(root))
    out = []
    for trial in rows:
        folder = Path(os.path.realpath(trial["run_dir"]))
        out.append({
            "number": trial.get("number"), "state": trial.get("state"), "status": trial.get("status"),
            "values": trial.get("objectives") or trial.get("values") or trial.get("value"),
            "params": trial.get("params") or {},
            "path": folder.relative_to(real_root).as_posix() if folder.is_relative_to(real_root) else None,
        })  # fmt: skip
    return out


def _dashboard_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("optuna_dashboard") is not None
