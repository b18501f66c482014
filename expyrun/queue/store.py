"""The queue folder's one owner: entries added atomically, claimed by exactly one worker, listed in order.

Why a folder of files: any number of workers (and `expyrun CONFIG --queue`) on one machine share it
with no daemon and no database. An entry is one small JSON file (`run_dir`, `priority`,
`queued_at`) whose name sorts in execution order (priority, higher first; then first in, first out);
it is written under a temporary name and renamed in (atomic: a worker never reads half an entry).

Claiming is an exclusive, non-blocking `fcntl.flock` on the entry file, checked after locking to
still be the file at that name (another worker may have finished and removed it meanwhile). The
lock is held while the run executes: the worker passes the descriptor to the run's node process,
so the lock lasts as long as the run's execution does and the kernel releases it when they are gone.
An entry whose lock is free is waiting, whether it never ran or its worker died (SIGKILL): the
next worker claims it and the node executes the folder again (`attempt` + 1). A finished entry is
removed (unlink, then unlock), so each queued run is executed exactly once per attempt.

Costs: listing is one `scandir` and one small read per entry; a claim one `open` + `flock`.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from expyrun.errors import UsageError

ENV_FOLDER = "EXPYRUN_QUEUE"
_PRIORITY_BOUND = 10**9
_SUFFIX = ".json"


def queue_folder() -> Path:
    """The machine's queue for this user: `$EXPYRUN_QUEUE`, else `~/.expyrun/queue`."""
    configured = os.environ.get(ENV_FOLDER)
    return Path(configured) if configured else Path.home() / ".expyrun" / "queue"


def check_priority(text: str) -> int:
    """`--priority N`: an integer within ±10^9 (higher runs first)."""
    try:
        priority = int(text)
    except ValueError:
        raise UsageError(f"--priority {text}: expected an integer", "higher runs first; default 0") from None
    if abs(priority) >= _PRIORITY_BOUND:
        raise UsageError(
            f"--priority {text}: out of range", f"between -{_PRIORITY_BOUND - 1} and {_PRIORITY_BOUND - 1}"
        )
    return priority


def writable_folder() -> Path:
    """The queue folder, made if missing; a UsageError (exit 2, nothing changed) if it cannot be written."""
    folder = queue_folder()
    hint = f"set ${ENV_FOLDER} to a writable folder"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UsageError(
            f"queue folder {folder}: {error.strerror}", f"set ${ENV_FOLDER} to a writable folder"
        ) from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise UsageError(f"queue folder {folder} is not writable", hint)
    return folder


@dataclass(frozen=True)
class Entry:
    """One queued run folder, as its entry file says."""

    path: Path
    run_dir: Path
    priority: int
    queued_at: str


def add(folder: Path, run_dir: Path, priority: int, queued_at: str) -> Entry:
    """Put `run_dir` in the queue (atomically: written aside, renamed in)."""
    key = f"{_PRIORITY_BOUND - priority:010d}-{time.time_ns():020d}-{os.getpid()}-{run_dir.name}"
    data = {"run_dir": str(run_dir), "priority": priority, "queued_at": queued_at}
    aside = folder / f".{key}.tmp"
    aside.write_text(json.dumps(data) + "\n", encoding="utf-8")
    path = folder / f"{key}{_SUFFIX}"
    os.rename(aside, path)
    return Entry(path, run_dir, priority, queued_at)


def names(folder: Path) -> list[str]:
    """The entry files' names in execution order (their names sort so): no file is read."""
    try:
        return sorted(name for name in os.listdir(folder) if name.endswith(_SUFFIX) and not name.startswith("."))
    except OSError:
        return []


def entries(folder: Path) -> list[Entry]:
    """The entries in execution order (unreadable files skipped: a crafted file runs nothing)."""
    found = []
    for name in names(folder):
        entry = _read(folder / name)
        if entry is not None:
            found.append(entry)
    return found


def _read(path: Path) -> Entry | None:
    try:
        data: Any = json.loads(path.read_text(encoding="utf-8"))
        return Entry(path, Path(data["run_dir"]), int(data.get("priority", 0)), str(data.get("queued_at", "")))
    except (OSError, ValueError, KeyError, TypeError):
        return None


class Claim:
    """An entry this process holds: executing it, or about to cancel it."""

    def __init__(self, entry: Entry, fd: int) -> None:
        self.entry = entry
        self.fd: int | None = fd

    def done(self) -> None:
        """The entry is finished (executed, cancelled, given up): removed, then unlocked."""
        with contextlib.suppress(OSError):
            os.unlink(self.entry.path)
        self.release()

    def release(self) -> None:
        """Let go without removing it: the entry waits in the queue again."""
        if self.fd is not None:
            with contextlib.suppress(OSError):
                os.close(self.fd)
            self.fd = None


def try_claim(entry: Entry) -> Claim | None:
    """Hold `entry` (exclusive lock), or None when another process holds it or it is gone."""
    fd = _lock(entry.path)
    return None if fd is None else Claim(entry, fd)


def _lock(path: Path) -> int | None:
    """An exclusive lock on the entry file at `path`, or None when it is held or gone."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        if os.stat(path).st_ino != os.fstat(fd).st_ino:
            raise FileNotFoundError(path)
    except OSError:  # held, or finished and removed by its worker after we opened it
        os.close(fd)
        return None
    return fd


def claim_next(folder: Path) -> Claim | None:
    """The first waiting entry in execution order, held by this process; None when none waits.
    Only the claimed entry is read (a claim costs no more with 10,000 entries queued)."""
    for name in names(folder):
        fd = _lock(folder / name)
        if fd is None:
            continue
        entry = _read(folder / name)
        if entry is None:  # not an entry expyrun wrote: left alone
            os.close(fd)
            continue
        return Claim(entry, fd)
    return None


def is_held(entry: Entry) -> bool:
    """Whether a worker holds the entry now (its run is executing)."""
    try:
        fd = os.open(entry.path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)
    return False
