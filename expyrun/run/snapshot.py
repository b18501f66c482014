"""Code snapshot: the entry point's top-level package (or module file) copied into the run folder.

Files are stored once, read-only, in a content-addressed store beside the runs
(`{output_dir}/.expyrun/store/`) and hard-linked into each run folder: a sweep of hundreds of
launches of unchanged code costs directory entries, not copies, and every run folder still
holds complete files that survive deleting any other run (or the store). A stat index skips
re-hashing files whose size, mtime and inode did not change.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from expyrun.run.git_state import ignored_files

SKIPPED_DIRS = {"__pycache__", ".git"}
STORE = Path(".expyrun") / "store"


@dataclass
class Snapshot:
    files: int = 0
    bytes: int = 0
    entries: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def as_record(self) -> dict[str, Any]:
        digest = hashlib.sha256("".join(sorted(self.entries)).encode()).hexdigest()
        return {
            "files": self.files,
            "bytes": self.bytes,
            "sha256": digest,
            "skipped": self.skipped,
            "duration_s": round(self.seconds, 4),
        }


class _Store:
    """Read-only files named by their sha256, plus a stat index (path -> signature, digest)."""

    def __init__(self, root: Path) -> None:
        self.root = str(root)
        self.index_file = root / "index.json"
        try:
            self.index: dict[str, list] = json.loads(self.index_file.read_text())
        except (OSError, ValueError):
            self.index = {}
        self.changed = False

    def digest(self, path: str, info: os.stat_result) -> str:
        signature = [info.st_size, info.st_mtime_ns, info.st_ino, info.st_ctime_ns]
        cached = self.index.get(path)
        if cached is not None and cached[:4] == signature:
            return cached[4]
        hasher = hashlib.sha256()
        with open(path, "rb") as handle:
            while chunk := handle.read(1 << 20):
                hasher.update(chunk)
        digest = hasher.hexdigest()
        self.index[path] = [*signature, digest]
        self.changed = True
        return digest

    def link(self, source: str, info: os.stat_result, target: str) -> str:
        """Put `source` in the store (once) and hard-link it to `target`; returns its digest.

        Store files carry mtime 0: a store file edited in place (root ignores the read-only mode)
        shows another mtime or size, and is replaced by a fresh copy before it is linked again, so
        an edit of one run's snapshot never reaches later runs.
        """
        executable = bool(info.st_mode & stat.S_IXUSR)
        mode = 0o555 if executable else 0o444
        digest = self.digest(source, info)
        stored = f"{self.root}/{digest[:2]}/{digest}{'.x' if executable else ''}"
        try:
            os.link(stored, target)
            linked = os.stat(target)
            if linked.st_mtime_ns == 0 and linked.st_size == info.st_size:
                return digest
            os.unlink(target)  # the store file was edited: store the source again
        except FileNotFoundError:
            os.makedirs(os.path.dirname(stored), exist_ok=True)
        temporary = f"{stored}.{os.getpid()}.tmp"
        shutil.copyfile(source, temporary)
        os.chmod(temporary, mode)
        os.utime(temporary, ns=(0, 0))
        os.replace(temporary, stored)
        try:
            os.link(stored, target)
        except OSError:  # another file system, or too many links: a plain copy is still complete
            shutil.copyfile(stored, target)
            os.chmod(target, mode)
        return digest

    def save(self) -> None:
        if self.changed:
            temporary = self.index_file.with_name(f".index.{os.getpid()}.tmp")
            temporary.write_text(json.dumps(self.index))
            os.replace(temporary, self.index_file)


@dataclass
class _Copy:
    """What one snapshot walk needs at hand."""

    store: _Store
    snapshot: Snapshot
    limit: int
    ignored: set[str]
    package: str = ""


def take_snapshot(source: Path, run_dir: Path, store_root: Path, max_file_mb: float) -> Snapshot:
    """Copy the package folder or module file `source` into `run_dir`."""
    started = time.perf_counter()
    store_root.mkdir(parents=True, exist_ok=True)
    copy = _Copy(_Store(store_root), Snapshot(), int(max_file_mb * 1024 * 1024), set())
    target = str(run_dir / source.name)
    if source.is_file():
        _copy_file(str(source), os.stat(source), target, source.name, copy)
    else:
        copy.ignored = {str(p) for p in ignored_files(source) or ()}
        copy.package = str(source.resolve())
        _copy_tree(copy.package, target, source.name, copy)
    copy.store.save()
    copy.snapshot.seconds = time.perf_counter() - started
    return copy.snapshot


def _copy_file(source: str, info: os.stat_result, target: str, relative: str, copy: _Copy) -> None:
    if info.st_size > copy.limit:
        copy.snapshot.skipped.append(relative)
        return
    digest = copy.store.link(source, info, target)
    copy.snapshot.files += 1
    copy.snapshot.bytes += info.st_size
    copy.snapshot.entries.append(f"{relative}\0{digest}\n")


def _copy_tree(root: str, target: str, relative: str, copy: _Copy) -> None:
    os.mkdir(target)
    with os.scandir(root) as entries:
        ordered = sorted(entries, key=lambda e: e.name)
    for entry in ordered:
        name = entry.name
        if name in SKIPPED_DIRS or name.endswith(".pyc") or entry.path in copy.ignored:
            continue
        rel = f"{relative}/{name}"
        destination = f"{target}/{name}"
        if entry.is_symlink():
            _copy_link(entry.path, destination, rel, copy)
        elif entry.is_dir():
            _copy_tree(entry.path, destination, rel, copy)
        elif entry.is_file():
            _copy_file(entry.path, entry.stat(), destination, rel, copy)


def _copy_link(path: str, target: str, rel: str, copy: _Copy) -> None:
    """A link inside the package stays a link; one pointing outside is replaced by what it points to."""
    resolved = os.path.realpath(path)
    if resolved == copy.package or resolved.startswith(copy.package + os.sep):
        link_text = os.readlink(path)
        os.symlink(link_text, target)
        copy.snapshot.entries.append(f"{rel}\0-> {link_text}\n")
    elif os.path.isdir(resolved):
        _copy_tree(resolved, target, rel, copy)
    elif os.path.isfile(resolved):
        _copy_file(resolved, os.stat(resolved), target, rel, copy)
