"""How a run ended: the one type every executor returns and the run record's `finish` reads.

A forked run child, a `__python__` interpreter, a command, a trial (in a worker process or inline)
and a Slurm task all end as an `Outcome`; `expyrun/execute/outcome.py` reads one from a child's
wait status, and a trial's reply becomes one with `TrialOutcome.as_outcome` (tune/trial_run.py).
"""

from __future__ import annotations

from typing import Any

from expyrun.run.status import Status


class Outcome:
    """`status` is the run.json status; `exit_code` what expyrun exits with for this run."""

    def __init__(
        self,
        status: Status | str,  # a string is read as its Status (an unknown one raises ValueError)
        exit_code: int,
        result: Any = None,
        exception: dict[str, str] | None = None,
        log_error: str | None = None,
        returncode: int | None = None,
    ) -> None:
        self.status = Status(status)
        self.exit_code = exit_code
        self.result = result
        self.exception = exception
        self.log_error = log_error
        self.returncode = returncode  # the run process's exit status (negative: killed by that signal)
        self.stopped = False  # expyrun stopped it (a stop signal it received and passed on)

    def __repr__(self) -> str:
        return f"Outcome({self.status.value!r}, {self.exit_code}, exception={self.exception!r})"


def exit_code(outcomes: list[Outcome], stopped_by: int | None) -> int:
    """What expyrun exits with for a set of runs (the one rule, for a run, a sweep, a Slurm task):
    the stop signal's code, else an interrupted run's code, 1 if any failed, else 0."""
    if stopped_by is not None:
        import signal

        from expyrun.run.status import SIGNAL_EXIT

        return SIGNAL_EXIT[signal.Signals(stopped_by)]
    if any(outcome.status == Status.INTERRUPTED for outcome in outcomes):
        return next(o.exit_code for o in outcomes if o.status == Status.INTERRUPTED)
    return 1 if any(outcome.status == Status.FAILED for outcome in outcomes) else 0
