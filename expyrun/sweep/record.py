"""The sweep's own record: the only module that writes (and, for others, reads) `sweep.json`.

A sweep folder `{output_dir}/{name}/sweep.{i}/` holds:
- `sweep.json`: the header (name, argv, status, counts, size, the launcher's host and pid), small,
  rewritten atomically at most every `_WRITE_EVERY_S` while points run;
- `points.jsonl`: append-only, one JSON line per change of a point (`{"index": 3, "status": ...}`,
  its first line carrying its variant and values); a point's row is its lines folded in order;
- `outputs.log`: a line per point as it ends.
A sweep of up to `FOLD_LIMIT` points lists every point from the start (pending) and, once it ended,
gets its folded rows written into `sweep.json` as `points` too (the format of expyrun <= 0.3, which
`show` and scripts read whole). A larger sweep's rows appear as its points are prepared, and its
`sweep.json` stays a header: a million-point grid is not one 159 MB file rewritten many times a
second. Readers (`show SWEEP`, the Slurm side, `--wait`) go through `read_sweep`, which reads both.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from expyrun import console
from expyrun.run.record import host_name, now, to_json, write_json_atomic
from expyrun.run.status import ACTIVE, Status

if TYPE_CHECKING:
    from expyrun.run.needed import Done
    from expyrun.sweep.spec import Point, SweepSpec

SWEEP_FILE = "sweep.json"
SWEEP_LOG = "outputs.log"
POINTS_FILE = "points.jsonl"
FORMAT = 2  # 1 (no `format`): every point's row inside sweep.json, rewritten whole
FOLD_LIMIT = 10_000  # sweeps up to this size list pending points and get `points` in sweep.json at the end
_WRITE_EVERY_S = 0.2  # sweep.json is rewritten at most this often while points run (and at the end)
_ACTIVE = tuple(ACTIVE)
_SUCCESSFUL = (Status.COMPLETED, Status.SKIPPED)


def _row(point: Point) -> dict[str, Any]:
    return {"index": point.index, "variant": point.variant, "values": point.values, "name": None,
            "run_dir": None, "status": "pending", "result": None, "reused": None}  # fmt: skip


def _line(fields: dict[str, Any]) -> str:
    return to_json(fields, indent=None) + "\n"


class SweepRecord:
    """The launcher's side: `sweep.json`'s header, `points.jsonl` and the sweep's `outputs.log`.

    Memory does not grow with the sweep: counts are kept as numbers, and only the points that are
    queued or running are remembered (to move their count when their status changes).
    """

    def __init__(self, folder: Path, spec: SweepSpec, argv: list[str], local: bool = True) -> None:
        self.folder = folder
        self.spec = spec
        self.size = spec.size
        self.counts: dict[str, int] = {"pending": self.size}
        self.active: dict[int, str] = {}  # index -> queued | running
        launcher = {"host": host_name(), "pid": os.getpid()} if local else {}
        self.data: dict[str, Any] = {
            "format": FORMAT, "name": spec.name, "dir": str(folder), "argv": argv, "cwd": os.getcwd(),
            "status": Status.RUNNING,
            "started_at": now(), "ended_at": None, "size": self.size, "counts": {}, **launcher,
        }  # fmt: skip
        self.written = 0.0
        self.changed = False
        self.lines: TextIO = open(folder / POINTS_FILE, "a", encoding="utf-8")  # noqa: SIM115 (closed in close())
        self.log: TextIO = open(folder / SWEEP_LOG, "a", encoding="utf-8")  # noqa: SIM115 (closed in close())
        self.listed = 0  # points below this index have their first line in points.jsonl
        if self.size <= FOLD_LIMIT:
            for point in spec.points():
                self.lines.write(_line(_row(point)))
            self.listed = self.size
        self.write(force=True)

    @classmethod
    def reopen(cls, folder: Path, spec: SweepSpec) -> tuple[SweepRecord, list[dict[str, Any]]]:
        """The record of a sweep folder written before, taken over by this process (`expyrun resume
        SWEEP`): its rows kept as they are (nothing listed again), its header `running` with this
        process as the launcher, its counts taken from its rows. Returns the record and those rows."""
        data = read_sweep(folder)
        rows = [row for row in data.pop("points") if isinstance(row, dict)]
        self = cls.__new__(cls)
        self.folder, self.spec, self.size = folder, spec, spec.size
        self.counts = {"pending": self.size - len(rows)}
        self.active = {}
        for row in rows:
            status = str(row.get("status"))
            self.counts[status] = self.counts.get(status, 0) + 1
            if status != "pending":  # whatever it was: a point run again moves its count from there
                self.active[int(row["index"])] = status
        legacy = data.get("format") != FORMAT or not (folder / POINTS_FILE).is_file()  # expyrun <= 0.3: rows inside
        data.update(status=Status.RUNNING, ended_at=None, host=host_name(), pid=os.getpid(), format=FORMAT)
        self.data = data
        self.written, self.changed = 0.0, False
        if legacy:
            with open(folder / POINTS_FILE, "w", encoding="utf-8") as lines:
                lines.writelines(_line(row) for row in rows)
        self.lines = open(folder / POINTS_FILE, "a", encoding="utf-8")  # noqa: SIM115 (closed in close())
        self.log = open(folder / SWEEP_LOG, "a", encoding="utf-8")  # noqa: SIM115 (closed in close())
        self.listed = len(rows)
        self.write(force=True)
        return self, rows

    def update(self, index: int, **fields: Any) -> None:
        """A change of point `index` (its name, run folder, status, result): one appended line."""
        while self.listed <= index:  # points are prepared in order: this is the point's first line
            self.lines.write(_line(_row(self.spec.point(self.listed))))
            self.listed += 1
        status = fields.get("status")
        if status is not None:
            old = self.active.pop(index, "pending")
            self.counts[old] -= 1
            self.counts[status] = self.counts.get(status, 0) + 1
            if status in _ACTIVE:
                self.active[index] = status
        self.lines.write(_line({"index": index, **fields}))
        self.changed = True
        self.write()

    def skip(self, index: int, done: Done) -> None:
        """A point `--needed` does not run: `skipped`, with the run it reuses and that run's result, so
        the table of a sweep whose points were all done before is complete."""
        self.update(
            index, status=Status.SKIPPED, reused=str(done.run_dir), run_dir=str(done.run_dir),
            result=done.record.get("result"),
        )  # fmt: skip
        self.ended(index, f"point {index} skipped: {done.run_dir} is done (--needed)")

    def ended(self, index: int, line: str) -> None:
        """The point's line, on the terminal and in the sweep's log: values and exception texts
        come from the config and the run, so control characters (and newlines) are shown escaped
        (`cat outputs.log` must not drive the terminal either)."""
        line = console.visible(line, one_line=True)
        self.log.write(f"{line}\n")
        self.log.flush()
        console.info(line)

    def write(self, force: bool = False) -> None:
        """Rewrite sweep.json's header when something changed, at most every `_WRITE_EVERY_S` unless
        `force`; the points' lines are flushed first, so the counts never run ahead of them."""
        if not force and (not self.changed or time.monotonic() - self.written < _WRITE_EVERY_S):
            return
        self.changed = False
        self.lines.flush()
        self.data["counts"] = {status: n for status, n in self.counts.items() if n}
        write_json_atomic(self.folder / SWEEP_FILE, self.data)
        self.written = time.monotonic()

    def detach(self, **header: Any) -> None:
        """The launcher leaves the sweep to others (Slurm's tasks update it through `update_point`)."""
        self.data.update(header)
        self.write(force=True)
        self.lines.close()
        self.log.close()

    def close(self, status: str) -> None:
        """The sweep ended: its status and end time; a small sweep's folded rows into sweep.json."""
        self.data.update(status=status, ended_at=now())
        self.write(force=True)
        self.lines.close()
        self.log.close()
        if self.size <= FOLD_LIMIT:
            self.data["points"] = fold_points(self.folder)
            write_json_atomic(self.folder / SWEEP_FILE, self.data)


