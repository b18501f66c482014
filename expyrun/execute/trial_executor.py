"""A study's trials on the Executor contract: its reused worker processes or its inline slots.

Why an adapter rather than two new executors: `WorkerPool` (reused processes, also under sweeps'
`reuse_workers`) and `InlinePool` (the study process itself) execute a *task* and answer a
`Finished` (the worker's reply, or how it died). A study's proposer needs that reply whole (one
outcome per trial of a batch, values, metrics, what the trial suggested itself), so each `Ended`
carries it as its outcome's `result`; the outcome's status is only what the loop counts.

Jobs are a study's trial units (`records_itself`: the proposer writes the trials' records). Stop
signals reach the trials with the study's process group (the run child's group, from the launcher,
or the terminal), so `stop` passes nothing on: it gives the running trials their grace, then kills
the workers (inline threads are abandoned), and answers each unit once.
"""

from __future__ import annotations

import signal
from typing import Any, Protocol

from expyrun.execute.contract import Ended, Job, Started
from expyrun.execute.outcome import Outcome
from expyrun.execute.trial_workers import Finished
from expyrun.execute.wakeup import WakeupPipe
from expyrun.run.child import Terminated
from expyrun.run.status import SIGNAL_EXIT, Status


class TrialPool(Protocol):
    """What WorkerPool and InlinePool have in common."""

    @property
    def busy(self) -> int: ...

    def has_free_slot(self) -> bool: ...

    def submit(self, key: int, payload: Any, run_dir: Any) -> tuple[int, str | None]: ...

    def wait(self, timeout: float, wake_fd: int | None = None) -> list[Finished]: ...

    def stop(
        self, grace: float, wake_fd: int | None = None, exception: type[BaseException] = KeyboardInterrupt
    ) -> list[Finished]: ...

    def close(self) -> None: ...


class TrialExecutor:
    """The contract over a trial pool; `started[id(job)]` keeps each unit's (pid, GPU) for its proposer."""

    def __init__(self, pool: TrialPool) -> None:
        self.pool = pool
        self.jobs: dict[int, Job] = {}
        self.next_key = 0
        self.started: dict[int, tuple[int, str | None]] = {}
        self.stopped_by: int | None = None
        self._wake = WakeupPipe()  # a signal ends a wait at once

    def has_free_slot(self) -> bool:
        return self.stopped_by is None and self.pool.has_free_slot()

    def submit(self, job: Job) -> Started:
        key, self.next_key = self.next_key, self.next_key + 1
        self.jobs[key] = job
        pid, gpu = self.pool.submit(key, job.work, job.prepared.run_dir)
        self.started[id(job)] = (pid, gpu)
        return Started(job, pid, gpu)

    def wait(self, timeout: float) -> list[Ended]:
        ended = [self._ended(finished) for finished in self.pool.wait(timeout, self._wake.open())]
        self._wake.drain()
        return ended

    def stop(self, grace_s: float, signum: int = signal.SIGTERM) -> list[Ended]:
        """The running trials got the signal with the process group: they get `grace_s` to answer."""
        if self.stopped_by is not None:
            return []  # the pool's stop waited for every unit already
        self.stopped_by = signum
        name = signal.Signals(signum).name
        if self.pool.busy:
            print(f"expyrun: the study was stopped ({name}): {self.pool.busy} running trial(s) get "
                  f"{grace_s:g} s to end, then are failed and queued again", flush=True)  # fmt: skip
        exception = KeyboardInterrupt if signum == signal.SIGINT else Terminated
        return [self._ended(finished) for finished in self.pool.stop(grace_s, self._wake.open(), exception)]

    def close(self) -> None:
        self.pool.close()
        self._wake.close()

    def _ended(self, finished: Finished) -> Ended:
        job = self.jobs.pop(finished.key)
        self.started.pop(id(job), None)
        return Ended(job, _outcome(finished, self.stopped_by))


def _outcome(finished: Finished, stopped_by: int | None) -> Outcome:
    """What the loop counts; the reply itself travels as `result` for the study's proposer."""
    reply = finished.reply or {}
    interrupted = finished.interrupted or reply.get("interrupted")
    if finished.killed or interrupted:
        signum = stopped_by or (signal.SIGINT if interrupted == "SIGINT" else signal.SIGTERM)
        outcome = Outcome(Status.INTERRUPTED, SIGNAL_EXIT[signal.Signals(signum)], result=finished)
        outcome.stopped = stopped_by is not None
        return outcome
    replies = reply.get("outcomes") or [reply]
    failed = finished.reply is None or all(r.get("state") == "FAIL" for r in replies)
    return Outcome(Status.FAILED if failed else Status.COMPLETED, 1 if failed else 0, result=finished)
