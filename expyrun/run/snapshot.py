"""Code snapshot: the entry point's top-level package (or module file) copied into the run folder.

Files are stored once, read-only, in a content-addressed store beside the runs
(`{output_dir}/.expyrun/store/`) and hard-linked into each run folder: a sweep of hundreds of
launches of unchanged code costs directory entries, not copies, and every run folder still
holds complete files that survive deleting any other run (or the store). A stat index skips
re-hashing files whose size, mtime, inode and ctime did not change.

A store file is trusted only while it is as expyrun last saw it: mtime 0, its size, and the inode
and ctime recorded after expyrun last linked it. An edit that restores the mtime (a bit flip then
`touch`, a `cp -a` over it) still changes the ctime, so the file is hashed again before it is
served, and replaced when its bytes are not its name. Linking changes the ctime too, so after a
sweep (or a launch beside this one) the next launch re-reads the store files once: the price of
never serving a corrupted file. A link the file system refuses (ext4's 65,000 links to the one
empty file, another file system) is replaced by a copy: a run folder is complete either way.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import stat
import threading
import time
from pathlib import Path
from typing import Any, BinaryIO

SKIPPED_DIRS = {"__pycache__", ".git"}


class Snapshot:
    """What a snapshot copied: counts, one entry per file (path and digest), what it left out."""

    def __init__(self) -> None:
        self.files = 0
        self.bytes = 0
        self.entries: list[str] = []
        self.skipped: list[str] = []  # files over `__max_file_mb__`
        self.loops: list[str] = []  # links back to a folder being copied: not followed
        self.layout: list[tuple[str, str, str]] = []  # ("d" | "f" | "l", relative path, link text)
        self.seconds = 0.0

    def as_record(self) -> dict[str, Any]:
        digest = hashlib.sha256("".join(sorted(self.entries)).encode()).hexdigest()
        return {
            "files": self.files,
            "bytes": self.bytes,
            "sha256": digest,
            "skipped": self.skipped,
            "loops": self.loops,
            "duration_s": round(self.seconds, 4),
        }


class _Store:
    """Read-only files named by the sha256 of their bytes, plus a stat index: source path -> signature
    and digest, and store file -> (inode, ctime) as expyrun last left it.

    The digest is always that of the bytes copied into the store, computed while copying them: a
    source replaced or edited while it is read (an editor's temp file + rename, `git checkout`) can
    never put one version's bytes under another version's name. The index only spares re-reading a
    source whose signature did not change between the start and the end of the copy it records.
    """

    def __init__(self, root: Path) -> None:
        self.root = str(root)
        self.index_file = root / "index.json"
        try:
            self.index: dict[str, list[Any]] = json.loads(self.index_file.read_text())  # [*signature, digest]
        except (OSError, ValueError):
            self.index = {}
        self.changed = False

    def link(self, source: str, info: os.stat_result, target: str) -> str:
        """Put `source` in the store (once) and hard-link it to `target`; returns its digest.

        Store files carry mtime 0: a store file edited in place (root ignores the read-only mode)
        shows another mtime or size, and is replaced by a fresh copy before it is linked again, so
        an edit of one run's snapshot never reaches later runs. The store may be deleted meanwhile
        by another process (`rm -rf outputs/.expyrun`): each step is retried a few times.
        """
        executable = bool(info.st_mode & stat.S_IXUSR)
        cached = self.index.get(source)
        if cached is not None and cached[:4] == _signature(info):
            stored = self._stored(cached[4], executable)
            if self._link_if_intact(stored, str(cached[4]), target, info.st_size, executable):
                return str(cached[4])
        for attempt in range(_ATTEMPTS):
            try:
                return self._copy_in(source, target, executable)
            except (FileNotFoundError, FileExistsError):  # the store vanished under us: start over
                if attempt == _ATTEMPTS - 1:
                    raise
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(target)
        raise AssertionError("unreachable")

    def digest(self, source: str, info: os.stat_result) -> str:
        """The sha256 of `source` without storing it: from the index when its signature matches."""
        cached = self.index.get(source)
        if cached is not None and cached[:4] == _signature(info):
            return str(cached[4])
        hasher = hashlib.sha256()
        with open(source, "rb") as reader:
            while chunk := reader.read(1 << 20):
                hasher.update(chunk)
        return hasher.hexdigest()

    def _stored(self, digest: str, executable: bool) -> str:
        return f"{self.root}/{digest[:2]}/{digest}{'.x' if executable else ''}"

    def _copy_in(self, source: str, target: str, executable: bool) -> str:
        os.makedirs(self.root, exist_ok=True)
        temporary = f"{self.root}/.{os.getpid()}.{threading.get_ident()}.tmp"
        try:
            try:
                reader = open(source, "rb")  # noqa: SIM115 (closed by the with below)
            except FileNotFoundError:
                raise _Vanished from None
            with reader:
                before = os.fstat(reader.fileno())
                digest = _copy_hashing(reader, temporary)
                after = os.fstat(reader.fileno())
            stored = self._stored(digest, executable)
            if self._link_if_intact(stored, digest, target, after.st_size, executable):
                return digest
            os.chmod(temporary, 0o555 if executable else 0o444)
            os.utime(temporary, ns=(0, 0))
            os.makedirs(os.path.dirname(stored), exist_ok=True)
            os.replace(temporary, stored)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)
        self._link(stored, target, executable)
        if _signature(before) == _signature(after) and os.stat(source).st_ino == after.st_ino:
            self.index[source] = [*_signature(after), digest]
            self.changed = True
        return digest

    def _link_if_intact(self, stored: str, digest: str, target: str, size: int, executable: bool) -> bool:
        """Link (or copy) `stored` to `target` when it still holds the bytes its name says; False when
        it is missing or was changed (it is then replaced by a fresh copy of the source)."""
        try:
            info = os.stat(stored)
        except FileNotFoundError:
            return False
        if info.st_mtime_ns != 0 or info.st_size != size:  # edited in place (root ignores the mode)
            return False
        seen = self.index.get(stored)
        if seen != [info.st_ino, info.st_ctime_ns] and _sha256(stored) != digest:  # changed, mtime restored
            return False
        try:
            self._link(stored, target, executable)
        except FileNotFoundError:  # the store was deleted meanwhile
            return False
        return True

    def _link(self, stored: str, target: str, executable: bool) -> None:
        """Hard-link `stored` to `target` and note the store file's inode and ctime (linking changes
        it); a link the file system refuses becomes a copy."""
        try:
            os.link(stored, target)
        except OSError as error:  # too many links (EMLINK), another file system: a copy is as complete
            if isinstance(error, (FileNotFoundError, FileExistsError)):
                raise
            import shutil  # (only for a copy: shutil loads bz2, lzma and zlib, ~2 ms of every launch)

            shutil.copyfile(stored, target)
            os.chmod(target, 0o555 if executable else 0o444)
            return
        linked = os.stat(target)
        self.index[stored] = [linked.st_ino, linked.st_ctime_ns]
        self.changed = True

    def save(self) -> None:
        """The index is a cache: losing it (store deleted, disk full) only costs re-reading next time."""
        if not self.changed:
            return
        temporary = self.index_file.with_name(f".index.{os.getpid()}.tmp")
        try:
            temporary.write_text(json.dumps(self.index))
            os.replace(temporary, self.index_file)
        except OSError:
            with contextlib.suppress(OSError):
                temporary.unlink()


_ATTEMPTS = 5


class _Vanished(Exception):
    """A source file removed while the snapshot was taken (an editor's temp file): not part of the code."""


def _signature(info: os.stat_result) -> list[int]:
    return [info.st_size, info.st_mtime_ns, info.st_ino, info.st_ctime_ns]


def _copy_hashing(reader: BinaryIO, destination: str) -> str:
    """Copy `reader` to a new file `destination`; the sha256 of exactly the bytes written."""
    hasher = hashlib.sha256()
    with open(destination, "xb") as writer:
        while chunk := reader.read(1 << 20):
            hasher.update(chunk)
            writer.write(chunk)
    return hasher.hexdigest()


def _sha256(path: str) -> str | None:
    """The sha256 of a file's bytes; None when it cannot be read."""
    hasher = hashlib.sha256()
    try:
        with open(path, "rb") as reader:
            while chunk := reader.read(1 << 20):
                hasher.update(chunk)
    except OSError:
        return None
    return hasher.hexdigest()


class _Copy:
    """What one snapshot walk needs at hand."""

    def __init__(self, store: _Store, limit: int, excluded: set[str], dry: bool = False) -> None:
        self.dry = dry  # only compute what the snapshot's sha256 would be: copy nothing
        self.store = store
        self.snapshot = Snapshot()
        self.limit = limit
        self.ignored: set[str] = set()
        self.excluded = excluded  # real paths never copied: the output folder when inside the package
        self.package = ""
        self.walking: set[tuple[int, int]] = set()  # (device, inode) of folders being copied


def take_snapshot(
    source: Path,
    run_dir: Path,
    store_root: Path,
    max_file_mb: float,
    output_dir: Path | None = None,
    ignored: set[str] | None = None,
    dry: bool = False,
    name: str | None = None,
) -> Snapshot:
    """Copy the package folder or module file `source` into `run_dir`.

    `output_dir` is left out when it lies inside the package (else the snapshot would copy itself),
    and so are the `ignored` paths (what git ignores). `dry`: copy nothing, only compute the record
    (`expyrun --needed` compares code by its sha256). `name`: the copy's name in the run folder
    (default: the source's; a command run's whole `__code__` folder becomes `code/`).
    """
    started = time.perf_counter()
    excluded = {os.path.realpath(output_dir)} if output_dir is not None else set()
    copy = _Copy(_Store(store_root), int(max_file_mb * 1024 * 1024), excluded, dry)
    name = name or source.name
    target = str(run_dir / name)
    if source.is_file():
        _copy_file(str(source), os.stat(source), target, name, copy)
    else:
        copy.ignored = ignored or set()
        copy.package = str(source.resolve())
        _copy_tree(copy.package, target, name, copy)
    if not dry:
        copy.store.save()
    copy.snapshot.seconds = time.perf_counter() - started
    return copy.snapshot


def _copy_file(source: str, info: os.stat_result, target: str, relative: str, copy: _Copy) -> None:
    if info.st_size > copy.limit:
        copy.snapshot.skipped.append(relative)
        return
    try:
        digest = copy.store.digest(source, info) if copy.dry else copy.store.link(source, info, target)
    except (_Vanished, FileNotFoundError) as error:
        if not isinstance(error, _Vanished) and os.path.exists(source):
            raise
        return
    copy.snapshot.layout.append(("f", relative, ""))
    copy.snapshot.files += 1
    copy.snapshot.bytes += info.st_size
    copy.snapshot.entries.append(f"{relative}\0{digest}\n")


def _copy_tree(root: str, target: str, relative: str, copy: _Copy) -> None:
    """Copy the folder `root`; a folder reached again through links while being copied is a loop."""
    info = os.stat(root)
    key = (info.st_dev, info.st_ino)
    if key in copy.walking:
        copy.snapshot.loops.append(relative)
        return
    copy.walking.add(key)
    try:
        if not copy.dry:
            os.mkdir(target)
        copy.snapshot.layout.append(("d", relative, ""))
        with os.scandir(root) as entries:
            ordered = sorted(entries, key=lambda e: e.name)
        for entry in ordered:
            name = entry.name
            if name in SKIPPED_DIRS or name.endswith(".pyc") or entry.path in copy.ignored:
                continue
            if copy.excluded and os.path.realpath(entry.path) in copy.excluded:
                continue
            rel = f"{relative}/{name}"
            destination = f"{target}/{name}"
            if entry.is_symlink():
                _copy_link(entry.path, destination, rel, copy)
            elif entry.is_dir():
                _copy_tree(entry.path, destination, rel, copy)
            elif entry.is_file():
                try:
                    info = entry.stat()
                except FileNotFoundError:  # removed since the folder was listed (an editor's temp file)
                    continue
                _copy_file(entry.path, info, destination, rel, copy)
    finally:
        copy.walking.discard(key)


def _copy_link(path: str, target: str, rel: str, copy: _Copy) -> None:
    """A link inside the package stays a link; one pointing outside is replaced by what it points to."""
    resolved = os.path.realpath(path)
    if resolved == copy.package or resolved.startswith(copy.package + os.sep):
        link_text = os.readlink(path)
        if not copy.dry:
            os.symlink(link_text, target)
        copy.snapshot.layout.append(("l", rel, link_text))
        copy.snapshot.entries.append(f"{rel}\0-> {link_text}\n")
    elif os.path.isdir(resolved):
        _copy_tree(resolved, target, rel, copy)
    elif os.path.isfile(resolved):
        _copy_file(resolved, os.stat(resolved), target, rel, copy)


def clone_snapshot(snapshot: Snapshot, from_dir: Path, to_dir: Path) -> None:
    """Give `to_dir` the snapshot already taken into `from_dir` (a sweep's code is one code): hard
    links to the same read-only store files, no walk of the source and no hashing."""
    for kind, relative, link_text in snapshot.layout:
        target = to_dir / relative
        if kind == "d":
            target.mkdir()
        elif kind == "l":
            target.symlink_to(link_text)
        else:
            try:
                os.link(from_dir / relative, target)
            except OSError:  # another file system, too many links: a copy is as complete
                import shutil

                shutil.copy2(from_dir / relative, target)
