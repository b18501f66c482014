"""`launcher: ray` (SPEC 8.1): prepare the run folders here, execute each as a Ray task, follow them.

One run, each sweep point and each study worker is one Ray task (`execute/ray_task.py`) that
executes its prepared folder with the node entry, the same node-side code as a Slurm job; the
folders are prepared exactly as for Slurm (`execute/batch.py`: configs, snapshot, git state),
on storage the Ray nodes share. Everything about the cluster is checked before a folder is made
(Ray installed, a cluster at `address` within 30 s, a node offering the resources, a job server
for `wait: false`): one line, exit 2, nothing created.

`wait: true`: the tasks are submitted from here and followed (`ray.wait`), with a progress bar on a
terminal and a single run's `outputs.log` copied to stdout; the exit code is a local launch's.
Ctrl-C (SIGTERM, SIGHUP) stops the runs as a local launch does: the signal's name goes into each
running task's stop file in its folder (`execute/ray_task.py`), the task passes it on to its node,
whose run gets SIGINT (SIGTERM), 10 s of grace, then SIGKILL, and ends `interrupted` with 130 (143,
129); a task not started yet (no node holds its folder's lock) is `ray.cancel`led at once and
recorded `interrupted` here with the same code. `ray.cancel` is the fallback for a task still
running `CANCEL_AFTER_S` after the stop; at most `STOP_DEADLINE_S` after it the follower gives up
waiting for records. Exit 130 (143, 129).
`wait: false`: the same follower is submitted as a Ray job (`JobSubmissionClient`; the cluster
runs it as the driver: `python -m expyrun.execute.ray_submit --options JSON FOLDER...`) and expyrun
prints the job's id and exits 0.

Ray's own APIs do the work: tasks with `num_cpus`/`num_gpus`/`resources`/`runtime_env`,
`max_retries` for a dead worker or node, `ray.cancel`, the job submission client. Importing Ray
costs ~1 s and connecting ~0.5 s: only `launcher: ray` pays it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from expyrun import console
from expyrun.errors import UsageError
from expyrun.execute.batch import Batch
from expyrun.execute.ray_options import RayOptions
from expyrun.execute.ray_task import STOP_FILE
from expyrun.run.record import load_record, mark_finished, write_record
from expyrun.run.status import ACTIVE, SIGNAL_EXIT, STOP_SIGNALS, Status

if TYPE_CHECKING:
    from expyrun.config import ResolvedConfig
    from expyrun.execute.launch_spec import LaunchSpec

CONNECT_S = 30.0  # no cluster at `address` within this: one line, exit 2
CANCEL_AFTER_S = 20.0  # after a stop: the runs' 10 s grace and their records, then ray.cancel of what still runs
STOP_DEADLINE_S = 60.0  # after a stop: the cancel above, the cancelled tasks' bounded wait for their nodes (20 s)
RAY_HINT = "install the `ray` extra: pip install 'expyrun[ray]'"


def submit(resolved: ResolvedConfig, launch: LaunchSpec, sweep: Any, study: Any, argv: list[str],
           flags: set[str]) -> int:  # fmt: skip
    """Execute the config's runs as Ray tasks (see the module docstring); the exit code."""
    options: RayOptions = launch.ray
    debug = "--debug" in flags
    if not launch.wait and options.address == "local":
        raise UsageError("`__launch__.ray.address: local` starts a Ray that ends with this launch: `wait: false` "
                         "needs a running cluster", "set wait: true, or give the cluster's address")  # fmt: skip
    if launch.gpus is not None:
        raise UsageError("`__launch__.gpus` is not used with launcher: ray", "ask for GPUs with `ray.num_gpus`")
    ray = import_ray()
    dashboard = connect(ray, options)
    try:
        check_resources(ray, options)
        if not launch.wait and not dashboard:
            raise UsageError(f"the Ray cluster at {options.address} has no job server (its dashboard): "
                             f"`wait: false` submits the launch as a Ray job", "set wait: true, or start the head "
                             "with its dashboard")  # fmt: skip
        batch = Batch(resolved, debug, argv, Path.cwd(), launcher="ray")
        try:
            if not batch.prepare_launch(launch, sweep, study, "--needed" in flags, "nothing to submit"):
                return 0
            batch.record_git()
            submission = f"expyrun-{os.getpid()}-{int(time.time() * 1000)}" if not launch.wait else None
            for prepared in batch.prepared:
                prepared.record["ray"] = {"job_id": None, "task_id": None, "node_id": None,
                                          **({"submission_id": submission} if submission else {})}  # fmt: skip
                prepared.write_record()
                (prepared.run_dir / STOP_FILE).touch()  # (empty: no stop asked; see execute/ray_task.py)
            folders = [prepared.run_dir for prepared in batch.prepared]
            if not launch.wait:
                _submit_job(dashboard, options, folders, str(submission))
                return 0
        except BaseException:
            batch.discard()
            raise
        finally:
            batch.close_git()
        home = batch.sweep_folder or folders[0]
        console.info(f"submitted {len(folders)} Ray task{'s' if len(folders) > 1 else ''}: {home}")
        return follow(ray, options, folders, batch.sweep_folder, stream=sweep is None and study is None)
    finally:
        with contextlib.suppress(Exception):
            ray.shutdown()


