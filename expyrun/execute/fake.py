"""An in-memory executor with scripted outcomes: the loop's tests run against it in milliseconds.

Nothing executes: `submit` records the job, and each `wait` ends the jobs whose turn came, in the
order they were submitted, with the outcome a script gives them (by the job's environment
`EXPYRUN_SWEEP_POINT`, or by submission order). A job scripted `None` never ends by itself
(it "runs" until `stop`), which is how the tests hold a slot busy.
"""

from __future__ import annotations

import signal
from collections.abc import Callable

from expyrun.execute.contract import Ended, Job, Started
from expyrun.execute.outcome import Outcome
from expyrun.run.status import SIGNAL_EXIT, Status

Script = Callable[[Job, int], Outcome | None]  # (job, submission number) -> how it ends; None: runs on


def completed(_job: Job, _number: int) -> Outcome:
    return Outcome(Status.COMPLETED, 0)


class FakeExecutor:
    """`slots` jobs at once; `ends_per_wait` of the running jobs end at each `wait`."""

    def __init__(self, slots: int = 1, script: Script = completed, ends_per_wait: int = 1) -> None:
        self.slots = slots
        self.script = script
        self.ends_per_wait = ends_per_wait
        self.running: list[tuple[Job, int]] = []
        self.submitted: list[Job] = []
        self.events: list[str] = []  # what happened, in order: "submit 0", "end 0 completed", "stop 2 ..."
        self.stopped: tuple[float, int] | None = None
        self.closed = False

    def has_free_slot(self) -> bool:
        return len(self.running) < self.slots and self.stopped is None

    def submit(self, job: Job) -> Started:
        assert self.has_free_slot(), "submit without a free slot"
        number = len(self.submitted)
        self.submitted.append(job)
        self.running.append((job, number))
        self.events.append(f"submit {number}")
        return Started(job, pid=10_000 + number)

    def wait(self, timeout: float) -> list[Ended]:
        ended: list[Ended] = []
        for job, number in list(self.running):
            if len(ended) >= self.ends_per_wait:
                break
            outcome = self.script(job, number)
            if outcome is not None:
                self.running.remove((job, number))
                self.events.append(f"end {number} {outcome.status}")
                ended.append(Ended(job, outcome))
        return ended

    def stop(self, grace_s: float, signum: int = signal.SIGTERM) -> list[Ended]:
        """Every running job ends `interrupted` with the signal's exit code (given its grace at once)."""
        self.stopped = (grace_s, signum)
        self.events.append(f"stop {len(self.running)} grace {grace_s:g}")
        ended = []
        for job, number in self.running:
            outcome = Outcome(Status.INTERRUPTED, SIGNAL_EXIT[signal.Signals(signum)])
            outcome.stopped = True
            self.events.append(f"end {number} interrupted")
            ended.append(Ended(job, outcome))
        self.running = []
        return ended

    def close(self) -> None:
        self.closed = True