def fold_points(folder: Path) -> list[dict[str, Any]]:
    """Every point row `points.jsonl` names, its lines applied in order; a line cut short (its writer
    was killed while writing it) or foreign is passed over."""
    rows: dict[int, dict[str, Any]] = {}
    try:
        handle = open(folder / POINTS_FILE, encoding="utf-8")  # noqa: SIM115 (closed below)
    except FileNotFoundError:
        return []
    with handle:
        for text in handle:
            try:
                fields = json.loads(text)
                index = fields["index"]
            except (ValueError, KeyError, TypeError, RecursionError):
                continue
            if isinstance(index, int):
                rows.setdefault(index, {"index": index}).update(fields)
    return [rows[index] for index in sorted(rows)]


def read_sweep(folder: Path) -> dict[str, Any]:
    """A sweep's record with `points` (rows) in either format. Raises what reading it raised: OSError,
    ValueError (not JSON), RecursionError, TypeError (not a mapping), KeyError (no points)."""
    data = json.loads((folder / SWEEP_FILE).read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise TypeError("not a mapping")
    if "points" in data:
        return data
    if not (folder / POINTS_FILE).is_file():
        raise KeyError("points")
    data["points"] = fold_points(folder)
    return data


def update_point(folder: Path, index: int, fields: dict[str, Any], log_line: str | None = None) -> dict[str, Any]:
    """A change of point `index` made by someone other than the launcher (a Slurm task, `--wait`),
    under the caller's lock: appended, then the header's counts (and, once no point is left, the
    sweep's status) recomputed from every row. Returns the new header."""
    data = read_sweep(folder)
    if isinstance(data.get("points"), list) and data.get("format") != FORMAT:  # a record of expyrun <= 0.3
        rows = data["points"]
        rows[index].update(fields)
    else:
        with open(folder / POINTS_FILE, "a", encoding="utf-8") as lines:
            lines.write(_line({"index": index, **fields}))
        data.pop("points", None)
        rows = fold_points(folder)
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["status"]] = counts.get(row["status"], 0) + 1
    size = data.get("size")
    if isinstance(size, int) and size > len(rows):
        counts["pending"] = counts.get("pending", 0) + size - len(rows)
    data["counts"] = counts
    if not any(status in (*_ACTIVE, "pending") for status in counts):
        data.update(status=ended_status(counts), ended_at=now())
        if data.get("format") == FORMAT and len(rows) <= FOLD_LIMIT:
            data["points"] = rows
    elif fields.get("status") == Status.RUNNING:
        data["status"] = Status.RUNNING
    write_json_atomic(folder / SWEEP_FILE, data)
    if log_line is not None:
        with open(folder / SWEEP_LOG, "a", encoding="utf-8") as log:
            log.write(console.visible(log_line, one_line=True) + "\n")
    return data


def ended_status(counts: dict[str, int]) -> str:
    """A sweep none of whose points is left: `completed` only when every point completed or was
    skipped; a point that failed, was interrupted or died fails it."""
    return Status.COMPLETED if all(status in _SUCCESSFUL for status in counts) else Status.FAILED
