"""`wait: true`: follow submitted runs to their end and exit as a local launch of them would.

The records are the source of truth: each node writes its run's end status into `run.json` before
its job ends, so reading the records (a few files, every 0.2 s) tells when a run ended, without
asking the controller. `squeue` is asked every few seconds only to find runs whose job is gone
while the record still says `queued` or `running` (cancelled, killed, node lost): those are
`died`, after a grace period for the shared file system to show a last write. A single run's
`outputs.log` is copied to stdout as it grows, as a local run shows its output.

SIGINT, SIGTERM or SIGHUP here cancels the jobs (`scancel`): the runs get SIGTERM as a local run
would (a cancel is never requeued), runs that had not started are recorded `interrupted`, and
expyrun exits 130/143/129 once the records say so (or a deadline passes).
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from expyrun import console
from expyrun.execute.batch_watch import LogCopy, Progress, batch_exit_code, end_sweep, report_end
from expyrun.execute.slurm_queue import is_gone, job_states
from expyrun.run.capture import LOG_FILE
from expyrun.run.record import mark_finished, write_record
from expyrun.run.status import SIGNAL_EXIT, STOP_SIGNALS, Status

POLL_S = 0.2  # records read this often (1 s beyond 200 waiting runs)
SQUEUE_EVERY_S = 3.0
GONE_GRACE_S = 10.0  # a job gone this long while its record still says queued/running: died
STOP_DEADLINE_S = 90.0  # after a cancel: Slurm's KillWait, the runs' 10 s grace, writing records
_FINAL = (Status.COMPLETED, Status.FAILED, Status.INTERRUPTED, Status.DIED)


class _Waited:
    def __init__(self, prepared: Any) -> None:
        self.run_dir: Path = prepared.run_dir
        self.slurm: dict[str, Any] = prepared.record["slurm"]
        self.sweep = prepared.record.get("sweep")
        self.status: str = Status.QUEUED
        self.record: dict[str, Any] = prepared.record
        self.gone_since: float | None = None

    def read(self) -> None:
        from expyrun.run.record import load_record  # (not browse: executors do not import what is above them)

        record = load_record(self.run_dir)
        if record:
            self.record = record
            self.status = str(record.get("status"))

    @property
    def ended(self) -> bool:
        return self.status in _FINAL


def wait_for_runs(prepared: list[Any], job_id: str | None, sweep_folder: Path | None, stream: bool) -> int:
    """Wait until every run ended (or died); report each; the exit code of a local launch of them."""
    runs = [_Waited(p) for p in prepared]
    received: list[int] = []
    previous = {sig: signal.signal(sig, lambda signum, _frame: received.append(signum)) for sig in STOP_SIGNALS}
    log = LogCopy(runs[0].run_dir / LOG_FILE) if stream and len(runs) == 1 else None
    progress = Progress(len(runs)) if len(runs) > 1 and sys.stderr.isatty() else None
    console.info(f"waiting for Slurm job {job_id} ({len(runs)} run{'s' if len(runs) > 1 else ''}); "
                 f"Ctrl-C cancels it")  # fmt: skip
    asked = 0.0
    stop_deadline: float | None = None
    try:
        while True:
            for run in runs:
                if not run.ended:
                    run.read()
                    if run.ended:
                        report_end(run, progress)
            if log is not None:
                log.copy()
            if progress is not None:
                progress.update(runs)
            waiting = [run for run in runs if not run.ended]
            if not waiting:
                break
            if received and stop_deadline is None:
                stop_deadline = time.monotonic() + STOP_DEADLINE_S
                _scancel(job_id)
            if stop_deadline is not None and time.monotonic() > stop_deadline:
                console.warning(f"{len(waiting)} run(s) did not record their end in {STOP_DEADLINE_S:g} s")
                break
            if time.monotonic() - asked >= SQUEUE_EVERY_S or received:
                asked = time.monotonic()
                _find_gone(waiting, progress, cancelled=bool(received))
            time.sleep(POLL_S if len(waiting) <= 200 else 1.0)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if progress is not None:
            progress.close()
    if log is not None:
        log.copy()
    if sweep_folder is not None:
        end_sweep(runs, sweep_folder)
    return batch_exit_code(runs, received)


def _find_gone(waiting: list[_Waited], progress: Progress | None, cancelled: bool) -> None:
    states = job_states([run.slurm for run in waiting])
    for run in waiting:
        if not is_gone(run.slurm, states):
            run.gone_since = None
            continue
        run.gone_since = run.gone_since or time.monotonic()
        if time.monotonic() - run.gone_since < (0.5 if cancelled else GONE_GRACE_S):
            continue
        run.read()
        if run.ended:
            report_end(run, progress)
        elif cancelled and run.status == Status.QUEUED:  # cancelled before it started: it was stopped
            _record_cancelled(run)
            report_end(run, progress)
        else:
            run.status = Status.DIED
            report_end(run, progress)


def _record_cancelled(run: _Waited) -> None:
    record = dict(run.record)
    cancelled = {"type": "Cancelled", "message": "the Slurm job was cancelled before it started"}
    mark_finished(record, Status.INTERRUPTED, SIGNAL_EXIT[signal.SIGTERM], exception=cancelled)
    with contextlib.suppress(OSError):
        write_record(run.run_dir, record)
    run.record, run.status = record, Status.INTERRUPTED
    from expyrun.execute.slurm_node import update_sweep

    update_sweep(record, Status.INTERRUPTED, None, record["exception"])


def _scancel(job_id: str | None) -> None:
    if job_id is None:
        return
    console.warning(f"stopping: cancelling Slurm job {job_id}")
    try:
        subprocess.run(["scancel", job_id], capture_output=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as error:
        console.error(f"could not cancel Slurm job {job_id} ({error}): cancel it with `scancel {job_id}`")
