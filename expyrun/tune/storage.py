"""Optuna storages: the embedded journal file (default), a `.journal` path, or a database URL.

Every process of a study (drivers of several launches, their trial workers) opens its own storage
object: a storage never crosses a process boundary. Storages kept in a file (a journal, a SQLite
database) get a lock file beside them, `{file}.expyrun-lock`: counting the trials and asking for
the next one happen under it, so `n_trials` is exact across processes, and the storage and the
study are created under it, so two launches on a fresh SQLite file do not both create its tables.
PostgreSQL uses an advisory lock for the same two purposes.
"""

from __future__ import annotations

import fcntl
import hashlib
import inspect
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from expyrun.tune.spec import StudySpec, sqlite_path

JOURNAL_FILE = "study.journal"
LOCK_SUFFIX = ".expyrun-lock"


def journal_path(spec: StudySpec, study_home: Path) -> Path | None:
    """Where the journal lives: beside the study's run folders (so a rerun resumes it), or as given
    (relative to the current directory, like a relative SQLite URL)."""
    if spec.storage is None:
        return study_home / JOURNAL_FILE
    if not spec.is_rdb:
        return Path(spec.storage).expanduser().absolute()
    return None


def absolute_sqlite_url(url: str) -> str:
    """`url` with its database file made absolute, read relative to the current directory (the
    directory expyrun was launched from: the study runs in its run folder)."""
    from sqlalchemy.engine import make_url

    path = sqlite_path(url)
    if path is None:
        return url
    return make_url(url).set(database=str(path)).render_as_string(hide_password=False)


def storage_file(spec: StudySpec, journal: Path | None) -> Path | None:
    """The file holding the study, when it is kept in one (journal or SQLite): the anchor of its
    lock file and of the heartbeat files of its running trials."""
    if journal is not None:
        return journal
    if spec.is_sqlite and spec.storage is not None:
        return sqlite_path(spec.storage)
    return None


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive `flock` on `path` (created if missing), held for the block, across processes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def make_storage(spec: StudySpec, journal: Path | None, create: bool = True) -> Any:
    """A new storage object for this process. `create=False` (trial workers): the tables exist
    already, made by the driver under the lock."""
    import optuna

    if journal is not None:
        from optuna.storages.journal import JournalFileBackend

        journal.parent.mkdir(parents=True, exist_ok=True)
        return optuna.storages.JournalStorage(JournalFileBackend(str(journal)))
    assert spec.storage is not None
    if spec.is_sqlite:
        return optuna.storages.RDBStorage(spec.storage, skip_table_creation=not create)
    kwargs: dict[str, Any] = {
        "heartbeat_interval": spec.heartbeat_interval,
        "grace_period": spec.grace_period or 2 * spec.heartbeat_interval,
        "skip_table_creation": not create,
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
    if not create or not spec.storage.startswith("postgresql"):
        return optuna.storages.RDBStorage(spec.storage, **kwargs)
    with advisory_lock(spec.storage, "expyrun:create-tables"):  # workers starting together on a new database
        return optuna.storages.RDBStorage(spec.storage, **kwargs)


@contextmanager
def study_lock(spec: StudySpec, journal: Path | None, engine: Any = None) -> Iterator[None]:
    """The lock that makes count-then-ask (and creating the study) atomic across every process of
    the study: a lock file beside a journal or SQLite file, an advisory lock on PostgreSQL."""
    anchor = storage_file(spec, journal)
    if anchor is not None:
        with file_lock(anchor.with_name(anchor.name + LOCK_SUFFIX)):
            yield
        return
    if spec.storage is not None and spec.storage.startswith("postgresql"):
        with advisory_lock(engine if engine is not None else spec.storage, f"expyrun:ask:{spec.study_name}"):
            yield
        return
    yield  # another database: its own transactions are all there is


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
