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
