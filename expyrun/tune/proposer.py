"""An Optuna study as a proposer of the one loop (expyrun/campaign/loop.py): its points are trials.

Why: the loop owns what every way of running points shares (take a point, submit it, wait with a
bound, stop signals with one grace, the exit code); the study adds only what is its own, here and
in the driver: ask under the study's lock (count-then-ask, so `n_trials` is exact across
processes), claims and reclaim of dead processes' trials, tell, and a trial stopped with the study
failed and queued again. A point is a trial unit (a trial, or a batch of trials evaluated by one
call), prepared by the driver (`queued`); the trials' records are written by `TrialContext`, so
its jobs say `records_itself`.

When the proposer has nothing to give: `Next.WAIT` while trials of this process run (a trial that
ends may free the sampler, a retry, room under `n_trials`), `Next.EXHAUSTED` once asking ended
(timeout, `n_trials`, the sampler's last point, `max_consecutive_failures`) or nothing is running.
"""

from __future__ import annotations

import signal
from functools import partial
from typing import TYPE_CHECKING, Any, Literal, Protocol

from expyrun.campaign.loop import Next
from expyrun.execute.contract import Job
from expyrun.execute.trial_workers import Finished

if TYPE_CHECKING:
    from expyrun.execute.outcome import Outcome
    from expyrun.execute.trial_executor import TrialExecutor
    from expyrun.run.prepare import PreparedRun
    from expyrun.tune.trial_run import TrialContext, Unit


class StudyDriver(Protocol):
    """What the proposer asks of the study's driver (expyrun/tune/driver.py, which builds the
    proposer): named here so the arrow runs one way, driver -> proposer."""

    ended: str | None

    @property
    def inline(self) -> bool: ...

    def next_unit(self, study: Any, context: TrialContext) -> Unit | None: ...

    def evaluate_inline(self, unit: Unit, context: TrialContext) -> dict[str, Any]: ...

    def started(self, unit: Unit, context: TrialContext, pid: int, gpu: str | None) -> None: ...

    def conclude(
        self, study: Any, context: TrialContext, unit: Unit, finished: Finished, stopped_by: str | None
    ) -> None: ...

    def tick(self, study: Any) -> None: ...


class StudyProposer:
    """The trials of one study process, proposed to the loop and told to Optuna as they end."""

    def __init__(self, driver: StudyDriver, study: Any, context: TrialContext, executor: TrialExecutor) -> None:
        self.driver = driver
        self.study = study
        self.context = context
        self.executor = executor
        self.paused = False  # nothing to ask for now: ask again when a trial ends
        self.units: dict[int, Unit] = {}  # id(job) -> its trial unit

    def next(self) -> Unit | Literal[Next.WAIT, Next.EXHAUSTED]:
        driver = self.driver
        if driver.ended:
            return Next.EXHAUSTED
        if not self.paused:
            unit = driver.next_unit(self.study, self.context)
            if unit is not None:
                return unit
            self.paused = True
        return Next.WAIT if self.units and not driver.ended else Next.EXHAUSTED

    def prepare(self, point: Unit) -> Job:
        """The unit is prepared already (asking and preparing go together under the study's lock
        and counting); its job carries what the executor runs: a worker task or an inline call."""
        driver = self.driver
        work: Any = partial(driver.evaluate_inline, point, self.context) if driver.inline else point.task()
        job = Job(point, work, reads_result=False, records_itself=True)  # type: ignore[arg-type]
        self.units[id(job)] = point
        return job

    def gather(self, prepared: PreparedRun) -> None:
        pass  # a trial's environment is its study's (one snapshot, frozen requirements, git state)

    def started(self, job: Job) -> None:
        pid, gpu = self.executor.started.get(id(job), (0, None))
        self.driver.started(self.units[id(job)], self.context, pid, gpu)

    def tell(self, job: Job, outcome: Outcome) -> None:
        unit = self.units.pop(id(job))
        finished = outcome.result if isinstance(outcome.result, Finished) else _not_started(outcome)
        stopped = self.executor.stopped_by
        stopped_by = None if stopped is None else signal.Signals(stopped).name
        self.driver.conclude(self.study, self.context, unit, finished, stopped_by)
        self.paused = False

    def tick(self) -> None:
        self.driver.tick(self.study)


def _not_started(outcome: Outcome) -> Finished:
    """A unit the loop did not execute (a stop signal came while it was prepared)."""
    return Finished(-1, None, "not started: the study was stopped", killed=True)
