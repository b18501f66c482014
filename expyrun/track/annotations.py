"""`annotations.json`: a run's tags and note (SPEC 12.2), the one owner of that file.

Tags and notes are written after the run, by people and scripts, often several at once (a loop of
`expyrun tag` over a sweep, two terminals): every edit takes an exclusive `flock` on the file,
reads it, and replaces it by an atomic rename, so concurrent edits never lose one and a reader
(`list`, `show`, `expyrun.runs()`) never sees half a file without taking any lock. The lock is
on the file itself: after the lock is granted the path is checked to still name the locked file
(an edit that renamed a new one in meanwhile makes the next edit lock that one instead).

The file: `{"schema": 1, "tags": [...], "note": "..."}`; absent means no tags and no note.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from expyrun.config.tags import check_launch_tags, check_tag

__all__ = ["ANNOTATIONS_FILE", "Annotations", "check_launch_tags", "check_tag", "edit", "read", "renote", "retag"]

ANNOTATIONS_FILE = "annotations.json"
SCHEMA = 1


@dataclass(frozen=True)
class Annotations:
    """What people said of a run: tags (in the order added, no repeats) and a note."""

    tags: tuple[str, ...] = ()
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"schema": SCHEMA, "tags": list(self.tags), "note": self.note}


def _parse(data: bytes) -> Annotations:
    """The annotations a file's bytes hold; empty, foreign or damaged content holds none."""
    try:
        raw = json.loads(data) if data.strip() else {}
    except (ValueError, RecursionError):
        return Annotations()
    if not isinstance(raw, dict):
        return Annotations()
    tags = raw.get("tags")
    note = raw.get("note")
    return Annotations(
        tuple(dict.fromkeys(t for t in tags if isinstance(t, str))) if isinstance(tags, list) else (),
        note if isinstance(note, str) else "",
    )


def read(run_dir: str | Path) -> Annotations:
    """A run's annotations, without a lock (the file is only ever replaced whole)."""
    try:
        with open(os.path.join(run_dir, ANNOTATIONS_FILE), "rb") as handle:
            return _parse(handle.read())
    except OSError:
        return Annotations()


def edit(run_dir: str | Path, change: Callable[[Annotations], Annotations]) -> Annotations:
    """Apply `change` to the run's annotations under the file's lock; returns what was written."""
    import fcntl

    path = os.path.join(run_dir, ANNOTATIONS_FILE)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            if os.fstat(fd).st_ino == os.stat(path).st_ino:
                break
        except FileNotFoundError:  # renamed away and not yet replaced: lock the new one
            pass
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)
    try:
        chunks = []
        while chunk := os.read(fd, 1 << 16):
            chunks.append(chunk)
        updated = change(_parse(b"".join(chunks)))
        temporary = f"{path}.{os.getpid()}.tmp"
        try:
            with open(temporary, "w", encoding="utf-8") as handle:
                handle.write(json.dumps(updated.to_dict(), ensure_ascii=False, indent=2) + "\n")
            os.replace(temporary, path)
        except BaseException:
            if os.path.exists(temporary):
                os.unlink(temporary)
            raise
        return updated
    finally:
        os.close(fd)  # releases the lock, after the new file is in place


def retag(add: Iterable[str], remove: Iterable[str]) -> Callable[[Annotations], Annotations]:
    """The change adding `add` and removing `remove` (removing a tag the run lacks is no error)."""
    adding, removing = list(add), set(remove)

    def change(current: Annotations) -> Annotations:
        tags = [t for t in dict.fromkeys([*current.tags, *adding]) if t not in removing]
        return Annotations(tuple(tags), current.note)

    return change


def renote(text: str, append: bool) -> Callable[[Annotations], Annotations]:
    """The change setting the note to `text`, or adding it as a new line (`append`)."""

    def change(current: Annotations) -> Annotations:
        note = f"{current.note}\n{text}" if append and current.note else text
        return Annotations(current.tags, note)

    return change


def write_launch_tags(run_dir: str | Path, value: Any) -> None:
    """The tags of `__run__.__tags__` (checked with the config), written when a run folder is made;
    nothing when there are none."""
    tags = check_launch_tags(value, "__run__.__tags__")
    if tags:
        edit(run_dir, retag(tags, ()))
