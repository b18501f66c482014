"""Following a handed-over batch to its end, as a local launch of it would show it: what Slurm's
`wait: true` (`execute/slurm_wait.py`) and Ray's (`execute/ray_submit.py`) share.

Why one module: however a scheduler says that a run ended (Slurm's records polled, Ray's task
refs), the user sees the same things a local launch shows: one line per run as it ends (above a
progress bar on a terminal), a single run's `outputs.log` copied to stdout as it grows, the
sweep's summary line with died points written into `sweep.json`, and the exit code a local launch
of those runs gives. rich is imported only for the progress bar, on a terminal.
"""

from __future__ import annotations

import contextlib
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from expyrun import console
from expyrun.run.status import ACTIVE, INTERRUPT_EXITS, SIGNAL_EXIT, UNSUCCESSFUL, Status


class Reported(Protocol):
    """What a run's end report reads: a Slurm run (`slurm_wait._Waited`) or a Ray one (`ray_submit._Followed`)."""

    @property
    def run_dir(self) -> Path: ...
    @property
    def slurm(self) -> dict[str, Any]: ...
    @property
    def sweep(self) -> Any: ...
    @property
    def status(self) -> str: ...
    @property
    def record(self) -> dict[str, Any]: ...


def report_end(run: Reported, progress: Progress | None) -> None:
    """The run's end, one line: above the progress bar, or on stderr as info, warning or error."""
    record = run.record
    where = f"point {run.sweep['point']} " if isinstance(run.sweep, dict) else ""
    if run.status == Status.COMPLETED:
        message = f"{where}completed: {run.run_dir}"
    elif run.status == Status.DIED:
        message = f"{where}died (its Slurm job is gone; see {run.slurm.get('output')}): {run.run_dir}"
    else:
        exception = record.get("exception") or {}
        why = f" ({exception.get('type', 'error')}: {exception.get('message', '')})" if exception else ""
        message = f"{where}{run.status}{why}: {run.run_dir}"
    if progress is not None:
        progress.log(message)
    elif run.status == Status.COMPLETED:
        console.info(message)
    elif run.status == Status.INTERRUPTED:
        console.warning(message)
    else:
        console.error(message)


def batch_exit_code(runs: Sequence[Reported], received: list[int]) -> int:
    """The exit code of a local launch of these runs: the stop signal received here, else the first
    interrupted run's, else 0 when every run completed, 1 when one did not."""
    if received:
        return SIGNAL_EXIT[signal.Signals(received[0])]
    interrupted = [run for run in runs if run.status == Status.INTERRUPTED]
    if interrupted:
        code = interrupted[0].record.get("exit_code")
        return code if isinstance(code, int) and code in INTERRUPT_EXITS else SIGNAL_EXIT[signal.SIGTERM]
    return 0 if all(run.status == Status.COMPLETED for run in runs) else 1


def end_sweep(runs: Sequence[Reported], folder: Path) -> None:
    """Died points are written into sweep.json too; then the sweep's summary line."""
    from expyrun.execute.slurm_node import update_sweep
    from expyrun.sweep.record import read_sweep

    for run in runs:
        if run.status == Status.DIED:
            update_sweep({**run.record, "status": Status.DIED}, Status.DIED, None,
                         {"type": "Died", "message": "its Slurm job is gone"})  # fmt: skip
    try:
        data = read_sweep(folder)
        counts = data.get("counts") or {}
        status = data.get("status")
    except (OSError, ValueError, KeyError, TypeError, RecursionError):
        return
    summary = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    console.info(f"sweep {status}: {summary}: {folder}")


class LogCopy:
    """A single run's outputs.log copied to stdout as it grows."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0

    def copy(self) -> None:
        try:
            with open(self.path, "rb") as log:
                log.seek(self.offset)
                data = log.read()
        except OSError:
            return
        if data:
            self.offset += len(data)
            with contextlib.suppress(OSError, ValueError):
                sys.stdout.buffer.write(data)
                sys.stdout.flush()


class Progress:
    """On a terminal: queued / running / done of the submitted runs."""

    def __init__(self, total: int, label: str = "slurm") -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
        from rich.progress import Progress as Bar

        self.progress = Bar(
            TextColumn(f"[bold]{label}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            TextColumn("{task.fields[detail]}"), console=Console(stderr=True), transient=True,
        )  # fmt: skip
        self.task = self.progress.add_task(label, total=total, detail="")
        self.progress.start()

    def update(self, runs: Sequence[Reported]) -> None:
        counts: dict[str, int] = {}
        for run in runs:
            counts[run.status] = counts.get(run.status, 0) + 1
        done = sum(n for s, n in counts.items() if s not in ACTIVE)
        failed = sum(n for s, n in counts.items() if s in UNSUCCESSFUL)
        detail = f"{counts.get('queued', 0)} queued, {counts.get('running', 0)} running" + (
            f", {failed} failed" if failed else ""
        )
        self.progress.update(self.task, completed=done, detail=detail)

    def log(self, message: str) -> None:
        """A run's end above the bar: its exception text is the run's, shown escaped as by `console`."""
        self.progress.console.print(f"expyrun: {console.visible(message)}", markup=False, highlight=False)

    def close(self) -> None:
        self.progress.stop()
