"""Optuna storages: the embedded journal file (default), a `.journal` path, or a database URL."""

from __future__ import annotations

import hashlib
import inspect
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from expyrun.tune.spec import StudySpec

JOURNAL_FILE = "study.journal"


def journal_path(spec: StudySpec, study_home: Path) -> Path | None:
    """Where the journal lives: beside the study's run folders (so a rerun resumes it), or as given
    (relative to the current directory, like a relative SQLite URL)."""
    if spec.storage is None:
        return study_home / JOURNAL_FILE
    if not spec.is_rdb:
        return Path(spec.storage).expanduser().absolute()
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
    if not spec.storage.startswith("postgresql"):
        return optuna.storages.RDBStorage(spec.storage, **kwargs)
    with advisory_lock(spec.storage, "expyrun:create-tables"):  # workers starting together on a new database
        return optuna.storages.RDBStorage(spec.storage, **kwargs)


@contextmanager
def advisory_lock(url_or_engine: Any, name: str) -> Iterator[None]:
    """A PostgreSQL session-level advisory lock named `name`, held for the block."""
    from sqlalchemy import create_engine, text

    key = int.from_bytes(hashlib.sha1(name.encode()).digest()[:8], "big", signed=True)
    engine = create_engine(url_or_engine) if isinstance(url_or_engine, str) else url_or_engine
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": key})
            try:
                yield
            finally:
                connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": key})
    finally:
        if isinstance(url_or_engine, str):
            engine.dispose()
