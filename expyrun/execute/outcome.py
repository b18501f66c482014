"""How an execution ended, read from the run child's exit status and the message it left."""

from __future__ import annotations

import os
import signal
from typing import Any

from expyrun.run.outcome import Outcome
from expyrun.run.status import PASSED_ON_EXIT, SIGNAL_EXIT, Status

__all__ = ["SIGNAL_EXIT", "Outcome", "classify"]


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
        return Outcome(Status.INTERRUPTED, SIGNAL_EXIT[signal.Signals(stopped_by)])
    if os.WIFSIGNALED(wait_status):
        name = signal.Signals(os.WTERMSIG(wait_status)).name
        return Outcome(Status.FAILED, 1, exception={"type": "Signal", "message": f"the run was killed by {name}"})
    code = os.WEXITSTATUS(wait_status)
    if code == 0:  # os._exit(0) too: success by every convention, with no result to record
        return Outcome(Status.COMPLETED, 0, result=message.get("result"))
    if code in PASSED_ON_EXIT and "exception" not in message:
        return Outcome(Status.INTERRUPTED, code)
    exception = message.get("exception")
    if exception is None:  # os._exit(n), or an exit before the run could report
        exception = {"type": "Exit", "message": f"the run exited with code {code} without reporting a result"}
    return Outcome(Status.FAILED, 1, exception=exception)
