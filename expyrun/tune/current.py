"""`expyrun.trial()` and `expyrun.trials()`: the live Optuna trial(s) of the running call, in both
isolations. Thread-local, because inline trials with `n_jobs > 1` run in threads of one process."""

from __future__ import annotations

import threading
from typing import Any

_local = threading.local()


def trial() -> Any:
    """The `optuna.trial.Trial` being evaluated, or None outside a study and inside a batch
    (`batch_size` > 1: one call evaluates several trials, see `trials()`)."""
    return getattr(_local, "trial", None)


def trials() -> list[Any]:
    """The live trials of the running call, in the order of its configs: the batch's trials for a
    batch call (`function(name, configs)`), `[trial]` for a single trial, `[]` outside a study."""
    return list(getattr(_local, "trials", ()))


def set_trial(value: Any) -> None:
    _local.trial = value
    _local.trials = () if value is None else (value,)


def set_trials(values: list[Any] | None) -> None:
    """A batch call: `trial()` is None (which of them would it be?), `trials()` gives them all."""
    _local.trial = None
    _local.trials = tuple(values or ())
