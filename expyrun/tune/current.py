"""`expyrun.trial()`: the live Optuna trial of the running trial, in both isolations."""

from __future__ import annotations

import threading
from typing import Any

_local = threading.local()


def trial() -> Any:
    """The `optuna.trial.Trial` being evaluated, or None outside a study."""
    return getattr(_local, "trial", None)


def set_trial(value: Any) -> None:
    _local.trial = value
