"""The statuses a run, a sweep point or a trial's folder can be in: one enum instead of strings
repeated across modules, and the one table of stop signals and the exit codes they give.

`Status` is a `str`: it is written to `run.json` and `sweep.json` as the same strings as before
(records written by earlier versions compare equal to its members), and `str()`/f-strings give
the value. This module imports only `enum` and `signal` (both loaded by every launch already).
"""

from __future__ import annotations

import signal
from enum import Enum
from typing import Literal


class Status(str, Enum):
    """Where a run (or a sweep, or a sweep point) stands; the value is what the record holds."""

    QUEUED = "queued"  # prepared, not started (waiting for a slot, or in Slurm's queue)
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    INTERRUPTED = "interrupted"  # stopped by expyrun on a stop signal (or a cancel)
    PRUNED = "pruned"  # a trial the study's pruner stopped early
    SKIPPED = "skipped"  # a sweep point `--needed` found done already (sweep.json only)
    DIED = "died"  # never written by a run: `list`/`show` say it of a record whose process is gone

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)

    def __hash__(self) -> int:  # as the string's: `"queued" in ACTIVE`, dicts keyed by either
        return str.__hash__(self)

    @property
    def active(self) -> bool:
        """Not ended yet, as far as the record says."""
        return self in ACTIVE


ACTIVE = frozenset({Status.QUEUED, Status.RUNNING})
ENDED = frozenset({Status.COMPLETED, Status.FAILED, Status.INTERRUPTED, Status.PRUNED})
UNSUCCESSFUL = frozenset({Status.FAILED, Status.INTERRUPTED, Status.DIED})

TrialState = Literal["COMPLETE", "PRUNED", "FAIL"]
"""How a trial ended in Optuna's terms (its `run.json` `trial.state`; `RUNNING` while it runs)."""

TRIAL_STATUS: dict[str, Status] = {"COMPLETE": Status.COMPLETED, "PRUNED": Status.PRUNED, "FAIL": Status.FAILED}
"""The run status of a trial's folder for each trial state."""


# The one signal table: what expyrun stops on, and the exit code each gives (128 + the signal's
# number, the shell's convention). Every launcher, driver, worker and waiter uses these.
SIGNAL_EXIT: dict[signal.Signals, int] = {signal.SIGINT: 130, signal.SIGTERM: 143, signal.SIGHUP: 129}
STOP_SIGNALS: tuple[signal.Signals, ...] = tuple(SIGNAL_EXIT)
INTERRUPT_EXITS: frozenset[int] = frozenset(SIGNAL_EXIT.values())
EXIT_SIGNAL_NAME: dict[int, str] = {code: sig.name for sig, code in SIGNAL_EXIT.items()}
"""An exit code that says "stopped by this signal" -> the signal's name (130 -> SIGINT)."""
STOP_GRACE_S = 10.0
"""After a stop signal is passed on to a run, how long it may take to end before SIGKILL: one figure
for every executor (forked child, Slurm node, queue node, Ray task)."""
PASSED_ON: tuple[signal.Signals, ...] = (signal.SIGINT, signal.SIGTERM)
"""The signals a run's own process (run child, trial worker) is sent: SIGHUP is passed on as SIGTERM."""
PASSED_ON_EXIT: dict[int, str] = {SIGNAL_EXIT[sig]: sig.name for sig in PASSED_ON}
"""The exit code a run's process gives when stopped by a signal it was passed -> that signal's name."""


def signal_exit(signal_name: str | None, default: int = 1) -> int:
    """The exit code of a stop by the signal named `signal_name` (`SIGINT` -> 130); `default` otherwise."""
    for sig, code in SIGNAL_EXIT.items():
        if sig.name == signal_name:
            return code
    return default
