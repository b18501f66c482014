"""`wait: true`: follow submitted runs to their end and exit as a local launch of them would.

The records are the source of truth: each node writes its run's end status into `run.json` before
its job ends, so reading the records (a few files, every 0.2 s) tells when a run ended, without
asking the controller. `squeue` is asked every few seconds only to find runs whose job is gone
while the record still says `queued` or `running` (cancelled, killed, node lost): those are
`died`, after a grace period for the shared file system to show a last write. A single run's
`outputs.log` is copied to stdout as it grows, as a local run shows its output.

A stop signal here stops the jobs so that each run ends as a local launch's would (SPEC 4) and
expyrun exits 130/143/129 once the records say so (or a deadline passes):
- SIGTERM cancels the jobs (`scancel`): Slurm sends SIGTERM to each job's processes, so the run gets
  SIGTERM as a local run would (a cancel is never requeued), and the node ends the run's grace
  before Slurm's `KillWait` runs out (`slurm_node.SlurmHooks.stop_grace`) to record it `interrupted`.
- SIGINT and SIGHUP cannot be given by a cancel (its signal is SIGTERM, and the run would record
  143): the pending jobs are cancelled and the signal itself is sent to the running jobs' batch
  shells, their nodes (`scancel --batch --signal=INT|HUP`), which pass it on as a local launcher
  does (SIGINT as SIGINT, SIGHUP as SIGTERM; SIGKILL after 10 s) and record 130/129. A job still
  running `CANCEL_AFTER_S` later (it started meanwhile, or its node did not answer) is cancelled.
Runs that had not started are recorded `interrupted` with the signal's exit code; so is a run whose
job is gone while its record still says `running` (the node was killed before it recorded the end):
no run is left `running` by a process that is gone.
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
from expyrun.execute.slurm_queue import is_gone, job_key, job_states
from expyrun.run.capture import LOG_FILE
from expyrun.run.record import mark_finished, write_record
from expyrun.run.status import SIGNAL_EXIT, STOP_SIGNALS, Status

POLL_S = 0.2  # records read this often (1 s beyond 200 waiting runs)
SQUEUE_EVERY_S = 3.0
GONE_GRACE_S = 10.0  # a job gone this long while its record still says queued/running: died
STOP_DEADLINE_S = 90.0  # after a cancel: Slurm's KillWait, the runs' 10 s grace, writing records
CANCEL_AFTER_S = 15.0  # after SIGINT/SIGHUP was sent to the nodes: their 10 s grace, then records written
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
    cancel_at: float | None = None  # when the jobs of the runs still running are cancelled
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
                cancel_at = _stop_jobs(job_id, signal.Signals(received[0]))
            if cancel_at is not None and time.monotonic() >= cancel_at:
                cancel_at = None
                _scancel(sorted({job_key(run.slurm) or str(job_id) for run in waiting}))
            if stop_deadline is not None and time.monotonic() > stop_deadline:
                console.warning(f"{len(waiting)} run(s) did not record their end in {STOP_DEADLINE_S:g} s")
                break
            if time.monotonic() - asked >= SQUEUE_EVERY_S or received:
                asked = time.monotonic()
                _find_gone(waiting, progress, received[0] if received else None)
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


def _find_gone(waiting: list[_Waited], progress: Progress | None, stopped_by: int | None) -> None:
    """Runs whose job is gone while their record says queued/running: `interrupted` when this launch
    stopped them (`stopped_by`: the signal it received), else `died` (after `GONE_GRACE_S`)."""
    states = job_states([run.slurm for run in waiting])
    for run in waiting:
        if not is_gone(run.slurm, states):
            run.gone_since = None
            continue
        run.gone_since = run.gone_since or time.monotonic()
        if time.monotonic() - run.gone_since < (0.5 if stopped_by is not None else GONE_GRACE_S):
            continue
        run.read()
        if run.ended:
            report_end(run, progress)
        elif stopped_by is not None:  # stopped here, by the cancel or the signal this launch sent
            _record_stopped(run, signal.Signals(stopped_by))
            report_end(run, progress)
        else:
            run.status = Status.DIED
            report_end(run, progress)


def _record_stopped(run: _Waited, stopped_by: signal.Signals) -> None:
    """The run's job ended, stopped by this launch, without the run recording its end: it never started
    (cancelled while pending), or its node was killed first (Slurm's SIGKILL, `KillWait` after its
    SIGTERM). It is recorded `interrupted` with the exit code of the signal this launch received, as
    a local launch records a run it stopped, so that no record says `running` for a process gone."""
    record = dict(run.record)
    if run.status == Status.QUEUED:
        stopped = {"type": "Cancelled", "message": "the Slurm job was cancelled before it started"}
    else:
        stopped = {
            "type": "Cancelled",
            "message": "the Slurm job was stopped and ended before the run recorded its end",
        }
    mark_finished(record, Status.INTERRUPTED, SIGNAL_EXIT[stopped_by], exception=stopped)
    with contextlib.suppress(OSError):
        write_record(run.run_dir, record)
    run.record, run.status = record, Status.INTERRUPTED
    from expyrun.execute.slurm_node import update_sweep

    update_sweep(record, Status.INTERRUPTED, None, record["exception"])


def _stop_jobs(job_id: str | None, received: signal.Signals) -> float | None:
    """Stop the jobs for the stop signal `received` (see the module's docstring); when the jobs still
    running then are to be cancelled (None: cancelled already)."""
    if job_id is None:
        return None
    if received == signal.SIGTERM:
        _scancel([job_id])
        return None
    console.warning(f"stopping: cancelling Slurm job {job_id} (its running runs get {received.name} as a local "
                    f"launch's would; any still running in {CANCEL_AFTER_S:g} s are cancelled)")  # fmt: skip
    _slurm_command(["scancel", "--state=PENDING", job_id], job_id)  # first: one starting now is sent the signal
    _slurm_command(["scancel", "--batch", f"--signal={received.name.removeprefix('SIG')}", job_id], job_id)
    return time.monotonic() + CANCEL_AFTER_S


def _scancel(jobs: list[str]) -> None:
    """Cancel these jobs (ids, or `ARRAY_TASK` keys): Slurm sends SIGTERM to their processes."""
    if not jobs:
        return
    named = ", ".join(jobs)
    console.warning(f"stopping: cancelling Slurm job {named}")
    _slurm_command(["scancel", *jobs], named)


def _slurm_command(command: list[str], job_id: str) -> None:
    """A Slurm command that stops jobs; its refusals are not errors (a job that ended meanwhile, a
    `--state=PENDING` that matched nothing), only a `scancel` that could not be run is reported."""
    try:
        subprocess.run(command, capture_output=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as error:
        console.error(f"could not stop Slurm job {job_id} ({error}): cancel it with `scancel {job_id}`")
