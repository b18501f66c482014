"""`expyrun.trial()` and `expyrun.trials()`: the live Optuna trial(s) of the running call, in both
isolations, in the threads the call starts too, and a fixed trial when a trial's config is rerun.

Whose trial is it? The thread (or asyncio task) evaluating a call is told so (a context variable:
`asyncio.to_thread` and `contextvars.copy_context()` carry it along). A thread the call starts
itself (`threading.Thread`, a `ThreadPoolExecutor`, joblib's threads) has no such context: it gets
the call running in this process, which is the only one in a trial worker (`isolation: process`)
and with inline trials one at a time. Inline trials in threads (`n_jobs` > 1) run several calls in
one process: there a thread of no call cannot be told which trial is its own, and asking raises
instead of reporting to the wrong trial or silently to none.

A trial's `config.yml` records what the trial suggested itself (`__trial__.params`, written by the
study): rerun alone as an ordinary run, `trial()` is an `optuna.trial.FixedTrial` holding those
values, so `trial().suggest_float("y", ...)` returns what the trial received.

It stands at the package's top, imports only the standard library, and is set by the study
(`tune/trial_run.py`) and read by logging (`track/logging.py`: a batch member's folder), so
neither track/ nor the package's face imports tune/.
"""

from __future__ import annotations

import contextvars
import os
import threading
from typing import Any

_NOT_SET: Any = object()
# (trial, trials) of the call this context evaluates; _NOT_SET: this context evaluates none
_own: contextvars.ContextVar[Any] = contextvars.ContextVar("expyrun_trial", default=_NOT_SET)
_running: dict[int, tuple[Any, tuple[Any, ...]]] = {}  # by the ident of the thread evaluating the call
_mutex = threading.Lock()
_study_process = False  # this process evaluates study trials: no rerun's fixed trial here
TRIAL_SECTION = "__trial__"  # in a trial's config.yml: `params` it suggested itself


class AmbiguousTrial(RuntimeError):
    """`expyrun.trial()` from a thread of no trial while several trials run in this process."""


def _current() -> tuple[Any, tuple[Any, ...]]:
    own = _own.get()
    if own is not _NOT_SET:
        return own
    with _mutex:
        calls = list(_running.values())
    if len(calls) == 1:
        return calls[0]
    if len(calls) > 1:
        raise AmbiguousTrial(
            f"expyrun.trial() was called from thread {threading.current_thread().name!r}, which evaluates no "
            f"trial, while {len(calls)} inline trials run in this process (n_jobs > 1): which one is it for? "
            "Pass the trial (expyrun.trial() in the trial's own thread) to the threads it starts"
        )
    if _study_process:
        return None, ()
    fixed = _rerun_trial()
    return fixed, () if fixed is None else (fixed,)


def trial() -> Any:
    """The `optuna.trial.Trial` being evaluated, or None outside a study and inside a batch
    (`batch_size` > 1: one call evaluates several trials, see `trials()`)."""
    return _current()[0]


def trials() -> list[Any]:
    """The live trials of the running call, in the order of its configs: the batch's trials for a
    batch call (`function(name, configs)`), `[trial]` for a single trial, `[]` outside a study."""
    return list(_current()[1])


def set_trial(value: Any) -> None:
    """The calling thread evaluates `value` (None: it ended)."""
    _set(value, () if value is None else (value,))


def set_trials(values: list[Any] | None) -> None:
    """A batch call: `trial()` is None (which of them would it be?), `trials()` gives them all."""
    _set(None, tuple(values or ()))


def _set(value: Any, values: tuple[Any, ...]) -> None:
    global _study_process
    _study_process = True
    ident = threading.get_ident()
    with _mutex:
        if values:
            _running[ident] = (value, values)
        else:
            _running.pop(ident, None)
    _own.set((value, values) if values else _NOT_SET)


_fixed: dict[str, Any] = {}  # the rerun's fixed trial, by run folder: read once


def _rerun_trial() -> Any:
    """A `FixedTrial` of the params a rerun trial config records (`__trial__`), or None."""
    run_dir = os.environ.get("EXPYRUN_RUN_DIR")
    if not run_dir:
        return None
    if run_dir not in _fixed:
        _fixed[run_dir] = _read_fixed(os.path.join(run_dir, "config.yml"))
    return _fixed[run_dir]


def _read_fixed(path: str) -> Any:
    import yaml

    try:
        with open(path, encoding="utf-8") as file:
            config = yaml.safe_load(file)
    except (OSError, ValueError, yaml.YAMLError):  # no config, or one YAML cannot read: no fixed trial
        return None
    section = config.get(TRIAL_SECTION) if isinstance(config, dict) else None
    if not isinstance(section, dict) or not isinstance(section.get("params"), dict):
        return None
    import optuna

    number = section.get("number")
    return optuna.trial.FixedTrial(section["params"], number if isinstance(number, int) else 0)
