"""The node entry: `python -m expyrun.node FOLDER` executes one prepared run folder on this machine.

A way in, beside the command line: a scheduler that moved a prepared folder's execution elsewhere
(Slurm now; a queue and Ray next) starts this on the machine that runs it, as submitit's
`process_job(folder)` does. It executes the folder exactly as a local launch would (the one loop,
`campaign/loop.py`, over the local executor: the same run child, tee, signals, grace and record as
on a laptop; the folder is its one point, whose end the node writes), with the scheduler's
specifics as hooks (`execute/node_hooks.py`; Slurm's: `execute/slurm_node.py`).

The contract:
- FOLDER holds what `run/prepare.py` makes: `run.json` with `status` `queued` (or `running`: an
  attempt that died without ending its record) and the `cwd` of the launch; `config.yml`, the
  resolved config, read back as the values it records (never interpolated again; its secrets come
  from this process's environment, as a rerun of `config.yml` does); the code snapshot
  (`code/`) unless the run is `--debug`. `run.json`'s `slurm` field (written at submission)
  selects the Slurm hooks; its `sweep` (`dir`, `point`) and `study` fields make the folder a sweep
  point or a study's own run.
- It writes what a local launch writes: `run.json` (`running` with this machine's host, pid and
  interpreter and `attempt`, then how it ended), `outputs.log`, `requirements.txt`, the result,
  and the point's line of its sweep's `sweep.json`. A folder whose config cannot be read here is
  recorded `failed` (exit code 2) with the reason.
- The run gets `EXPYRUN_ATTEMPT` (1 for the first execution of the folder, one more each time it
  is executed again: a Slurm requeue) and, for a sweep point, `EXPYRUN_SWEEP_POINT`.
- Exit codes: those of a local launch (0 completed, 1 failed, 130 SIGINT, 143 SIGTERM); 0 without
  executing anything for a folder already ended (a duplicate start executes a run once); 2 for a
  folder that is not a prepared run folder or cannot be executed here (one line on stderr).
- Signals: SIGINT, SIGTERM and SIGHUP are passed on to the run as a local launch does, with its
  grace unless the hooks shorten it (Slurm: its own SIGKILL comes sooner); SIGUSR2 is ignored until
  the run starts, then the hooks decide (Slurm: its time-limit warning).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from expyrun import console
from expyrun.campaign.loop import Next
from expyrun.errors import ExpyrunError
from expyrun.execute.contract import Ended, Job, Started
from expyrun.execute.local import LocalExecutor
from expyrun.execute.node_hooks import NodeHooks
from expyrun.run.record import RUN_FILE, host_name, mark_finished, write_record
from expyrun.run.status import ACTIVE, Status

if TYPE_CHECKING:
    from expyrun.config import ResolvedConfig
    from expyrun.execute.launch_spec import LaunchSpec
    from expyrun.run.outcome import Outcome
    from expyrun.run.prepare import PreparedRun
    from expyrun.tune.driver import Driver


def main(argv: list[str] | None = None) -> int:
    """`python -m expyrun.node FOLDER`: the exit code of the folder's execution (see the contract above)."""
    signal.signal(signal.SIGUSR2, signal.SIG_IGN)  # until the run starts (its default would kill a Slurm job)
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        console.error("usage: python -m expyrun.node FOLDER")
        return 2
    try:
        return execute_folder(Path(args[0]).absolute())
    except ExpyrunError as error:
        console.error(str(error))
        return error.exit_code


