"""The local executor: prepared run folders executed on this machine, `slots` at a time.

Each run is a forked child, leader of its own process group, with its own tee writing
`outputs.log`. One loop supervises them all (a single run is a pool of one): it reads each
child's result, hands GPU ids out one per executing run, passes signals on (SIGINT as SIGINT,
SIGTERM and SIGHUP as SIGTERM, SIGKILL after `grace_s`), and never waits on anything without a
way out. With one slot and an interactive terminal the run owns the terminal's foreground, so
`input()`, `breakpoint()` and Ctrl-Z behave as in plain Python.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import sys
import time
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

from expyrun.execute.outcome import SIGNAL_EXIT, Outcome, classify
from expyrun.run import child
from expyrun.run.capture import LOG_FILE, Tee, start_tee
from expyrun.run.prepare import PreparedRun

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
GRACE_S = 10.0  # after passing a stop signal on, how long a run may take to end before SIGKILL


class Job(NamedTuple):
    """One prepared run folder, what its run child calls, and variables set for it."""

    prepared: PreparedRun
    work: Callable[[], Any]
    environment: dict[str, str] = {}  # noqa: RUF012 (never mutated: copied before use)


class _Running:
    """An executing run: its child, tee, result pipe (None once at end of file) and what it sent."""

    def __init__(self, job: Job, pid: int, tee: Tee, result_fd: int, gpu: str | None) -> None:
        self.job = job
        self.pid = pid
        self.tee = tee
        self.result_fd: int | None = result_fd
        self.gpu = gpu
        self.payload = bytearray()


class LocalExecutor:
    """Executes jobs on this machine; `on_start(job, pid, gpu)` and `on_end(job, outcome)` keep records."""

    def __init__(
        self,
        slots: int = 1,
        gpus: tuple[str, ...] | None = None,
        on_start: Callable[[Job, int, str | None], None] | None = None,
        on_end: Callable[[Job, Outcome], None] | None = None,
        grace_s: float = GRACE_S,
        on_tick: Callable[[], None] | None = None,
    ) -> None:
        self.slots = slots if gpus is None else min(slots, len(gpus))
        self.free_gpus = list(gpus) if gpus is not None else None
        self.on_start = on_start
        self.on_end = on_end
        self.grace_s = grace_s
        self.on_tick = on_tick  # called at least once a second while runs execute
        self.received: list[int] = []
        self.kill_at: float | None = None
        self.unbuffered = _is_terminal(1)
        self.ending_tees: list[Tee] = []  # tees that closed their pipes and are exiting

    def execute(self, jobs: Iterable[Job]) -> list[Outcome]:
        """Run every job (in order, `slots` at once) until done or stopped; returns the outcomes of
        the jobs that started, in the order they ended.

        `jobs` is consumed lazily, one job when a slot frees (a sweep prepares each point's folder
        then): after a stop signal no further job is taken, so no further folder is made.
        """
        pending = iter(jobs)
        exhausted = False
        running: dict[int, _Running] = {}
        outcomes: list[Outcome] = []
        wake_read, wake_write = os.pipe()
        os.set_blocking(wake_read, False)
        os.set_blocking(wake_write, False)
        previous_wakeup = signal.set_wakeup_fd(wake_write)
        previous = {sig: signal.signal(sig, self._on_signal) for sig in STOP_SIGNALS}
        previous_chld = signal.signal(signal.SIGCHLD, lambda *_: None)  # a byte on the wake pipe
        terminal = _foreground_terminal() if self.slots == 1 else None
        suspend: list[int] = []
        previous_tstp = signal.signal(signal.SIGTSTP, lambda signum, _: suspend.append(signum))
        try:
            while not exhausted or running:
                while not exhausted and not self.received and len(running) < self.slots:
                    job = next(pending, None)
                    if job is None:
                        exhausted = True
                        break
                    started = self._start(job, terminal)
                    running[started.pid] = started
                if self.received:
                    exhausted = True
                if not running:
                    break
                self._wait(running, wake_read)
                if suspend:  # Ctrl-Z while the runs do not own the terminal: they stop with us
                    suspend.clear()
                    _suspend_all(list(running))
                for pid in list(running):
                    ended = self._reap(running[pid], terminal)
                    if ended is not None:
                        outcome = ended
                        finished = running.pop(pid)
                        if finished.gpu is not None and self.free_gpus is not None:
                            self.free_gpus.append(finished.gpu)
                        outcomes.append(outcome)
                        if self.on_end is not None:
                            self.on_end(finished.job, outcome)
                self._pass_signals_on(running)
                self.ending_tees = [tee for tee in self.ending_tees if not tee.reap()]
                if self.on_tick is not None:
                    self.on_tick()
        finally:
            for run in running.values():  # only after an error of ours: leave nothing behind
                _kill_group(run.pid)
            if terminal is not None:
                child.take_terminal(terminal, os.getpgrp())
            for tee in self.ending_tees:  # closed their pipes: exiting now (one left copying for a
                if tee.exited:  # daemon that holds the run's output is not waited for)
                    with contextlib.suppress(ChildProcessError):
                        os.waitpid(tee.pid, 0)
            signal.signal(signal.SIGCHLD, previous_chld)
            signal.signal(signal.SIGTSTP, previous_tstp)
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            signal.set_wakeup_fd(previous_wakeup)
            os.close(wake_read)
            os.close(wake_write)
        return outcomes

    @property
    def stopped_by(self) -> int | None:
        return self.received[0] if self.received else None

    def _on_signal(self, signum: int, _frame: Any) -> None:
        self.received.append(signum)

    def _start(self, job: Job, terminal: int | None) -> _Running:
        prepared = job.prepared
        gpu = self.free_gpus.pop(0) if self.free_gpus is not None else None
        environment = dict(job.environment)
        if gpu is not None:
            environment["CUDA_VISIBLE_DEVICES"] = gpu
        if self.unbuffered:  # the user watches a terminal: Python programs the run starts print live too
            environment["PYTHONUNBUFFERED"] = "1"
        tee = start_tee(prepared.run_dir / LOG_FILE)
        from_snapshot = not prepared.debug
        pid, result_fd = child.start(
            job.work, prepared.run_dir, prepared.launch_cwd, (tee.stdout, tee.stderr), environment, from_snapshot,
            terminal,
        )  # fmt: skip
        tee.close_writers()
        tee.watch(pid)
        os.set_blocking(result_fd, False)
        if terminal is not None:
            child.take_terminal(terminal, pid)
        if self.on_start is not None:
            self.on_start(job, pid, gpu)
        return _Running(job, pid, tee, result_fd, gpu)

    def _wait(self, running: dict[int, _Running], wake_read: int) -> None:
        """Until a child may have changed state, a result arrived, a signal came, or a deadline passed."""
        timeout = 1.0 if self.kill_at is None else max(0.0, min(1.0, self.kill_at - time.monotonic()))
        readers = [wake_read] + [run.result_fd for run in running.values() if run.result_fd is not None]
        try:
            ready, _, _ = select.select(readers, [], [], timeout)
        except InterruptedError:
            ready = []
        with contextlib.suppress(BlockingIOError):
            while os.read(wake_read, 4096):
                pass
        for run in running.values():
            if run.result_fd in ready:
                _read_result(run)

    def _reap(self, run: _Running, terminal: int | None) -> Outcome | None:
        try:
            pid, status = os.waitpid(run.pid, os.WNOHANG | os.WUNTRACED)
        except ChildProcessError:
            return None
        if pid == 0:
            return None
        if os.WIFSTOPPED(status):
            _suspend_with(run.pid, terminal)
            return None
        _read_result(run)
        if run.result_fd is not None:
            os.close(run.result_fd)
            run.result_fd = None
        _kill_group(run.pid)  # what the run left in its group ends with it (the README's rule)
        run.tee.stop()
        if not run.tee.reap():
            self.ending_tees.append(run.tee)
        try:
            message = json.loads(run.payload) if run.payload.strip() else {}
        except ValueError:
            message = {}
        outcome = classify(status, message if isinstance(message, dict) else {}, self.stopped_by)
        outcome.log_error = run.tee.log_error
        return outcome

    def forwarded(self, received: int) -> int | None:
        """The signal the runs get for a stop signal expyrun received; None when they got it already
        (a Slurm job's node side: Slurm signals every process of a job it stops)."""
        return signal.SIGINT if received == signal.SIGINT else signal.SIGTERM

    def _pass_signals_on(self, running: dict[int, _Running]) -> None:
        if not self.received:
            return
        if self.kill_at is None:
            self.kill_at = time.monotonic() + self.grace_s
            forwarded = self.forwarded(self.received[0])
            for run in running.values() if forwarded is not None else ():
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(run.pid, forwarded or signal.SIGTERM)  # (forwarded is not None here)
        if len(self.received) > 2 or time.monotonic() >= self.kill_at:
            for run in running.values():
                _kill_group(run.pid)


def _read_result(run: _Running) -> None:
    """Read what the run sent so far; at end of file the pipe is closed and no longer watched."""
    if run.result_fd is None:
        return
    with contextlib.suppress(BlockingIOError, InterruptedError):
        while chunk := os.read(run.result_fd, 1 << 16):
            run.payload.extend(chunk)
        os.close(run.result_fd)  # end of file: the run (and anything holding the pipe) closed it
        run.result_fd = None


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def _is_terminal(fd: int) -> bool:
    try:
        return os.isatty(fd)
    except OSError:
        return False


def _foreground_terminal() -> int | None:
    """Stdin's terminal when this process group is in its foreground (an interactive launch), else None."""
    try:
        if os.isatty(0) and os.tcgetpgrp(0) == os.getpgrp():
            return 0
    except OSError:
        pass
    return None


def _suspend_with(run_pgid: int, terminal: int | None) -> None:
    """Ctrl-Z stopped the run: take the terminal back and stop too, so the shell sees the job
    stopped; when `fg` continues us, give the run its terminal again and continue it."""
    if terminal is None:
        return  # stopped by someone else (SIGSTOP): keep waiting for it
    child.take_terminal(terminal, os.getpgrp())
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGSTOP)
    child.take_terminal(terminal, run_pgid)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(run_pgid, signal.SIGCONT)


def _suspend_all(pgids: list[int]) -> None:
    """Stop every run's group and this process; continue them all when this process is continued."""
    for pgid in pgids:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGSTOP)
    os.kill(os.getpid(), signal.SIGSTOP)
    for pgid in pgids:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGCONT)


def exit_code(outcomes: list[Outcome], stopped_by: int | None) -> int:
    """What expyrun exits with for a set of runs: the stop signal's code, 1 if any failed, else 0."""
    if stopped_by is not None:
        return SIGNAL_EXIT[signal.Signals(stopped_by)]
    if any(outcome.status == "interrupted" for outcome in outcomes):
        return next(o.exit_code for o in outcomes if o.status == "interrupted")
    return 1 if any(outcome.status == "failed" for outcome in outcomes) else 0
