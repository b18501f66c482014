"""The one loop over points: take a point, prepare its folder, submit it, record its start and its end.

Why one loop: a single run, a sweep's points and (next) a study's trials differ only in which
points they propose and what they do when one ends; where a prepared folder executes is the
executor's business (`expyrun.execute.contract`). Stop signals, the grace period, the bound on
every wait and the exit code are decided here, once, for all of them.

The steps of a point, each in one place:
  proposer.next()              which point (or nothing now, or no more)
  proposer.prepare(point)      its run folder (`run.json` `queued`), as a `Job`; a point that cannot
                               be prepared fails alone (`PointFailed`) and the loop goes on
  executor.submit(job)         executing; the loop records the start (`running`, pid, GPU, the
                               environment `proposer.gather` adds), then `proposer.started(job)`
  executor.wait(timeout)       bounded: the loop wakes at least every `poll_s` (and on any signal)
  finish_record(...)           the end of `run.json` (status, times, result, exception)
  proposer.tell(job, outcome)  where the point came from hears how it ended

Signals: SIGINT, SIGTERM and SIGHUP stop the loop: no point is taken after the first, the running
ones get `grace_s` (the executor passes the signal on), a third signal kills them at once, and the
exit code is the signal's (130/143/129).
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from enum import Enum
from typing import TYPE_CHECKING, Any, Generic, Literal, Protocol, TypeVar

from expyrun.execute.outcome import Outcome
from expyrun.run.outcome import exit_code
from expyrun.run.status import SIGNAL_EXIT, STOP_GRACE_S, STOP_SIGNALS, Status

if TYPE_CHECKING:
    from expyrun.execute.contract import Ended, Executor, Job
    from expyrun.run.prepare import PreparedRun

GRACE_S = STOP_GRACE_S  # after passing a stop signal on, how long a run may take to end before SIGKILL
POLL_S = 1.0  # the longest the loop waits without looking at signals and ticking


class Next(Enum):
    """What a proposer answers when it has no point to give."""

    WAIT = "wait"  # nothing now (a study waiting for running trials); ask again after a wait
    EXHAUSTED = "exhausted"  # no point will come any more


P = TypeVar("P")


class PointFailed(Exception):
    """A point whose folder could not be prepared: it fails alone, with this outcome (already recorded
    by the proposer), and the loop goes on with the next."""

    def __init__(self, outcome: Outcome) -> None:
        super().__init__(outcome)
        self.outcome = outcome


class Proposer(Protocol[P]):
    """Which points run, and what happens when one ends. Called from the loop only (main thread)."""

    def next(self) -> P | Literal[Next.WAIT, Next.EXHAUSTED]:
        """The next point to execute, or why there is none now."""
        ...

    def prepare(self, point: P) -> Job | None:
        """The point's prepared folder as a job; None when it needs no execution (`--needed` found it
        done: the proposer recorded that). Raises `PointFailed` when the point fails alone; any other
        exception ends the loop (the running jobs are killed by the executor's `close`)."""
        ...

    def gather(self, prepared: PreparedRun) -> None:
        """Add to the record what is gathered once the run is working (git state, requirements)."""
        ...

    def started(self, job: Job) -> None:
        """The job is executing (its `run.json` says `running`)."""
        ...

    def tell(self, job: Job, outcome: Outcome) -> None:
        """The job ended so (its `run.json` is final already)."""
        ...

    def tick(self) -> None:
        """Called at least once every `poll_s` while the loop runs (progress, records kept current)."""
        ...


class LoopResult:
    """How the loop ended: the outcome of every point that ended (executed or failed to prepare) and
    the stop signal that ended it, if one did."""

    def __init__(self) -> None:
        self.outcomes: list[Outcome] = []
        self.stopped_by: int | None = None
        self.stopped_by_failures = False

    @property
    def exit_code(self) -> int:
        return exit_code(self.outcomes, self.stopped_by)


class _Loop(Generic[P]):
    def __init__(
        self, proposer: Proposer[P], executor: Executor, grace_s: float, max_failures: int | None, poll_s: float
    ) -> None:
        self.proposer = proposer
        self.executor = executor
        self.grace_s = grace_s
        self.max_failures = max_failures
        self.poll_s = poll_s
        self.received: list[int] = []
        self.running: dict[int, float] = {}  # id(job) -> when it started (monotonic)
        self.result = LoopResult()
        self.failures_in_a_row = 0

    def run(self) -> LoopResult:
        passed_on = 0
        exhausted = False
        while True:
            waiting = False
            while not exhausted and not self.stopping and self.executor.has_free_slot():
                point = self.proposer.next()
                if point is Next.EXHAUSTED:
                    exhausted = True
                elif point is Next.WAIT:
                    waiting = True
                else:
                    self._start(point)
                    continue
                break
            if not self.running and (exhausted or self.stopping):
                break
            # not exhausted, nothing running and no slot: the executor waits for a resource (a GPU lease)
            ended = self.executor.wait(self.poll_s) if self.running or waiting or not exhausted else []
            if len(self.received) > passed_on:
                passed_on = len(self.received)
                ended += self.executor.stop(0.0 if passed_on > 2 else self.grace_s, self.received[0])
            for end in ended:
                self._end(end)
            self.proposer.tick()
        self.result.stopped_by = self.received[0] if self.received else None
        return self.result

    @property
    def stopping(self) -> bool:
        return bool(self.received) or self.result.stopped_by_failures

    def _start(self, point: P) -> None:
        from expyrun.run.launch import record_start

        try:
            job = self.proposer.prepare(point)
        except PointFailed as failed:
            self._count(failed.outcome)
            return
        if job is None:
            return
        if self.received:  # a stop signal came while it was prepared: it is not executed
            from expyrun.execute.contract import Ended

            outcome = Outcome(Status.INTERRUPTED, SIGNAL_EXIT[signal.Signals(self.received[0])])
            outcome.stopped = True
            self.running[id(job)] = time.monotonic()
            self._end(Ended(job, outcome), executed=False)
            return
        started = self.executor.submit(job)
        self.running[id(job)] = time.monotonic()
        if not job.records_itself:
            record_start(job.prepared, started.gpu, lambda: self.proposer.gather(job.prepared))
        self.proposer.started(job)

    def _end(self, end: Ended, executed: bool = True) -> None:
        from expyrun.run.launch import complete_outcome, finish_record

        job, outcome = end.job, end.outcome
        began = self.running.pop(id(job), time.monotonic())
        if job.reads_result and executed:
            outcome = complete_outcome(outcome, job.prepared.resolved.run, job.prepared.run_dir)
        if not job.records_itself:
            finish_record(job.prepared, outcome, time.monotonic() - began)
        self._count(outcome)
        self.proposer.tell(job, outcome)

    def _count(self, outcome: Outcome) -> None:
        self.result.outcomes.append(outcome)
        self.failures_in_a_row = self.failures_in_a_row + 1 if outcome.status == Status.FAILED else 0
        if self.max_failures is not None and self.failures_in_a_row >= self.max_failures:
            self.result.stopped_by_failures = True

    def on_signal(self, signum: int, _frame: Any) -> None:
        self.received.append(signum)


def run_points(
    proposer: Proposer[P],
    executor: Executor,
    grace_s: float = GRACE_S,
    max_failures: int | None = None,
    poll_s: float = POLL_S,
    on_signal: Callable[[int], None] | None = None,
    received: list[int] | None = None,
) -> LoopResult:
    """Execute the proposer's points on the executor until none is left or a stop signal came.

    `max_failures`: that many points failing in a row stop the loop (no new point; the running ones
    end normally). `received`: the list stop signals are appended to, for a caller whose own handler
    stops the loop too (a Slurm node's USR2 appends SIGTERM; the executor's wake-up fd makes the
    loop see it at once). The executor is closed on the way out, whatever happens.
    """
    loop = _Loop(proposer, executor, grace_s, max_failures, poll_s)
    if received is not None:
        loop.received = received

    def handler(signum: int, frame: Any) -> None:
        loop.on_signal(signum, frame)
        if on_signal is not None:
            on_signal(signum)

    previous = {sig: signal.signal(sig, handler) for sig in STOP_SIGNALS}
    try:
        return loop.run()
    finally:
        try:
            executor.close()
        finally:
            for sig, old in previous.items():
                signal.signal(sig, old)