def execute_folder(run_dir: Path, hooks: NodeHooks | None = None) -> int:
    """Execute the prepared folder `run_dir` here; the exit code of a local launch.

    `hooks`: the scheduler's (None: chosen from the record); `expyrun resume` gives the plain ones,
    as it executes any folder here, a Slurm one included."""
    try:
        record = json.loads((run_dir / RUN_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ExpyrunError(f"{run_dir}: not a prepared run folder ({error})") from None
    if record.get("status") not in ACTIVE:
        console.info(f"{run_dir} is already {record.get('status')}: not executed again")
        return 0
    with contextlib.suppress(OSError):  # where expyrun was launched, as a local launch runs there
        os.chdir(record["cwd"])
    from expyrun.config import resolve_config
    from expyrun.execute.launch_spec import parse_launch

    hooks = hooks or _hooks(record)
    attempt = int(record.get("attempt") or 0) + 1
    try:
        hooks.check(run_dir, record)
        resolved = resolve_config(run_dir / "config.yml", [], cwd=Path(record["cwd"]))
        section = resolved.values.get("__launch__") or {}
        hooks.configure(section)
        launch_spec = parse_launch(section, resolved.values.get("__optuna__"), on_node=True)
    except ExpyrunError as error:  # e.g. a secret variable missing from this machine's environment
        _fail_before_start(run_dir, record, attempt, type(error).__name__, str(error))
        raise
    return _Attempt(run_dir, record, resolved, launch_spec, attempt, hooks).execute()


def _hooks(record: dict[str, Any]) -> NodeHooks:
    """The scheduler's hooks: Slurm's for a folder submitted to Slurm, none otherwise."""
    if isinstance(record.get("slurm"), dict):
        from expyrun.execute.slurm_node import SlurmHooks

        return SlurmHooks()
    if isinstance(record.get("ray"), dict):
        from expyrun.execute.ray_task import RayHooks

        return RayHooks()
    if isinstance(record.get("queue"), dict):  # executed by `expyrun worker` (expyrun/queue/)
        from expyrun.execute.queue_node import QueueHooks

        return QueueHooks()
    return NodeHooks()


def _fail_before_start(run_dir: Path, record: dict[str, Any], attempt: int, kind: str, message: str) -> None:
    """The folder cannot be executed on this machine: its record says why (not `queued` for good)."""
    from expyrun.execute.slurm_node import update_sweep

    record.update(attempt=attempt, host=host_name())
    mark_finished(record, Status.FAILED, 2, exception={"type": kind, "message": message})
    with contextlib.suppress(OSError):
        write_record(run_dir, record)
    update_sweep(record, Status.FAILED, None, record["exception"])


class _Attempt:
    """One execution of the folder on this machine."""

    def __init__(self, run_dir: Path, record: dict[str, Any], resolved: ResolvedConfig, launch: LaunchSpec,
                 attempt: int, hooks: NodeHooks) -> None:  # fmt: skip
        from expyrun.run.prepare import PreparedRun

        self.prepared = PreparedRun(resolved, run_dir, record, bool(record.get("debug")))
        self.launch = launch
        self.attempt = attempt
        self.hooks = hooks
        self.driver: Driver | None = None  # a study folder's (`_work`)

    def execute(self) -> int:
        """The folder as the one point of the one loop (`campaign/loop.py`: signals, grace, bounded
        waits, the result read), whose job records itself: the end is the node's to write, as the
        hooks may take it over (a Slurm requeue puts the folder back to `queued`)."""
        from expyrun.campaign.loop import run_points
        from expyrun.execute.slurm_node import update_sweep
        from expyrun.run.launch import finish_record, report
        from expyrun.run.outcome import Outcome, exit_code

        prepared = self.prepared
        hooks = self.hooks
        hooks.starting(prepared.run_dir, self.attempt)
        environment = {"EXPYRUN_ATTEMPT": str(self.attempt)}
        sweep = prepared.record.get("sweep")
        if isinstance(sweep, dict):
            environment["EXPYRUN_SWEEP_POINT"] = str(sweep.get("point"))
        study = bool(prepared.record.get("study"))  # its trials have the result files
        gpus = self.launch.gpus if not study else None  # a study's trial workers take them
        executor = _HookedExecutor(hooks, gpus=gpus, leases=hooks.leases_gpus)
        job = Job(prepared, hooks.wrap_work(self._work()), environment, reads_result=not study, records_itself=True)
        started = time.monotonic()
        received: list[int] = []  # the loop's stop signals; the hooks add theirs (Slurm: USR2)
        with hooks.executing(received):
            result = run_points(_OneFolder(job, executor, self._on_start), executor, received=received)
        hooks.stopped(result.stopped_by)
        outcome = (
            result.outcomes[0] if result.outcomes else Outcome(Status.INTERRUPTED, exit_code([], result.stopped_by))
        )
        if self.driver is not None:  # as a local launch does: the trials a dead study process left running
            self.driver.settle(prepared.run_dir, outcome)  # are recorded failed, then failed and retried
        code = hooks.take_over_end(prepared, outcome)
        if code is not None:
            return code
        finish_record(prepared, outcome, time.monotonic() - started)
        update_sweep(prepared.record, outcome.status, outcome.result, outcome.exception)
        report(outcome, prepared.run_dir)
        return exit_code([outcome], result.stopped_by)

    def _work(self) -> Any:
        """What the run child does: the study driver for a study folder, else the entry point (or command)."""
        from expyrun.run.launch import run_work

        prepared = self.prepared
        resolved = prepared.resolved
        body = None
        if prepared.record.get("study"):
            from expyrun.run.prepare import run_base
            from expyrun.tune.driver import Driver
            from expyrun.tune.spec import parse_spec

            spec = parse_spec(resolved.values["__optuna__"], resolved.raw, resolved.run.name)
            self.driver = Driver(resolved, spec, run_base(resolved, prepared.debug), False, self.launch)
            body = self.driver.run
        return run_work(prepared, body)

    def _on_start(self, job: Job, pid: int, gpu: str | None) -> None:
        from expyrun.execute.slurm_node import update_sweep
        from expyrun.run.launch import record_start

        prepared = self.prepared
        record = prepared.record
        record.update(host=host_name(), attempt=self.attempt)
        self.hooks.on_start(record)
        if prepared.resolved.run.python is None:  # the interpreter that runs it here
            record["python"] = {"version": sys.version.split()[0], "executable": sys.executable}
        record_start(prepared, gpu, self._gather)
        update_sweep(record, Status.RUNNING)

    def _gather(self) -> None:
        """Frozen requirements of this machine's interpreter; git state only in `--debug`, where the code
        runs from `__code__` as it is now (otherwise it was read where the snapshot was taken)."""
        from expyrun.run.launch import record_environment

        prepared: PreparedRun = self.prepared
        if not prepared.debug:
            record_environment(prepared, None, None)  # git state was recorded where the snapshot was taken
            return
        from expyrun.run.git_state import GitProbe

        git = GitProbe(prepared.resolved.run.code)
        try:
            record_environment(prepared, git, None)
        finally:
            git.close()


class _HookedExecutor(LocalExecutor):
    """The local executor, whose stop signals are passed on to the run as the hooks say."""

    def __init__(self, hooks: NodeHooks, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.hooks = hooks
        self.last: Started | None = None  # the process and GPU of the job submitted last

    def submit(self, job: Job) -> Started:
        self.last = super().submit(job)
        return self.last

    def forwarded(self, received: int) -> int | None:
        return self.hooks.forwarded(received, super().forwarded(received))

    def stop(self, grace_s: float, signum: int = signal.SIGTERM) -> list[Ended]:
        """The grace the hooks allow (Slurm: ending before its `KillWait`), counted from now: the time
        the hooks take to ask their scheduler is the run's too."""
        asked = time.monotonic()
        grace_s = self.hooks.stop_grace(signum, grace_s)
        return super().stop(max(0.0, grace_s - (time.monotonic() - asked)), signum)


class _OneFolder:
    """The loop's proposer of a node: the one prepared folder, once. Its start is recorded here (this
    machine's host, the attempt, the hooks' fields); its end is the node's (see `_Attempt.execute`)."""

    def __init__(self, job: Job, executor: _HookedExecutor, on_start: Callable[[Job, int, str | None], None]) -> None:
        self.job: Job | None = job
        self.executor = executor
        self.on_start = on_start

    def next(self) -> Job | Literal[Next.EXHAUSTED]:
        job, self.job = self.job, None
        return Next.EXHAUSTED if job is None else job

    def prepare(self, point: Job) -> Job:
        return point  # prepared already (run/prepare.py, where it was submitted)

    def gather(self, prepared: PreparedRun) -> None:
        pass  # not called: the job records itself (`_Attempt._gather`, from `on_start`)

    def started(self, job: Job) -> None:
        last = self.executor.last
        self.on_start(job, last.pid if last else 0, last.gpu if last else None)

    def tell(self, job: Job, outcome: Outcome) -> None:
        pass  # the loop's result holds the outcome; the node ends the record

    def tick(self) -> None:
        pass


if __name__ == "__main__":
    code = main()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(code)
