"""Telling a running trial from the trial of a study process that died without a word.

A SIGKILL, an out-of-memory kill or a lost node leaves trials `RUNNING` in the storage for good;
they would count towards `n_trials` and never run. Database servers have Optuna's heartbeat for
this. For studies kept in a file (journal, SQLite), expyrun records in each trial it runs the
host, pid and process start time of the driver running it, and keeps a heartbeat file per trial
beside the storage (`{file}.expyrun-heartbeats/{trial_id}`) touched while the trial runs. A
`RUNNING` trial is dead when its driver's process is gone from this host (same host: the pid is the
authority, a busy driver is not dead), or, seen from another host, when its heartbeat file is
missing or older than three heartbeat intervals (`grace_period` when set).
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path
from typing import Any

from expyrun.run.record import host_name

OWNER = "expyrun:owner"  # system attribute: {"host", "pid", "start"} of the driver running the trial
HEARTBEATS_SUFFIX = ".expyrun-heartbeats"


def _stat(pid: int) -> list[bytes] | None:
    """The fields of /proc/PID/stat after the command name (Linux); None without it."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return stat.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return None


def process_start(pid: int) -> str | None:
    """The start time of process `pid` (field 22 of /proc/PID/stat), to tell a reused pid."""
    fields = _stat(pid)
    return fields[19].decode() if fields else None


def process_alive(pid: int, start: str | None) -> bool:
    """Whether `pid` still runs the process that started at `start`. A zombie is dead: its
    parent (the init of a container, say) may take a while to reap it."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive, and not ours to judge further
        return True
    fields = _stat(pid)
    if fields is None:  # no /proc: the signal test is all there is
        return True
    return fields[0] not in (b"Z", b"X") and (start is None or fields[19].decode() == start)


class Liveness:
    """The heartbeat files of one storage file, and the verdict on other drivers' trials."""

    def __init__(self, anchor: Path, interval: float, grace: float | None) -> None:
        self.folder = anchor.with_name(anchor.name + HEARTBEATS_SUFFIX)
        self.stale_after = grace if grace is not None else 3 * interval
        self.host = host_name()
        self.pid = os.getpid()
        self.start = process_start(self.pid)

    def claim(self, study: Any, trial_id: int) -> None:
        """Mark the trial as run by this process: its heartbeat file first, so that a trial with
        owner attributes always has one while its owner lives."""
        from expyrun.tune.optuna_compat import set_system_attrs

        self.folder.mkdir(parents=True, exist_ok=True)
        self._path(trial_id).touch()
        set_system_attrs(study, trial_id, {OWNER: {"host": self.host, "pid": self.pid, "start": self.start}})

    def beat(self, trial_ids: list[int]) -> None:
        for trial_id in trial_ids:
            with contextlib.suppress(OSError):
                os.utime(self._path(trial_id))

    def release(self, trial_id: int) -> None:
        with contextlib.suppress(OSError):
            self._path(trial_id).unlink()

    def is_dead(self, trial: Any) -> bool:
        """Whether a RUNNING trial's driver is gone. Trials without owner attributes (run by plain
        Optuna, or by an expyrun that just asked for them) are never judged."""
        owner = trial.system_attrs.get(OWNER)
        if not isinstance(owner, dict) or "pid" not in owner:
            return False
        if owner.get("host") == self.host:
            if owner["pid"] == self.pid and owner.get("start") == self.start:
                return False  # ours: the driver knows its own trials
            return not process_alive(int(owner["pid"]), owner.get("start"))
        try:
            age = time.time() - self._path(trial._trial_id).stat().st_mtime
        except FileNotFoundError:
            return True
        return age > self.stale_after

    def _path(self, trial_id: int) -> Path:
        return self.folder / str(trial_id)


def owner_of(trial: Any) -> str:
    """`process PID on HOST` for messages about a trial's driver."""
    owner = trial.system_attrs.get(OWNER) or {}
    return f"process {owner.get('pid')} on {owner.get('host')}"
