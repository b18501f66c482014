"""`expyrun worker`: execute queued run folders, `jobs` at a time, until stopped (or the queue is empty).

Why a node process per run: a queued folder is executed exactly as a local launch would execute
it, by the node entry (`expyrun.node.main([FOLDER])`, as `python -m expyrun.node FOLDER`: the local
executor, the same run child, tee, record and signals), so the worker itself holds no run state.
The node is forked from the worker, which imported `expyrun.node` once: a run costs no interpreter
start (benchmarks/bench_queue.py). The worker claims an entry (`queue/store.py`); the forked node
holds the claim's descriptor (the lock then lasts as long as the node does), and the worker removes
the entry when the node has ended the folder's record.

Exit code: 0 when every run the worker executed completed (or was pruned), 1 when any ended
otherwise (`failed`, `interrupted`, recorded `failed` after `MAX_ATTEMPTS`), as a sweep's launch
exits, so `expyrun worker --once && next-step` does not go on after a failed run; 130/143 when the
worker itself was stopped (its runs went back to the queue and count for nothing).

Stopping: Ctrl-C or SIGTERM of the worker sends SIGTERM to its nodes, which pass it on to their
runs and put the folders back to `queued` (`execute/queue_node.py`); a SIGKILLed worker's nodes hear
SIGTERM from the kernel (`PR_SET_PDEATHSIG`) and do the same, so the next worker finds the entries
free and executes them again (`attempt` + 1). A folder that already had `MAX_ATTEMPTS` executions is
recorded `failed` instead.

Ctrl-Z: each node leads a session of its own, so a terminal's Ctrl-Z reaches the worker alone. The
worker stops every executing run with itself (SIGSTOP to each process group of its nodes' sessions:
the node, its tee, the run's group and any group the run made; then to itself, so the shell sees the
job stopped) and continues them all when it is continued (`fg`), as a local launch stops its runs
(`execute/local.suspend_all`). With `--jobs N` all N runs stop: the worker is one job of the shell.

GPUs (`--gpus`): each run gets one id, leased machine-wide (`execute/gpu_leases.py`); the node and
the run hold the lease, so it lasts as long as they do, whatever happens to the worker.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from expyrun import console
from expyrun.execute.gpu_leases import Lease, handing_to_child, try_lease, waiting_message
from expyrun.execute.local import suspend_all
from expyrun.execute.queue_node import MAX_ATTEMPTS
from expyrun.execute.wakeup import WakeupPipe
from expyrun.queue.store import Claim, claim_next, entries
from expyrun.run.record import load_record, mark_finished, write_record
from expyrun.run.status import ACTIVE, SIGNAL_EXIT, STOP_SIGNALS, Status

POLL_S = 0.1  # how often an idle worker looks at the queue (and a busy one at its nodes)
SUCCESSFUL = frozenset({Status.COMPLETED, Status.PRUNED})  # how a run may end without failing the worker
GRACE_S = 30.0  # after passing a stop on, how long nodes may take (their runs get 10 s) before SIGKILL


@dataclass
class _Executing:
    claim: Claim
    pid: int  # the node process (forked: `_node`)
    pidfd: int  # readable once it has exited (the worker's waits wake at once)
    lease: Lease | None


class Worker:
    """One worker process: claims, executes, removes; stops on SIGINT/SIGTERM."""

    def __init__(self, folder: Path, jobs: int, gpus: tuple[str, ...] | None, once: bool) -> None:
        self.folder = folder
        self.jobs = jobs if gpus is None else min(jobs, len(gpus))
        self.gpus = gpus
        self.once = once
        self.executing: list[_Executing] = []
        self.received: list[int] = []
        self._suspend: list[int] = []  # Ctrl-Z heard (SIGTSTP), not acted on yet
        self._told_waiting = False
        self.arm: Callable[[], None] | None = None  # arms a node's SIGTERM at the worker's death
        self.wakeup = WakeupPipe()  # a stop signal ends a pause at once
        self.unsuccessful: list[Path] = []  # folders this worker executed that ended without success

    def run(self) -> int:
        from expyrun.execute.parent_death import signal_on_parent_death

        _preload()
        self.arm = signal_on_parent_death(signal.SIGTERM)

        previous = {sig: signal.signal(sig, lambda signum, _: self.received.append(signum)) for sig in STOP_SIGNALS}
        previous[signal.SIGTSTP] = signal.signal(signal.SIGTSTP, lambda signum, _: self._suspend.append(signum))
        self.wakeup.open()
        try:
            self._serve()
        finally:
            self._stop()
            self.wakeup.close()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        if self.received:
            return SIGNAL_EXIT[signal.Signals(self.received[0])]
        if self.unsuccessful:
            count = len(self.unsuccessful)
            console.warning(f"{count} run{'s' if count != 1 else ''} executed by this worker did not complete: "
                            + ", ".join(str(run_dir) for run_dir in self.unsuccessful))  # fmt: skip
            return 1
        return 0

    def _serve(self) -> None:
        while not self.received:
            self._reap()
            idle = True
            while not self.received and len(self.executing) < self.jobs:
                lease = self._lease()
                if self.gpus is not None and lease is None:
                    break
                claim = claim_next(self.folder)
                if claim is None:
                    if lease is not None:
                        lease.release()
                    break
                idle = False
                self._execute(claim, lease)
            if self.once and idle and not self.executing and not entries(self.folder):
                return  # the queue is empty (an entry another worker executes may come back to it)
            self._pause(POLL_S)

    def _lease(self) -> Lease | None:
        if self.gpus is None:
            return None
        busy = {run.lease.gpu for run in self.executing if run.lease is not None}
        free = [gpu for gpu in self.gpus if gpu not in busy]
        for gpu in free:
            lease = try_lease(gpu, f"queue worker pid {os.getpid()}")
            if lease is not None:
                self._told_waiting = False
                return lease
        if not self._told_waiting and free:
            console.info(waiting_message(free))
            self._told_waiting = True
        return None

    def _execute(self, claim: Claim, lease: Lease | None) -> None:
        """Execute the claimed folder in a node process, or settle it here when it needs no execution."""
        run_dir = claim.entry.run_dir
        record = load_record(run_dir)
        if not record or record.get("status") not in ACTIVE:  # cancelled or ended already, or gone
            claim.done()
            if lease is not None:
                lease.release()
            return
        if int(record.get("attempt") or 0) >= MAX_ATTEMPTS:
            _give_up(run_dir, record)
            self.unsuccessful.append(run_dir)
            claim.done()
            if lease is not None:
                lease.release()
            return
        if lease is not None:
            lease.describe(f"{run_dir} (queue worker pid {os.getpid()})")
        others = [run.claim.fd for run in self.executing if run.claim.fd is not None]
        sys.stdout.flush()
        sys.stderr.flush()
        with handing_to_child(lease):  # the fork hooks close every other lease in the node
            pid = os.fork()
            if pid == 0:  # the node: holds the claim (and the GPU lease) as long as it lives
                _node(run_dir, lease, others, self.arm)  # (never returns)
        self.executing.append(_Executing(claim, pid, os.pidfd_open(pid), lease))

    def _reap(self) -> None:
        for run in list(self.executing):
            try:
                pid, _ = os.waitpid(run.pid, os.WNOHANG)
            except ChildProcessError:
                pid = run.pid
            if pid == 0:
                continue
            os.close(run.pidfd)
            self.executing.remove(run)
            self._settle(run)

    def _pause(self, timeout: float) -> None:
        """Until a node ends, a signal comes, or `timeout` s passed (then the queue is looked at again).
        After Ctrl-Z, until `fg`: the executing runs stop with the worker (the module's docstring)."""
        fds = [self.wakeup.open()] + [run.pidfd for run in self.executing]
        with contextlib.suppress(InterruptedError):
            select.select(fds, [], [], timeout)
        self.wakeup.drain()
        if self._suspend:
            self._suspend.clear()
            nodes = [run.pid for run in self.executing]  # (a node leads its session and its group)
            sys.stderr.flush()
            suspend_all(nodes + [group for group in _session_groups(set(nodes)) if group not in nodes])

    def _settle(self, run: _Executing) -> None:
        """The node ended: the entry goes when the folder's record ended, stays when it is queued again."""
        record = load_record(run.claim.entry.run_dir) or {}
        if record.get("status") in ACTIVE:
            run.claim.release()
        else:
            run.claim.done()
            if record.get("status") not in SUCCESSFUL:
                self.unsuccessful.append(run.claim.entry.run_dir)
        if run.lease is not None:
            run.lease.release()

    def _stop(self) -> None:
        """Pass a stop on to every node (SIGTERM), wait for them (SIGKILL after `GRACE_S`). Each further
        stop signal is passed on too: a node's runs are killed at once at its third, as a launch's."""
        passed = 0
        deadline = time.monotonic() + GRACE_S
        while self.executing:
            if passed < max(1, len(self.received)):
                passed += 1
                for run in self.executing:
                    _signal(run.pid, signal.SIGTERM)
            self._reap()
            if time.monotonic() > deadline:
                for run in self.executing:
                    _signal(run.pid, signal.SIGKILL)
            self._pause(POLL_S)


def _preload() -> None:
    """Import once, in the worker, what every node imports (forked nodes then start with it: a few
    tens of ms less per run)."""
    import ctypes  # noqa: F401  (parent_death's prctl)

    import expyrun.config.dump
    import expyrun.execute.launch_spec
    import expyrun.execute.queue_node
    import expyrun.execute.slurm_node
    import expyrun.node
    import expyrun.run.freeze
    import expyrun.run.launch
    import expyrun.run.prepare
    import expyrun.sweep.record  # noqa: F401


def _signal(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)


def _session_groups(sessions: set[int]) -> list[int]:
    """The process groups of these sessions, from /proc: a node's session holds the node's group (with
    its tee), the run's and any the run made, but not what the run started in a session of its own."""
    groups: list[int] = []
    if not sessions:
        return groups
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as stat:
                fields = stat.read().rpartition(b")")[2].split()  # (the command name may hold spaces)
            group, session = int(fields[2]), int(fields[3])  # after it: state ppid pgrp session
        except (OSError, ValueError, IndexError):  # gone meanwhile
            continue
        if session in sessions and group not in groups:
            groups.append(group)
    return groups


def _node(run_dir: Path, lease: Lease | None, others: list[int], arm: Callable[[], None] | None) -> NoReturn:
    """In the forked node process: execute the folder as `python -m expyrun.node FOLDER` would, in
    a session of its own (Ctrl-C reaches the worker alone, which stops its nodes once), stopped by
    SIGTERM when the worker dies; the claims of the worker's other runs are not held here."""
    code = 2
    try:
        for fd in others:
            with contextlib.suppress(OSError):
                os.close(fd)
        os.setsid()
        signal.set_wakeup_fd(-1)
        for signum in (*STOP_SIGNALS, signal.SIGCHLD, signal.SIGTSTP):
            signal.signal(signum, signal.SIG_DFL)
        if arm is not None:  # SIGTERM when the worker dies (its prctl looked up once, by the worker)
            arm()
        if lease is not None:
            os.environ["CUDA_VISIBLE_DEVICES"] = lease.gpu
        from expyrun import node

        code = node.main([str(run_dir)])
    except BaseException:  # nothing may return into the worker's loop
        import traceback

        traceback.print_exc()
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(OSError, ValueError):
                stream.flush()
        os._exit(code)


def _give_up(run_dir: Path, record: dict[str, Any]) -> None:
    """A folder executed `MAX_ATTEMPTS` times without ending: recorded `failed`, not executed again."""
    from expyrun.execute.slurm_node import update_sweep
    from expyrun.run.capture import append_log

    exception = {"type": "QueueAttempts", "message": f"{MAX_ATTEMPTS} attempts did not end the run"}
    append_log(run_dir, f"expyrun: {exception['message']}: given up")
    mark_finished(record, Status.FAILED, None, exception=exception)
    write_record(run_dir, record)
    update_sweep(record, Status.FAILED, None, exception)
    console.warning(f"{run_dir}: {exception['message']}: recorded failed")
