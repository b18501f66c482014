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

    def as_record(self) -> dict[str, Any]:
        digest = hashlib.sha256("".join(sorted(self.entries)).encode()).hexdigest()
        return {"files": self.files, "bytes": self.bytes, "sha256": digest, "skipped": self.skipped}


class _Store:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.index_file = root / "index.json"
        try:
            self.index: dict[str, list] = json.loads(self.index_file.read_text())
        except (OSError, ValueError):
            self.index = {}
        self.changed = False

    def digest(self, path: Path, info: os.stat_result) -> str:
        key = str(path)
        signature = [info.st_size, info.st_mtime_ns, info.st_ino, info.st_ctime_ns]
        cached = self.index.get(key)
        if cached is not None and cached[:4] == signature:
            return cached[4]
        hasher = hashlib.sha256()
        with path.open("rb") as handle:
            while chunk := handle.read(1 << 20):
                hasher.update(chunk)
        digest = hasher.hexdigest()
        self.index[key] = [*signature, digest]
        self.changed = True
        return digest

    def link(self, source: Path, info: os.stat_result, target: Path) -> str:
        """Put `source` in the store (once) and hard-link it to `target`; returns its digest."""
        executable = bool(info.st_mode & stat.S_IXUSR)
        digest = self.digest(source, info)
        stored = self.root / digest[:2] / (digest + (".x" if executable else ""))
        if not stored.exists():
            stored.parent.mkdir(parents=True, exist_ok=True)
            temporary = stored.with_name(f".{stored.name}.{os.getpid()}.tmp")
            shutil.copyfile(source, temporary)
            os.chmod(temporary, 0o555 if executable else 0o444)
            os.replace(temporary, stored)
        try:
            os.link(stored, target)
        except OSError:  # another file system, or too many links: a plain copy is still complete
            shutil.copyfile(stored, target)
            os.chmod(target, 0o555 if executable else 0o444)
        return digest

    def save(self) -> None:
        if self.changed:
            temporary = self.index_file.with_name(f".index.{os.getpid()}.tmp")
            temporary.write_text(json.dumps(self.index))
            os.replace(temporary, self.index_file)


def take_snapshot(source: Path, run_dir: Path, store_root: Path, max_file_mb: float) -> Snapshot:
    """Copy the package folder or module file `source` into `run_dir`."""
    store_root.mkdir(parents=True, exist_ok=True)
    store = _Store(store_root)
    snapshot = Snapshot()
    limit = int(max_file_mb * 1024 * 1024)
    if source.is_file():
        _copy_file(source, run_dir / source.name, source.name, store, snapshot, limit)
    else:
        ignored = ignored_files(source) or set()
        _copy_tree(source.resolve(), run_dir / source.name, source.name, store, snapshot, limit, ignored)
    store.save()
    return snapshot


def _copy_file(source: Path, target: Path, relative: str, store: _Store, snapshot: Snapshot, limit: int) -> None:
    info = source.stat()
    if info.st_size > limit:
        snapshot.skipped.append(relative)
        return
    digest = store.link(source, info, target)
    snapshot.files += 1
    snapshot.bytes += info.st_size
    snapshot.entries.append(f"{relative}\0{digest}\n")


def _copy_tree(
    root: Path, target: Path, relative: str, store: _Store, snapshot: Snapshot, limit: int, ignored: set[Path]
) -> None:
    target.mkdir()
    for entry in sorted(os.scandir(root), key=lambda e: e.name):
        path = Path(entry.path)
        name = entry.name
        rel = f"{relative}/{name}"
        if name in SKIPPED_DIRS or name.endswith(".pyc") or path in ignored:
            continue
        if entry.is_symlink():
            _copy_link(path, root, target / name, rel, store, snapshot, limit, ignored)
        elif entry.is_dir():
            _copy_tree(path, target / name, rel, store, snapshot, limit, ignored)
        elif entry.is_file():
            _copy_file(path, target / name, rel, store, snapshot, limit)


def _copy_link(
    path: Path, root: Path, target: Path, rel: str, store: _Store, snapshot: Snapshot, limit: int, ignored: set[Path]
) -> None:
    """A link inside the package stays a link; one pointing outside is replaced by what it points to."""
    resolved = path.resolve()
    package = _package_root(root, rel)
    if resolved.is_relative_to(package):
        link_text = os.readlink(path)
        target.symlink_to(link_text)
        snapshot.entries.append(f"{rel}\0-> {link_text}\n")
    elif resolved.is_dir():
        _copy_tree(resolved, target, rel, store, snapshot, limit, ignored)
    elif resolved.is_file():
        _copy_file(resolved, target, rel, store, snapshot, limit)


def _package_root(folder: Path, rel: str) -> Path:
    """The package's top folder, from any folder inside it and the link's relative name."""
    depth = rel.count("/") - 1
    for _ in range(depth):
        folder = folder.parent
    return folder
