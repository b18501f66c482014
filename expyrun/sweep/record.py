"""The sweep's own record: the only module that writes (and, for others, reads) `sweep.json`.

A sweep folder `{output_dir}/{name}/sweep.{i}/` holds `sweep.json` (the sweep's name, argv, status,
counts and its points' states) and `outputs.log` (a line per point as it ends). Everything else that
needs the sweep's record (the launcher, Slurm's submit and node sides, `show SWEEP`) goes through
here, so its format has one owner.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from expyrun import console
from expyrun.run.record import now, write_json_atomic

if TYPE_CHECKING:
    from expyrun.run.needed import Done
    from expyrun.sweep.spec import SweepSpec

SWEEP_FILE = "sweep.json"
SWEEP_LOG = "outputs.log"
_WRITE_EVERY_S = 0.2  # sweep.json is rewritten at most this often while points run (and at the end)


class SweepRecord:
    """`sweep.json` and the sweep's `outputs.log`."""

    def __init__(self, folder: Path, spec: SweepSpec, argv: list[str]) -> None:
        self.folder = folder
        self.points: list[dict[str, Any]] = [
            {"index": p.index, "variant": p.variant, "values": p.values, "name": None, "run_dir": None,
             "status": "pending", "result": None, "reused": None}
            for p in spec.points()
        ]  # fmt: skip
        self.data: dict[str, Any] = {
            "name": spec.name, "dir": str(folder), "argv": argv, "status": "running", "started_at": now(),
            "ended_at": None, "counts": {}, "points": self.points,
        }  # fmt: skip
        self.written = 0.0
        self.changed = False
        self.log = open(folder / SWEEP_LOG, "a", encoding="utf-8")  # noqa: SIM115 (closed in close())
        self.write(force=True)

    def update(self, index: int, **fields: Any) -> None:
        self.points[index].update(fields)
        self.changed = True
        self.write()

    def skip(self, index: int, done: Done) -> None:
        """A point `--needed` does not run: `skipped`, with the run it reuses and that run's result, so
        the table of a sweep whose points were all done before is complete."""
        self.points[index].update(
            status="skipped", reused=str(done.run_dir), run_dir=str(done.run_dir), result=done.record.get("result")
        )
        self.changed = True
        self.write()
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
        """Rewrite sweep.json when something changed, at most every `_WRITE_EVERY_S` unless `force`."""
        if not force and (not self.changed or time.monotonic() - self.written < _WRITE_EVERY_S):
            return
        self.changed = False
        counts: dict[str, int] = {}
        for point in self.points:
            counts[point["status"]] = counts.get(point["status"], 0) + 1
        self.data["counts"] = counts
        write_json_atomic(self.folder / SWEEP_FILE, self.data)
        self.written = time.monotonic()

    def close(self, status: str) -> None:
        self.data.update(status=status, ended_at=now())
        self.write(force=True)
        self.log.close()