def import_ray() -> Any:
    """Ray, or a one-line error naming the extra that installs it."""
    try:
        import ray
    except ImportError:
        raise UsageError("`__launch__.launcher: ray`: Ray is not installed", RAY_HINT) from None
    return ray


def _reachable(address: str) -> bool:
    """Whether something listens at `host:port` (`ray.init` at a closed port can hang for minutes)."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        return True  # not host:port: Ray says what is wrong
    deadline = time.monotonic() + CONNECT_S
    while True:
        try:
            with socket.create_connection((host.strip("[]"), int(port)), timeout=5):
                return True
        except OSError:
            if time.monotonic() + 1 > deadline:
                return False
            time.sleep(1)


def connect(ray: Any, options: RayOptions) -> str:
    """Connect this process to the cluster at `address` (or start a private local Ray); its job
    server's URL ('' when it has none)."""
    address: str | None = options.address
    if address == "auto":
        address = os.environ.get("RAY_ADDRESS") or "auto"
    elif address == "local":
        address = None
    shown = options.address if address in ("auto", None) else address
    plain = address.removeprefix("ray://") if address else ""
    if plain and plain != "auto" and not _reachable(plain):
        raise UsageError(f"`__launch__.ray.address`: no Ray cluster at {shown} (nothing answered in {CONNECT_S:g} s)",
                         "start one with `ray start --head`, or give its address")  # fmt: skip
    kwargs: dict[str, Any] = {"address": address, "logging_level": "ERROR", "log_to_driver": False}
    if address is None:  # a private Ray for this launch (not RAY_ADDRESS's), on loopback, ended with it
        kwargs.update(address="local", include_dashboard=False, _node_ip_address="127.0.0.1")
    try:
        context = ray.init(**kwargs)
    except Exception as error:  # Ray's ConnectionError, ValueError for a malformed address...
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UsageError(f"`__launch__.ray.address`: no Ray cluster at {shown} ({message})",
                         "start one with `ray start --head`, or give its address") from None  # fmt: skip
    url = getattr(context, "dashboard_url", None) or ""
    return url if not url or url.startswith("http") else f"http://{url}"


def check_resources(ray: Any, options: RayOptions) -> None:
    """Refuse a task that no node of the cluster could ever run (it would wait forever)."""
    needed = {"CPU": options.num_cpus, "GPU": options.num_gpus, **options.resources}
    needed = {name: amount for name, amount in needed.items() if amount > 0}
    offered = [node.get("Resources") or {} for node in ray.nodes() if node.get("Alive")]
    if any(all(node.get(name, 0) >= amount for name, amount in needed.items()) for node in offered):
        return
    largest = {name: max((node.get(name, 0) for node in offered), default=0) for name in needed}
    raise UsageError(f"`__launch__.ray`: no node of the Ray cluster offers {_amounts(needed)} for one run",
                     f"its largest nodes offer {_amounts(largest)}")  # fmt: skip


