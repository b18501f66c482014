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

Ctrl-C on the driver is `ray.cancel(task)`: Ray raises KeyboardInterrupt in the task, which passes
SIGINT to the node process: the run ends `interrupted` (130), as a local run does on Ctrl-C.
Costs the task one Python start (~0.1 s) over a bare Ray task; nothing of Ray is imported in the
node process or the run.
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

if TYPE_CHECKING:
    from expyrun.execute.ray_options import RayOptions
    from expyrun.run.outcome import Outcome
    from expyrun.run.prepare import PreparedRun

ENV_TASK = "EXPYRUN_RAY"  # the task's ids (JSON), for the node process's hooks
LOCK_FILE = ".ray.lock"


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
        process = subprocess.Popen([sys.executable, "-m", "expyrun.node", folder], env=environment,
                                   pass_fds=(lock,), preexec_fn=_child_setup(signal_on_parent_death()))  # fmt: skip
    finally:
        os.close(lock)  # the node process holds it now
    try:
        while True:
            try:
                return process.wait(timeout=0.2)  # (a loop, so that ray.cancel's KeyboardInterrupt comes in)
            except subprocess.TimeoutExpired:
                continue
    except KeyboardInterrupt:  # ray.cancel: stop the run as Ctrl-C does, and wait for its record
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGINT)
        process.wait()
        raise


def _child_setup(arm: Callable[[], None] | None) -> Callable[[], None]:
    """The node process's `preexec_fn`: a Ray worker blocks SIGINT (and the node would inherit the
    mask, deaf to Ctrl-C and to the cancel passed on as SIGINT); then SIGTERM when the worker dies."""

    def setup() -> None:
        signal.pthread_sigmask(signal.SIG_SETMASK, ())
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
        if not self._worker_died(outcome):
            return None
        from expyrun.execute.slurm_node import update_sweep
        from expyrun.run.status import Status

        signal.signal(signal.SIGTERM, signal.SIG_IGN)
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

    def _worker_died(self, outcome: Outcome) -> bool:
        """Whether this attempt ended because its Ray worker died. `PR_SET_PDEATHSIG` fires when the
        *thread* that started this process exits: the worker's other threads may still be exiting and
        hold this process as their child for a moment, so after a SIGTERM the parent is given a
        bounded time to be gone (a person's stop is SIGINT: never waited for)."""
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
