"""The executor contract: where a prepared run folder executes, written down once.

Why a contract: what decides *which* runs execute (one run, a sweep's points, a study's trials:
the proposers of `expyrun.campaign`) is kept apart from *where* a prepared folder executes (a
forked child, reused worker processes, an inline thread, a Slurm node). One loop
(`expyrun.campaign.loop.run_points`) drives any executor through these five methods, so a new
executor (a queue, Ray) is one class and one more mode of `tests/test_executor.py`, and the loop
is tested in-process against `expyrun.execute.fake.FakeExecutor`.

Who calls what, from where
--------------------------
Every method is called by one caller (the loop), from the main thread, one call at a time: an
executor need not be thread safe. Signal handlers may run between (never during) its calls;
an executor that sets its own (SIGCHLD, SIGTSTP, a wake-up fd) restores them in `close`.

``has_free_slot() -> bool``
    Whether `submit` would start the job now. Never blocks.
``submit(job) -> Started``
    Starts `job` in a free slot (calling it without a free slot is a programming error) and
    returns at once, with the process that runs it and the GPU id it was given, if any. From
    here until an `Ended` names it, the executor owns the job: it alone signals, kills and
    reaps its process; nobody else writes the job's `outputs.log`. The caller owns the job's
    record (`run.json`) throughout.
``wait(timeout) -> list[Ended]``
    Blocks at most `timeout` seconds (sooner when a job ends or a signal with a Python handler
    arrives) and returns the jobs that ended meanwhile, each exactly once, each with its one
    `Outcome`. An empty list is a normal answer; the caller keeps its own count of what runs.
``stop(grace_s, signum) -> list[Ended]``
    A stop signal came: `signum` (SIGINT, or SIGTERM for SIGTERM and SIGHUP) is passed on to
    every running job (an executor whose jobs got the signal already, with the process group
    or from Slurm, passes nothing on), and no job runs longer than `grace_s` after the first
    call: then it is killed and reported. Every job ended so is `interrupted`. `stop` may return
    before every job ended (the rest come from later `wait` calls, which enforce the deadline)
    or block until all have (at most `grace_s` plus the time to kill). A second call shortens
    the deadline (the loop calls `stop(0, ...)` on a third signal). No job is submitted after.
``close()``
    Releases what the executor holds (handlers, pipes, idle workers). Jobs still running (only
    after an error of the caller's) are killed: nothing is left behind. Called once, always.

What a job is
-------------
A `Job` is a prepared run folder (`PreparedRun`: `run.json` says `queued`, the config and the
snapshot are written), a target (what executes there: the callable the forked run child calls,
which is the entry point, a command or another interpreter to `exec`, or a study driver) and the
environment variables set for it. Each executor executes the job's folder the same way: its own
`outputs.log` (the tee), signals, exit status and result file read into the same `Outcome`.
"""

# No `from __future__ import annotations` here: typing.NamedTuple turns string annotations into
# ForwardRefs, compiling each (~15 us a field, at every launch); only names known to mypy alone are quoted.
import signal
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol, runtime_checkable

if TYPE_CHECKING:
    from expyrun.execute.outcome import Outcome
    from expyrun.execute.trial_workers import Finished
    from expyrun.run.prepare import PreparedRun


class Job(NamedTuple):
    """One prepared run folder, what executes there, and the variables set for it. (NamedTuples, not
    dataclasses, here: `dataclasses` costs every launch 5 ms of imports.)"""

    prepared: "PreparedRun"
    work: Callable[[], Any] | Any  # the target: a callable for the run child, or an ExecSpec to exec
    environment: Mapping[str, str] = {}  # never mutated: copied before use
    reads_result: bool = True  # a command's exit status and a `__result__` file decide the outcome
    # (False for a study's own run: its trials have the result files)
    records_itself: bool = False  # a study's trial (or batch of trials): its proposer writes its
    # records (`started`, `tell`), the trial's own `run.json` moments (expyrun/tune/trial_run.py)


class Started(NamedTuple):
    """A job the executor started: the process that runs it (its group, for a forked child) and its GPU."""

    job: Job
    pid: int
    gpu: str | None = None


class Ended(NamedTuple):
    """A job that ended, and how."""

    job: Job
    outcome: "Outcome"


@runtime_checkable
class Executor(Protocol):
    """Where prepared run folders execute (see the module docstring for who calls what, and when)."""

    def has_free_slot(self) -> bool: ...

    def submit(self, job: Job) -> Started: ...

    def wait(self, timeout: float) -> list[Ended]: ...

    def stop(self, grace_s: float, signum: int = signal.SIGTERM) -> list[Ended]: ...

    def close(self) -> None: ...


@runtime_checkable
class TaskPool(Protocol):
    """The slots under the study's trials: `WorkerPool` (reused worker processes) and `InlinePool`
    (threads of the driver). A task is a keyed payload for the runner in the slot, executed in a
    prepared folder and answered as a `Finished`; the same rules as `Executor` hold (one caller, the
    main thread; `wait` bounded, sooner when `wake_fd` is readable; `stop` kills what outlives
    `grace`, blocking until every task ended). `ReusedWorkers` (execute/reused_workers.py) lifts a
    `WorkerPool` to the `Executor` contract for sweep points; the study driver drives a pool directly
    until its trials run on the loop."""

    @property
    def busy(self) -> int: ...

    def has_free_slot(self) -> bool: ...

    def submit(self, key: int, payload: Any, run_dir: Path) -> tuple[int, str | None]: ...

    def wait(self, timeout: float, wake_fd: int | None = None) -> "list[Finished]": ...

    def stop(
        self, grace: float, wake_fd: int | None = None, exception: type[BaseException] = KeyboardInterrupt
    ) -> "list[Finished]": ...

    def close(self) -> None: ...