def _amounts(resources: dict[str, float]) -> str:
    return ", ".join(f"{name}={amount:g}" for name, amount in resources.items()) or "nothing"


def _submit_job(dashboard: str, options: RayOptions, folders: list[Path], submission: str) -> None:
    """`wait: false`: the follower, submitted as a Ray job run by the cluster."""
    import shlex

    from ray.job_submission import JobSubmissionClient

    command = [sys.executable, "-m", "expyrun.execute.ray_submit", "--options", json.dumps(options._asdict()),
               *map(str, folders)]  # fmt: skip
    try:
        client = JobSubmissionClient(dashboard)
        job_id = client.submit_job(entrypoint=shlex.join(command), submission_id=submission)
    except Exception as error:
        raise UsageError(f"the Ray job server at {dashboard} refused the launch: {error}") from None
    console.info(f"submitted Ray job {job_id} ({len(folders)} task{'s' if len(folders) > 1 else ''}): "
                 f"{folders[0] if len(folders) == 1 else folders[0].parent}")  # fmt: skip
    print(job_id)


class _Followed:
    """One run's task and what its record says (the attributes `batch_watch.Reported` reads)."""

    def __init__(self, run_dir: Path, ref: Any) -> None:
        self.run_dir = run_dir
        self.ref = ref
        self.record: dict[str, Any] = load_record(run_dir) or {}
        self.status = str(self.record.get("status"))
        self.sweep = self.record.get("sweep")
        self.slurm: dict[str, Any] = {}

    @property
    def ended(self) -> bool:
        return self.status not in ACTIVE


def follow(ray: Any, options: RayOptions, folders: list[Path], sweep_folder: Path | None, stream: bool) -> int:
    """Submit one task per folder, wait until each ended, report each; a local launch's exit code."""
    from expyrun.execute.batch_watch import LogCopy, Progress, batch_exit_code, end_sweep
    from expyrun.execute.ray_task import execute_task

    remote = ray.remote(execute_task)
    task = options.task_options()
    runs = {}
    for folder in folders:
        ref = remote.options(name=f"expyrun {folder.parent.name}/{folder.name}", **task).remote(str(folder))
        runs[ref] = _Followed(folder, ref)
    received: list[int] = []
    previous = {sig: signal.signal(sig, lambda signum, _frame: received.append(signum)) for sig in STOP_SIGNALS}
    log = LogCopy(folders[0] / "outputs.log") if stream and len(folders) == 1 else None
    progress = Progress(len(folders), "ray") if len(folders) > 1 and sys.stderr.isatty() else None
    pending = list(runs)
    followed = list(runs.values())
    stopped_at: float | None = None
    cancelled = False
    try:
        while pending:
            ready, pending = ray.wait(pending, num_returns=len(pending), timeout=0.2)
            for ref in ready:
                _ended(ray, runs[ref], options, stopped=received[0] if received else None, progress=progress)
            if log is not None:
                log.copy()
            if progress is not None:
                for run in runs.values():
                    if not run.ended and run.status == Status.QUEUED:
                        _read(run)
                progress.update(followed)
            if received and stopped_at is None:
                stopped_at = time.monotonic()
                name = signal.Signals(received[0]).name
                console.warning(f"stopping: {name} to {len(pending)} Ray task(s) (cancelled if still running in "
                                f"{CANCEL_AFTER_S:g} s)")  # fmt: skip
                _stop(ray, [runs[ref] for ref in pending], received[0])
            if stopped_at is not None and not cancelled and time.monotonic() - stopped_at > CANCEL_AFTER_S:
                cancelled = True
                if pending:
                    console.warning(f"{len(pending)} Ray task(s) still running {CANCEL_AFTER_S:g} s after the stop: "
                                    f"cancelled")  # fmt: skip
                for ref in pending:
                    ray.cancel(ref)
            if stopped_at is not None and time.monotonic() - stopped_at > STOP_DEADLINE_S:
                console.warning(f"{len(pending)} run(s) did not record their end in {STOP_DEADLINE_S:g} s")
                break
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if progress is not None:
            progress.close()
    if log is not None:
        log.copy()
    if sweep_folder is not None:
        end_sweep(followed, sweep_folder)
    return batch_exit_code(followed, received)


