"""Sweep points in reused worker processes: the Executor contract over the study's `WorkerPool`.

Why: a point whose entry module takes long to import (torch, a big model library) pays that once
per worker instead of once per point (`__launch__.reuse_workers: true`). The price, said in the
README: module-level state lives on from one point to the next of a worker, there is no tee (the
worker writes the point's `outputs.log` itself) and no process group per point (a process a
point leaves behind is not stopped with it; a point cannot be killed alone without its worker).

Workers stay in this process's group: Ctrl-C on a terminal reaches them with us, so a SIGINT that
came that way is not sent again; any other stop signal is passed on to the busy workers.
"""

from __future__ import annotations

import base64
import contextlib
import os
import pickle
import re
import signal
import sys
from pathlib import Path
from typing import Any

from expyrun.execute.contract import Ended, Job, Started
from expyrun.execute.outcome import Outcome
from expyrun.execute.trial_workers import Finished, WorkerPool
from expyrun.execute.wakeup import WakeupPipe
from expyrun.run.child import Terminated
from expyrun.run.status import SIGNAL_EXIT, Status

_RUNNER = "expyrun.execute.point_runner:PointRunner"


def point_call(job: Job, unbuffered: bool = False) -> dict[str, Any]:
    """What a worker needs to call the point's entry point: its run section, import root, config
    and environment, pickled (the config may hold values JSON cannot). `unbuffered`: the user watches
    a terminal, so Python programs the point starts print live too (as `execute/local.py` does)."""
    prepared = job.prepared
    resolved = prepared.resolved
    environment = {**job.environment, "EXPYRUN_CWD": str(prepared.launch_cwd)}
    if unbuffered:
        environment["PYTHONUNBUFFERED"] = "1"
    call = (resolved.run, str(prepared.import_root), resolved.user_config(), environment)
    return {"call": base64.b64encode(pickle.dumps(call)).decode("ascii")}


class ReusedWorkers:
    """`slots` worker processes (one per GPU id with `gpus`), each executing points one at a time."""

    def __init__(self, slots: int, gpus: tuple[str, ...] | None, cwd: Path, no_bytecode: bool) -> None:
        slots = slots if gpus is None else min(slots, len(gpus))
        self.pool = WorkerPool(slots, {"runner": _RUNNER, "init": {}, "no_bytecode": no_bytecode}, cwd, gpus)
        self.jobs: dict[int, Job] = {}
        self.next_key = 0
        self.stopped_by: int | None = None
        self.unbuffered = _is_terminal(1)
        self._wake = WakeupPipe()  # a signal ends a wait at once
        self._suspend: list[int] = []  # Ctrl-Z heard (SIGTSTP), not acted on yet
        self._previous_tstp: Any = None  # the SIGTSTP handler before ours, while ours is installed
        self._tstp_installed = False

    def has_free_slot(self) -> bool:
        return self.stopped_by is None and self.pool.has_free_slot()

    def submit(self, job: Job) -> Started:
        self._open()
        key, self.next_key = self.next_key, self.next_key + 1
        self.jobs[key] = job
        pid, gpu = self.pool.submit(key, point_call(job, self.unbuffered), job.prepared.run_dir)
        return Started(job, pid, gpu)

    def wait(self, timeout: float) -> list[Ended]:
        wake = self._open()
        ended = [self._ended(finished) for finished in self.pool.wait(timeout, wake)]
        self._wake.drain()
        if self._suspend:  # Ctrl-Z: the busy workers stop with us, and continue with us
            self._suspend.clear()
            self._suspend_with_workers()
        return ended

    def _open(self) -> int:
        """The wake-up pipe's read end; SIGTSTP heard (the first call installs both, from the main thread)."""
        if not self._tstp_installed:
            self._previous_tstp = signal.signal(signal.SIGTSTP, lambda signum, _: self._suspend.append(signum))
            self._tstp_installed = True
        return self._wake.open()

    def _suspend_with_workers(self) -> None:
        """Stop the busy workers and this process (SIGSTOP: a terminal's Ctrl-Z is dropped for a process
        group no shell watches, as when expyrun leads its own session); when this process is continued
        (`fg`), continue them. Idle workers read their commands and need neither."""
        busy = [worker.process.pid for worker in self.pool.slots if worker is not None and worker.key is not None]
        for pid in busy:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP)
        sys.stderr.flush()
        os.kill(os.getpid(), signal.SIGSTOP)
        for pid in busy:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)

    def stop(self, grace_s: float, signum: int = signal.SIGTERM) -> list[Ended]:
        """Busy workers get the signal (unless Ctrl-C gave it to them already) and `grace_s` to answer;
        then they are killed. Blocks until every point ended."""
        wake = self._wake.open()
        if self.stopped_by is not None:
            return []  # stopped already: the pool's stop waited for every point
        self.stopped_by = signum
        forwarded = signal.SIGINT if signum == signal.SIGINT else signal.SIGTERM
        if not (forwarded == signal.SIGINT and _terminal_foreground()):
            for worker in self.pool.slots:
                if worker is not None and worker.key is not None:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(worker.process.pid, forwarded)
        exception = KeyboardInterrupt if forwarded == signal.SIGINT else Terminated
        return [self._ended(finished) for finished in self.pool.stop(grace_s, wake, exception)]

    def close(self) -> None:
        self.pool.close()
        self._wake.close()
        if self._tstp_installed:
            signal.signal(signal.SIGTSTP, self._previous_tstp or signal.SIG_DFL)
            self._tstp_installed = False

    def _ended(self, finished: Finished) -> Ended:
        job = self.jobs.pop(finished.key)
        return Ended(job, self._outcome(finished))

    def _outcome(self, finished: Finished) -> Outcome:
        reply = finished.reply or {}
        interrupted = finished.interrupted or reply.get("interrupted")
        if self.stopped_by is not None or interrupted or finished.killed:
            stopped = self.stopped_by or (signal.SIGINT if interrupted == "SIGINT" else signal.SIGTERM)
            outcome = Outcome(Status.INTERRUPTED, SIGNAL_EXIT[signal.Signals(stopped)])
            outcome.stopped = self.stopped_by is not None
        elif finished.reply is None:
            outcome = Outcome(Status.FAILED, 1, exception=_death(finished.failure or ""))
        elif reply.get("status") == Status.COMPLETED:
            outcome = Outcome(Status.COMPLETED, 0, result=reply.get("result"))
        else:
            exception = reply.get("exception") or reply.get("error") or {"type": "Error", "message": "no answer"}
            outcome = Outcome(Status.FAILED, 1, exception=exception)
        outcome.log_error = reply.get("log_error")
        return outcome


def _death(failure: str) -> dict[str, str]:
    """A worker that died during a point, said as a forked run's death is (`outcome.classify`): the
    pool words it for trials ("... exited with status 5", "... was killed by SIGSEGV")."""
    killed = re.search(r"killed by (SIG\w+)", failure)
    if killed:
        return {"type": "Signal", "message": f"the run was killed by {killed.group(1)}"}
    exited = re.search(r"exited with status (-?\d+)", failure)
    if exited:
        code = exited.group(1)
        return {"type": "Exit", "message": f"the run exited with code {code} without reporting a result"}
    return {"type": "WorkerDied", "message": failure or "the worker process is gone"}


def _is_terminal(fd: int) -> bool:
    try:
        return os.isatty(fd)
    except OSError:
        return False


def _terminal_foreground() -> bool:
    """Whether this process group holds its terminal's foreground: a Ctrl-C reached the workers too."""
    try:
        return os.isatty(0) and os.tcgetpgrp(0) == os.getpgrp()
    except OSError:
        return False
