"""The local executor: prepared run folders executed on this machine, `slots` at a time.

Each run is a forked child, leader of its own process group, whose output one tee process (shared
by the executor's runs, `run/capture.py`) copies to its `outputs.log`. One loop supervises them all
(a single run is a pool of one): it reads each child's result, hands GPU ids out one per executing
run, passes signals on (SIGINT as SIGINT, SIGTERM and SIGHUP as SIGTERM, SIGKILL after `grace_s`),
and never waits on anything without a way out. A run's slot is free as soon as its child is reaped;
the run is reported ended once the tee says its log is complete (or `LOG_GRACE_S` later: a daemon
the run left may hold its output), so the next point starts while the last one's log drains. A
sweep's points are forked by the tee (`fork_from_tee`), which reports their ends: the launcher's own
forks cost it ~2 ms of page faults a point, the main cost of `jobs: 2` on two cores. With
one slot and an interactive terminal the run owns the terminal's foreground, so `input()`,
`breakpoint()` and Ctrl-Z behave as in plain Python.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from expyrun.execute.contract import Ended, Job, Started
from expyrun.execute.outcome import Outcome, classify
from expyrun.run import child
from expyrun.run.capture import LOG_FILE, Tee, TeeProcess
from expyrun.run.status import SIGNAL_EXIT, STOP_GRACE_S

if TYPE_CHECKING:  # gpu_leases (and fcntl) are imported only where a GPU is leased
    from contextlib import AbstractContextManager

    from expyrun.execute.gpu_leases import Lease

GRACE_S = STOP_GRACE_S  # after passing a stop signal on, how long a run may take to end before SIGKILL
LEASE_POLL_S = 0.2  # while every GPU id is leased by other launches, how often to look again
LOG_GRACE_S = 2.0  # after a run's child ended, how long its log may take to be complete (a daemon
# the run left, outside its group, may hold its output: the tee goes on copying, nobody waits)


class _Running:
    """An executing run: its child, tee, result pipe (None once at end of file) and what it sent;
    once its child is reaped, its wait status and until when its log may take to be complete."""

    def __init__(self, job: Job, pid: int, tee: Tee, result_fd: int, gpu: str | None, lease: Lease | None) -> None:
        self.job = job
        self.pid = pid
        self.tee = tee
        self.result_fd: int | None = result_fd
        self.gpu = gpu
        self.lease = lease  # the GPU's machine-wide lease (execute/gpu_leases.py), released at the end
        self.payload = bytearray()
        self.status = 0
        self.stopped_by: int | None = None  # the stop signal received when it was reaped
        self.log_deadline = 0.0
        self.spawned = False  # forked by the tee (its end comes from the tee's report, not waitpid)


class LocalExecutor:
    """Executes jobs on this machine as forked run children, `slots` at once (the `Executor` contract
    of `expyrun.execute.contract`), driven by the one loop (`expyrun.campaign.loop`): a launch's and
    a node's (`python -m expyrun.node`) alike.

    Its handlers (SIGCHLD and a wake-up fd, so `wait` returns as soon as a run ends or a signal
    comes; SIGTSTP) are installed by the first `submit` or `wait` and restored by `close`. With one
    slot and the terminal's foreground, each run takes the terminal; a run that held it and was
    stopped by Ctrl-C (SIGINT, or exit 130) makes this process hear SIGINT too, as a shell does, so
    whoever drives the executor stops. With more slots the runs read no terminal (stdin is
    /dev/null): two runs cannot share one, and a background read would stop the run for good.
    """

    def __init__(
        self,
        slots: int = 1,
        gpus: tuple[str, ...] | None = None,
        grace_s: float = GRACE_S,
        leases: bool = True,
        fork_from_tee: bool = False,
    ) -> None:
        self.slots = slots if gpus is None else min(slots, len(gpus))
        # runs forked by the tee process, not this one (a sweep's points: `TeeProcess.spawn` says why);
        # not a run that takes the terminal or holds a GPU lease (they need this process's session
        # and descriptors), nor a single run (pickle costs a launch ~3 ms to import)
        self.fork_from_tee = fork_from_tee
        self.free_gpus = list(gpus) if gpus is not None else None
        self.leases = leases  # GPU ids leased machine-wide (False where a scheduler assigns GPUs: Slurm)
        self._lease: Lease | None = None  # taken by has_free_slot for the next submit
        self._told_waiting = False
        self.grace_s = grace_s
        self.received: list[int] = []  # stop signals: the runs that end now are interrupted
        self.kill_at: float | None = None
        self.unbuffered = _is_terminal(1)
        self.tees = TeeProcess()  # forked at the first run
        self.running: dict[int, _Running] = {}  # executing: pid -> run
        self.ending: dict[int, _Running] = {}  # reaped, their logs not complete yet: pid -> run
        self.terminal: int | None = None
        self._restore: Callable[[], None] | None = None  # set while the handlers are installed
        self._wake_read = -1
        self._suspend: list[int] = []

    # The contract (expyrun.execute.contract.Executor)

    def has_free_slot(self) -> bool:
        return len(self.running) < self.slots and not self.received and self._gpu_leased()

    def _gpu_leased(self) -> bool:
        """Whether a GPU this executor may give is leased for the next run (taken now if free); when
        every such id is held by another launch, says once who holds them and answers False."""
        if not self.leases or not self.free_gpus or self._lease is not None:
            return True
        from expyrun.execute.gpu_leases import try_lease, waiting_message

        for gpu in self.free_gpus:
            self._lease = try_lease(gpu)
            if self._lease is not None:
                self._told_waiting = False
                return True
        if not self._told_waiting:
            from expyrun import console

            console.info(waiting_message(self.free_gpus))
            self._told_waiting = True
        return False

    def submit(self, job: Job) -> Started:
        self._open()
        started = self._start(job, self.terminal)
        self.running[started.pid] = started
        return Started(job, started.pid, started.gpu)

    def wait(self, timeout: float) -> list[Ended]:
        """Runs that ended within `timeout` s; SIGKILL for those still running past a stop's grace."""
        self._open()
        if self._lease is not None:  # taken for a run that was not submitted (no point came): not kept
            self._lease.release()  # while waiting (has_free_slot takes one again)
            self._lease = None
        if self._told_waiting:  # waiting for another launch's GPU lease: look again soon
            timeout = min(timeout, LEASE_POLL_S)
        if self.ending:  # a log to be complete: not waited for past its grace
            timeout = min(timeout, max(0.0, min(run.log_deadline for run in self.ending.values()) - time.monotonic()))
        self._wait(self.running, self._wake_read, timeout)
        if self._suspend:  # Ctrl-Z while the runs do not own the terminal: they stop with us
            self._suspend.clear()
            suspend_all(list(self.running))
        self.tees.collect()
        for pid in list(self.running):
            if self._reap(self.running[pid], self.terminal):
                finished = self.ending[pid] = self.running.pop(pid)
                if finished.gpu is not None and self.free_gpus is not None:
                    self.free_gpus.append(finished.gpu)
                if finished.lease is not None:
                    finished.lease.release()
        if self.kill_at is not None and time.monotonic() >= self.kill_at:
            for run in self.running.values():
                _kill_group(run.pid)
        ended: list[Ended] = []
        now = time.monotonic()
        for pid, run in list(self.ending.items()):
            if run.tee.done or now >= run.log_deadline:
                del self.ending[pid]
                ended.append(Ended(run.job, self._outcome(run)))
        return ended

    def stop(self, grace_s: float, signum: int = signal.SIGTERM) -> list[Ended]:
        """Pass `signum` on (SIGINT as SIGINT, SIGTERM and SIGHUP as SIGTERM) at the first call; runs
        still there `grace_s` later are killed by `wait`. Returns at once, with what ended already."""
        self._open()
        if not self.received:
            self.received.append(signum)
        deadline = time.monotonic() + grace_s
        if self.kill_at is None:
            self.kill_at = deadline
            forwarded = self.forwarded(signum)
            for run in self.running.values() if forwarded is not None else ():
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(run.pid, forwarded or signal.SIGTERM)  # (forwarded is not None here)
        else:
            self.kill_at = min(self.kill_at, deadline)
        return self.wait(0.0)

    def close(self) -> None:
        """Kill what still runs (only after an error of the caller's), give the terminal back, let the
        tee exit once the logs are complete (not waited for), restore handlers."""
        for run in self.running.values():
            _kill_group(run.pid)
        for run in self.running.values():
            with contextlib.suppress(ChildProcessError):
                os.waitpid(run.pid, 0)
            if run.lease is not None:
                run.lease.release()
        self.running.clear()
        self.ending.clear()
        if self._lease is not None:
            self._lease.release()
            self._lease = None
        if self.terminal is not None:
            child.take_terminal(self.terminal, os.getpgrp())
        self.tees.close()
        if self._restore is not None:
            self._restore()
            self._restore = None

    def _open(self) -> None:
        """Install the wake-up pipe, SIGCHLD and SIGTSTP handlers, and find the terminal (once)."""
        if self._restore is not None:
            return
        wake_read, wake_write = os.pipe()
        os.set_blocking(wake_read, False)
        os.set_blocking(wake_write, False)
        previous_wakeup = signal.set_wakeup_fd(wake_write)
        previous_chld = signal.signal(signal.SIGCHLD, lambda *_: None)  # a byte on the wake pipe
        previous_tstp = signal.signal(signal.SIGTSTP, lambda signum, _: self._suspend.append(signum))
        self.terminal = _foreground_terminal() if self.slots == 1 else None
        self._wake_read = wake_read

        def restore() -> None:
            signal.signal(signal.SIGCHLD, previous_chld)
            signal.signal(signal.SIGTSTP, previous_tstp)
            signal.set_wakeup_fd(previous_wakeup)
            os.close(wake_read)
            os.close(wake_write)

        self._restore = restore

    @property
    def stopped_by(self) -> int | None:
        return self.received[0] if self.received else None

    def _start(self, job: Job, terminal: int | None) -> _Running:
        prepared = job.prepared
        lease, self._lease = self._lease, None
        if lease is not None and self.free_gpus is not None:  # (a lease is taken only from free_gpus)
            self.free_gpus.remove(lease.gpu)
            lease.describe(f"{prepared.run_dir} (launcher pid {os.getpid()})")
        gpu = lease.gpu if lease is not None else self.free_gpus.pop(0) if self.free_gpus else None
        environment = dict(job.environment)
        if gpu is not None:
            environment["CUDA_VISIBLE_DEVICES"] = gpu
        if self.unbuffered:  # the user watches a terminal: Python programs the run starts print live too
            environment["PYTHONUNBUFFERED"] = "1"
        tee = self.tees.open(prepared.run_dir / LOG_FILE, metrics=prepared.resolved.run.metrics)
        from_snapshot = not prepared.debug
        hand_over: AbstractContextManager[None] = contextlib.nullcontext()
        if lease is not None:  # the run's processes hold its GPU's lease until they are gone
            from expyrun.execute.gpu_leases import handing_to_child

            hand_over = handing_to_child(lease)
        spawned = None
        try:
            if self.fork_from_tee and terminal is None and lease is None:
                spawned = self._spawn(job, tee, environment, from_snapshot)
            if spawned is None:
                with hand_over:
                    pid, result_fd = child.start(
                        job.work, prepared.run_dir, prepared.launch_cwd, (tee.stdout, tee.stderr), environment,
                        from_snapshot, terminal, no_stdin=self.slots > 1,
                    )  # fmt: skip
            else:
                pid, result_fd = spawned
        finally:
            tee.close_writers()  # (the tee's copy of the run ends at once when no child holds them)
        if spawned is None:
            tee.watch(pid)
        os.set_blocking(result_fd, False)
        if terminal is not None:
            child.take_terminal(terminal, pid)
        run = _Running(job, pid, tee, result_fd, gpu, lease)
        run.spawned = spawned is not None
        return run

    def _spawn(self, job: Job, tee: Tee, environment: dict[str, str], from_snapshot: bool) -> tuple[int, int] | None:
        """The run child forked by the tee (`TeeProcess.spawn`); None when it cannot be (a target that
        does not pickle, a config too large for one message, a tee that refused): then this process
        forks it."""
        import pickle

        prepared = job.prepared
        arguments = (job.work, str(prepared.run_dir), str(prepared.launch_cwd), environment, from_snapshot,
                     self.slots > 1)  # fmt: skip
        try:
            payload = pickle.dumps(arguments, pickle.HIGHEST_PROTOCOL)
        except Exception:  # (a study driver's closure, say)
            return None
        try:
            return self.tees.spawn(tee, payload)
        except OSError:
            return None

    def _wait(self, running: dict[int, _Running], wake_read: int, timeout: float) -> None:
        """Until a child may have changed state, a result arrived, a log is complete, a signal came,
        or a deadline passed."""
        if self.kill_at is not None:
            timeout = max(0.0, min(timeout, self.kill_at - time.monotonic()))
        readers = [wake_read] + [run.result_fd for run in running.values() if run.result_fd is not None]
        if self.tees.done_fd >= 0:  # a log complete, or a run child the tee forked ended
            readers.append(self.tees.done_fd)
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

    def _reap(self, run: _Running, terminal: int | None) -> bool:
        """Whether the run's child ended (then its result is read and its group killed); a child
        stopped by Ctrl-Z is followed to the shell with the terminal."""
        if run.spawned:  # the tee reaped it
            reported = self.tees.exits.pop(run.tee.key, None)
            if reported is None:
                return False
            pid, status = run.pid, reported
        else:
            try:
                pid, status = os.waitpid(run.pid, os.WNOHANG | os.WUNTRACED)
            except ChildProcessError:
                return False
        if pid == 0:
            return False
        if os.WIFSTOPPED(status):
            _suspend_with(run.pid, terminal)
            return False
        _read_result(run)
        if run.result_fd is not None:
            os.close(run.result_fd)
            run.result_fd = None
        _kill_group(run.pid)  # what the run left in its group ends with it (the README's rule)
        run.tee.reaped()
        run.status, run.stopped_by = status, self.stopped_by
        if terminal is not None and run.stopped_by is None and _stopped_by_ctrl_c(status):
            # the run held the terminal, so Ctrl-C reached its group alone: this process hears it too
            # (now, before the loop takes another point for the slot)
            run.stopped_by = signal.SIGINT
            os.kill(os.getpid(), signal.SIGINT)
        run.log_deadline = time.monotonic() + LOG_GRACE_S
        return True

    def _outcome(self, run: _Running) -> Outcome:
        """How a reaped run ended, its log complete (or given up on)."""
        try:
            message = json.loads(run.payload) if run.payload.strip() else {}
        except ValueError:
            message = {}
        outcome = classify(run.status, message if isinstance(message, dict) else {}, run.stopped_by)
        outcome.log_error = run.tee.log_error
        return outcome

    def forwarded(self, received: int) -> int | None:
        """The signal the runs get for a stop signal expyrun received; None when they got it already
        (a Slurm job's node side: Slurm signals every process of a job it stops)."""
        return signal.SIGINT if received == signal.SIGINT else signal.SIGTERM


def _stopped_by_ctrl_c(wait_status: int) -> bool:
    """Whether a run ended as SIGINT ends a program: killed by it, or exit status 130."""
    if os.WIFSIGNALED(wait_status):
        return os.WTERMSIG(wait_status) == signal.SIGINT
    return os.WIFEXITED(wait_status) and os.WEXITSTATUS(wait_status) == SIGNAL_EXIT[signal.SIGINT]


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


def suspend_all(pgids: list[int]) -> None:
    """Stop every run's group and this process; continue them all when this process is continued.
    Public: `expyrun worker` (queue/worker.py) stops its nodes' groups with it on Ctrl-Z too."""
    for pgid in pgids:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGSTOP)
    os.kill(os.getpid(), signal.SIGSTOP)
    for pgid in pgids:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGCONT)