def _stop(ray: Any, runs: list[_Followed], signum: int) -> None:
    """Ask each task to pass `signum` on to its node (the stop file); a task whose folder no node holds
    (not started, or not yet past the lock) is cancelled now: once it takes the lock it reads the stop
    and starts nothing, so no run gets a signal other than the one asked."""
    import fcntl

    from expyrun.execute.ray_task import LOCK_FILE, ask_stop

    for run in runs:
        try:
            ask_stop(run.run_dir, signum)
        except OSError as error:  # its task could not hear it: the cancel (its run gets SIGINT at once)
            console.warning(f"could not ask {run.run_dir} to stop ({error}): its Ray task is cancelled")
            ray.cancel(run.ref)
            continue
        try:
            fd = os.open(run.run_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            continue  # a node executes the folder: it gets the signal from its task
        finally:
            os.close(fd)  # (releases the lock when it was taken)
        ray.cancel(run.ref)


def _read(run: _Followed) -> None:
    record = load_record(run.run_dir)
    if record:
        run.record, run.status = record, str(record.get("status"))


def _ended(ray: Any, run: _Followed, options: RayOptions, stopped: int | None, progress: Any) -> None:
    """The task ended: its record says how; a record its task could not end (the launch stopped, by
    `stopped`, before it started, its task cancelled, its worker dead in every attempt) is ended here,
    saying why."""
    from expyrun.execute.batch_watch import report_end
    from expyrun.execute.ray_task import worker_died
    from expyrun.execute.slurm_node import update_sweep

    error: BaseException | None = None
    try:
        ray.get(run.ref)
    except Exception as failure:
        error = failure
    _read(run)
    if run.ended:
        report_end(run, progress)
        return
    record = dict(run.record)
    if stopped is not None or isinstance(error, ray.exceptions.TaskCancelledError):
        signum = signal.Signals(stopped) if stopped is not None else signal.SIGINT
        if run.status == Status.QUEUED:
            message = f"the launch was stopped ({signum.name}) before the run started"
        else:
            message = "its Ray task was cancelled before the run ended"
        exception = {"type": "Cancelled", "message": message}
        mark_finished(record, Status.INTERRUPTED, SIGNAL_EXIT[signum], exception=exception)
    else:
        if isinstance(error, (ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError)):
            exception = worker_died(1 + options.max_retries)
        else:
            message = str(error).strip().splitlines()[-1] if error is not None and str(error).strip() else "no end"
            exception = {"type": type(error).__name__, "message": f"its Ray task ended without its record: {message}"}
        mark_finished(record, Status.FAILED, 1, exception=exception)
    with contextlib.suppress(OSError):
        write_record(run.run_dir, record)
    run.record, run.status = record, str(record["status"])
    update_sweep(record, run.status, None, exception)
    report_end(run, progress)


def _drive(argv: list[str]) -> int:
    """`python -m expyrun.execute.ray_submit --options JSON FOLDER...`: a Ray job's driver (`wait: false`)."""
    values = json.loads(argv[1])
    options = RayOptions(**values)
    folders = [Path(folder) for folder in argv[2:]]
    ray = import_ray()
    ray.init(address=os.environ.get("RAY_ADDRESS") or "auto", logging_level="ERROR", log_to_driver=False)
    first = load_record(folders[0]) or {}
    sweep = first.get("sweep")
    sweep_folder = Path(sweep["dir"]) if isinstance(sweep, dict) and sweep.get("dir") else None
    return follow(ray, options, folders, sweep_folder, stream=len(folders) == 1)


if __name__ == "__main__":
    if len(sys.argv) < 4 or sys.argv[1] != "--options":
        console.error("usage: python -m expyrun.execute.ray_submit --options JSON FOLDER...")
        sys.exit(2)
    sys.exit(_drive(sys.argv[1:]))
