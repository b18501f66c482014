"""Inside a Ray task: execute one prepared run folder with the node entry, as a Slurm job does.

`execute_task(FOLDER)` is the function each run's Ray task calls (`execute/ray_submit.py` submits
it): it starts `python -m expyrun.node FOLDER` (the same node-side code as a Slurm job: the local
executor, run child, tee, signals and record) with the task's ids in `EXPYRUN_RAY`, and returns
its exit code. The node entry's Ray hooks (`RayHooks`, here too: the node process imports nothing
of Ray) record `launcher: ray`, `ray` (`job_id`, `task_id`, `node_id`) and count the attempts.

Why a child process rather than the node code in the Ray worker itself: the local executor owns
signals (SIGCHLD, SIGINT, a wake-up fd) that a Ray worker owns too, and the folder's run must
outlive nothing: the node process gets SIGTERM when its Ray worker dies (`PR_SET_PDEATHSIG`), so
it stops the run as any SIGTERM would, and, the worker being gone, puts the folder back to
`queued` for Ray's retry (`max_retries`) or, with no attempt left, ends it `failed` saying why.
An exclusive `flock` on the folder, held by the task and inherited by the node process, makes a
retried task wait until the dying attempt has written its record.

Stopping: the driver, stopped by SIGINT, SIGTERM or SIGHUP, writes that signal's name into the
folder's stop file (`.ray.stop`, created empty with the folder: the folders are on storage driver
and nodes share, and reading a file the task opens again each time sees the driver's write, NFS
included, where a file appearing could be hidden by a cached lookup). The task's wait loop reads it
every 0.2 s and sends that signal to the node process, which handles it as a local launcher does:
the run gets SIGTERM (for SIGTERM and SIGHUP) or SIGINT, 10 s of grace, then SIGKILL, and the record
says `interrupted` with 143, 129 or 130. A task that takes the folder's lock after the stop was asked
does not start the node: the driver records the run `interrupted`. `ray.cancel` (KeyboardInterrupt
in the task) stays the driver's fallback, 10 s after the grace, and stops a task not started yet at
once; a cancel from elsewhere (nothing asked in the stop file) passes SIGINT on, as Ctrl-C. Either
way the task waits at most `NODE_STOP_S` for the node, then kills it.
Costs the task one Python start (~0.1 s) over a bare Ray task, and a read of the stop file every
0.2 s; nothing of Ray is imported in the node process or the run.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from expyrun import console
from expyrun.execute.node_hooks import NodeHooks
from expyrun.run.capture import append_log
from expyrun.run.record import mark_finished, now
from expyrun.run.status import SIGNAL_EXIT, STOP_GRACE_S, STOP_SIGNALS

if TYPE_CHECKING:
    from expyrun.execute.ray_options import RayOptions
    from expyrun.run.outcome import Outcome
    from expyrun.run.prepare import PreparedRun

ENV_TASK = "EXPYRUN_RAY"  # the task's ids (JSON), for the node process's hooks
LOCK_FILE = ".ray.lock"
STOP_FILE = ".ray.stop"  # the stop signal the driver received (its name), empty until then
POLL_S = 0.2  # how often the task looks at the stop file
NODE_STOP_S = STOP_GRACE_S + 10.0  # after passing a stop on: the node's grace, its log and its record; then SIGKILL


def execute_task(folder: str) -> int:
    """The body of a run's Ray task: the node entry's exit code for `folder` (see the module docstring)."""
    import ray

    context = ray.get_runtime_context()
    ids = {"job_id": context.get_job_id(), "task_id": context.get_task_id(), "node_id": context.get_node_id(),
           "worker_pid": os.getpid()}  # fmt: skip
    gpus = [str(g) for g in ray.get_gpu_ids()]
    environment = dict(os.environ, **{ENV_TASK: json.dumps(ids)})
    if gpus:
        environment["CUDA_VISIBLE_DEVICES"] = ",".join(gpus)
    else:
        environment.pop("CUDA_VISIBLE_DEVICES", None)
    from expyrun.execute.parent_death import signal_on_parent_death

    lock = os.open(Path(folder) / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        import fcntl

        fcntl.flock(lock, fcntl.LOCK_EX)  # a retry waits for the attempt before it to write its end
        asked = stop_asked(Path(folder))
        if asked is not None:  # the launch was stopped before this task started: the driver records it
            console.info(f"{folder}: the launch was stopped ({asked.name}) before this run started: not executed")
            return SIGNAL_EXIT[asked]
        process = subprocess.Popen([sys.executable, "-m", "expyrun.node", folder], env=environment,
                                   pass_fds=(lock,), preexec_fn=_child_setup(signal_on_parent_death()))  # fmt: skip
    finally:
        os.close(lock)  # the node process holds it now
    return _follow_node(process, Path(folder))


def _follow_node(process: subprocess.Popen[bytes], run_dir: Path) -> int:
    """Wait for the node process, passing on the stop the driver asks for in the stop file (once);
    on `ray.cancel` (KeyboardInterrupt), SIGINT unless a stop was passed on already, then a bounded wait."""
    passed: signal.Signals | None = None
    try:
        while True:
            try:
                return process.wait(timeout=POLL_S)  # (a loop, so that ray.cancel's KeyboardInterrupt comes in)
            except subprocess.TimeoutExpired:
                pass
            if passed is None:
                passed = stop_asked(run_dir)
                if passed is not None:
                    with contextlib.suppress(ProcessLookupError):
                        process.send_signal(passed)
    except KeyboardInterrupt:  # ray.cancel: stop the run as Ctrl-C does (if not stopped yet), wait for its record
        if passed is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=NODE_STOP_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=NODE_STOP_S)
        raise


def ask_stop(run_dir: Path, signum: int) -> None:
    """The driver's side: ask the folder's task to pass `signum` on to its node (see the module docstring)."""
    fd = os.open(run_dir / STOP_FILE, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, f"{signal.Signals(signum).name}\n".encode())
    finally:
        os.close(fd)


def stop_asked(run_dir: Path) -> signal.Signals | None:
    """The stop signal the driver wrote in the folder's stop file; None while it is empty (or absent,
    unreadable, not one of the stop signals)."""
    try:
        name = (run_dir / STOP_FILE).read_text(encoding="ascii").strip()
    except (OSError, ValueError):
        return None
    found = signal.Signals.__members__.get(name)
    return found if found in STOP_SIGNALS else None


def _child_setup(arm: Callable[[], None] | None) -> Callable[[], None]:
    """The node process's `preexec_fn`: a Ray worker blocks SIGINT (and the node would inherit the
    mask, deaf to Ctrl-C and to the cancel passed on as SIGINT); a process group of its own (the
    raylet SIGKILLs a dead worker's group, "per-worker process group cleanup", Ray 2.60: a node in it
    died before recording the worker's death, and the retry found no line saying so); then SIGTERM
    when the worker dies."""

    def setup() -> None:
        signal.pthread_sigmask(signal.SIG_SETMASK, ())
        os.setpgid(0, 0)
        if arm is not None:
            arm()

    return setup


class RayHooks(NodeHooks):
    """Ray's specifics around a folder executed by `python -m expyrun.node` in a Ray task."""

    leases_gpus = False  # Ray assigns the GPUs (CUDA_VISIBLE_DEVICES): no machine-wide lease on top

    def __init__(self) -> None:
        try:
            self.ids: dict[str, Any] = json.loads(os.environ.get(ENV_TASK) or "{}")
        except ValueError:
            self.ids = {}
        self.parent = os.getppid()  # the Ray worker: its death is a retry, not a person's stop
        self.options: RayOptions | None = None
        self.attempt = 1

    def configure(self, launch_section: dict[str, Any]) -> None:
        from expyrun.execute.ray_options import parse_ray

        self.options = parse_ray(launch_section.get("ray"))

    @property
    def attempts(self) -> int:
        return 1 + (self.options.max_retries if self.options is not None else 0)

    def starting(self, run_dir: Path, attempt: int) -> None:
        self.attempt = attempt
        where = f"Ray task {self.ids.get('task_id')}, node {self.ids.get('node_id')}"
        if attempt > 1:
            append_log(run_dir, f"expyrun: attempt {attempt} of {self.attempts} ({where}, {now()})")
        console.info(f"attempt {attempt}: executing {run_dir} ({where})")

    def on_start(self, record: dict[str, Any]) -> None:
        ray = dict(record.get("ray") or {})
        ray.update({key: self.ids.get(key) for key in ("job_id", "task_id", "node_id")})
        record.update(ray=ray, launcher="ray")

    def take_over_end(self, prepared: PreparedRun, outcome: Outcome) -> int | None:
        """The Ray worker died under this attempt (the node got SIGTERM from the kernel): Ray runs the
        task again while retries are left, so the folder goes back to `queued`; else it is `failed`."""
        # The run has ended: a further SIGTERM must not end this process before its record is written.
        # A dying worker sends more than one: its thread's exit (`PR_SET_PDEATHSIG`) and then another
        # while its process is going (seen under load: the node died here and the retry found the
        # record `running`, no line saying why).
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if not self._worker_died(outcome, prepared.run_dir):
            return None
        from expyrun.execute.slurm_node import update_sweep
        from expyrun.run.status import Status

        record = prepared.record
        if self.attempt < self.attempts:
            again = f"attempt {self.attempt + 1} of {self.attempts}"
            append_log(prepared.run_dir, f"expyrun: attempt {self.attempt} stopped: its Ray worker died; Ray executes "
                                         f"it again ({again})")  # fmt: skip
            record.update(status="queued", exit_code=None)
            prepared.write_record()
            update_sweep(record, Status.QUEUED)
            return outcome.exit_code
        exception = worker_died(self.attempts)
        append_log(prepared.run_dir, f"expyrun: {exception['message']}: the run failed")
        mark_finished(record, Status.FAILED, 1, exception=exception)
        prepared.write_record()
        update_sweep(record, Status.FAILED, None, exception)
        return 1

    def _worker_died(self, outcome: Outcome, run_dir: Path) -> bool:
        """Whether this attempt ended because its Ray worker died. `PR_SET_PDEATHSIG` fires when the
        *thread* that started this process exits: the worker's other threads may still be exiting and
        hold this process as their child for a moment, so after a SIGTERM the parent is given a
        bounded time to be gone (unless the driver asked for the stop: a person's stop is never
        waited for, nor undone by a retry)."""
        if stop_asked(run_dir) is not None and os.getppid() == self.parent:
            return False
        deadline = time.monotonic() + (WORKER_EXIT_S if outcome.exit_code == 143 else 0.0)
        while os.getppid() == self.parent:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.02)
        return True


WORKER_EXIT_S = 3.0  # how long a dying Ray worker's last threads may take to exit


def worker_died(attempts: int) -> dict[str, str]:
    """The exception recorded for a run whose Ray worker (or node) died in every attempt."""
    return {"type": "WorkerDied", "message": f"its Ray worker or node died in each of {attempts} attempt(s)"}
