"""Optuna storages: the embedded journal file (default), a `.journal` path, or a database URL."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

from expyrun.tune.spec import StudySpec

JOURNAL_FILE = "study.journal"


def journal_path(spec: StudySpec, study_home: Path) -> Path | None:
    """Where the journal lives: beside the study's run folders (so a rerun resumes it), or as given."""
    if spec.storage is None:
        return study_home / JOURNAL_FILE
    if not spec.is_rdb:
        return (study_home.parent / spec.storage) if not Path(spec.storage).is_absolute() else Path(spec.storage)
    return None


def make_storage(spec: StudySpec, journal: Path | None) -> Any:
    import optuna

    if journal is not None:
        from optuna.storages.journal import JournalFileBackend

        journal.parent.mkdir(parents=True, exist_ok=True)
        return optuna.storages.JournalStorage(JournalFileBackend(str(journal)))
    assert spec.storage is not None
    if spec.is_sqlite:
        return optuna.storages.RDBStorage(spec.storage)
    kwargs: dict[str, Any] = {
        "heartbeat_interval": spec.heartbeat_interval,
        "grace_period": spec.grace_period or 2 * spec.heartbeat_interval,
    }
    # Optuna 4.9 renamed RetryFailedTrialCallback and the storage argument that takes it.
    retry_class = (
        getattr(optuna.storages, "RetryHeartbeatStaleTrialCallback", None) or optuna.storages.RetryFailedTrialCallback
    )
    parameters = inspect.signature(optuna.storages.RDBStorage.__init__).parameters
    argument = (
        "heartbeat_stale_trial_callback" if "heartbeat_stale_trial_callback" in parameters else "failed_trial_callback"
    )
    kwargs[argument] = retry_class(max_retry=spec.max_retry)
    return optuna.storages.RDBStorage(spec.storage, **kwargs)
