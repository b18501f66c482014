"""How an execution ended, read from the run child's exit status and the message it left."""

from __future__ import annotations

import os
import signal
from typing import Any

SIGNAL_EXIT = {signal.SIGINT: 130, signal.SIGTERM: 143, signal.SIGHUP: 129}


class Outcome:
    """`status` is the run.json status; `exit_code` what expyrun exits with for this run."""

    def __init__(
        self,
        status: str,
        exit_code: int,
        result: Any = None,
        exception: dict[str, str] | None = None,
        log_error: str | None = None,
        returncode: int | None = None,
    ) -> None:
        self.status = status
        self.exit_code = exit_code
        self.result = result
        self.exception = exception
        self.log_error = log_error
        self.returncode = returncode  # the run process's exit status (negative: killed by that signal)
        self.stopped = False  # expyrun stopped it (a stop signal it received and passed on)

    def __repr__(self) -> str:
        return f"Outcome({self.status!r}, {self.exit_code}, exception={self.exception!r})"


def classify(wait_status: int, message: dict[str, Any], stopped_by: int | None) -> Outcome:
    """The outcome of a run child that ended with `wait_status` after sending `message`.

    `stopped_by`: the signal expyrun received and passed on, if any (the run is then interrupted,
    whatever it did with the signal).
    """
    outcome = _classify(wait_status, message, stopped_by)
    outcome.returncode = os.waitstatus_to_exitcode(wait_status)
    outcome.stopped = stopped_by is not None
    return outcome


def _classify(wait_status: int, message: dict[str, Any], stopped_by: int | None) -> Outcome:
    if stopped_by is not None:
        return Outcome("interrupted", SIGNAL_EXIT[signal.Signals(stopped_by)])
    if os.WIFSIGNALED(wait_status):
        name = signal.Signals(os.WTERMSIG(wait_status)).name
        return Outcome("failed", 1, exception={"type": "Signal", "message": f"the run was killed by {name}"})
    code = os.WEXITSTATUS(wait_status)
    if code == 0:  # os._exit(0) too: success by every convention, with no result to record
        return Outcome("completed", 0, result=message.get("result"))
    if code in (130, 143) and "exception" not in message:
        return Outcome("interrupted", code)
    exception = message.get("exception")
    if exception is None:  # os._exit(n), or an exit before the run could report
        exception = {"type": "Exit", "message": f"the run exited with code {code} without reporting a result"}
    return Outcome("failed", 1, exception=exception)
