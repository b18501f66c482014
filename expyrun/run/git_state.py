"""Git state of the code's repository: commit, branch, dirty flag, remote, ignored files, `git diff HEAD`.

The `git` command is called directly (one `status` call gives commit, branch and dirtiness):
GitPython would add a fifth of a second of imports to every launch for the same answers. The
calls of a launch start together, before the snapshot, and are read when needed, so their
latency overlaps expyrun's own work; outside a work tree (no `.git` above the code, no `GIT_DIR`)
git is not called at all.

The state describes the code that runs. Files of the snapshotted package that git does not track
(and does not ignore) are copied and run: they make the state dirty and are added to `git.diff`
as new files. A rerun of a stored config runs an earlier run's snapshot, not the work tree that
holds it: its state is that run's recorded state (and `git.diff`), whatever HEAD is today.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    import subprocess

DIFF_FILE = "git.diff"
CODE_FOLDER = "code"  # a command run's copy of `__code__` inside its run folder
MAX_UNTRACKED_DIFFS = 1000  # untracked files added to git.diff one by one; more are only named


class GitState(NamedTuple):
    commit: str | None
    branch: str | None
    dirty: bool
    remote: str | None

    def as_record(self) -> dict[str, Any]:
        return {"commit": self.commit, "branch": self.branch, "dirty": self.dirty, "remote": self.remote}


def in_work_tree(folder: Path) -> bool:
    """Whether git could find a repository for `folder`: a `.git` above it, or one named by GIT_DIR."""
    if "GIT_DIR" in os.environ:
        return True
    current = os.path.abspath(folder)
    while True:
        if os.path.exists(os.path.join(current, ".git")):
            return True
        parent = os.path.dirname(current)
        if parent == current:
            return False
        current = parent


def origin_run(code: Path) -> Path | None:
    """The run folder whose snapshot `code` is (a stored config's `__run__.__code__`), else None:
    a folder whose `run.json` records a snapshot (a project's own `run.json` does not)."""
    for folder in (code, code.parent if code.name == CODE_FOLDER else None):
        if folder is not None and (folder / "config.yml").is_file():
            record = _record(folder)
            if record is not None and isinstance(record.get("snapshot"), dict):
                return folder
    return None


def _record(run_dir: Path) -> dict[str, Any] | None:
    """A run folder's `run.json`, read by its owner; None when there is none (or it is not a record)."""
    from expyrun.run.record import load_record

    return load_record(run_dir) or None


class GitProbe:
    """The git calls of one launch, started at once and read when needed."""

    def __init__(self, code: Path, package: Path | None = None) -> None:
        self.code = code
        self.package = package
        self.calls: dict[str, subprocess.Popen[bytes]] = {}
        self.outputs: dict[str, bytes | None] = {}
        self.origin = origin_run(code)
        if self.origin is not None or not in_work_tree(code):
            return  # an earlier run's snapshot: its record says where it came from
        import shutil
        import subprocess

        if shutil.which("git") is None:
            return

        def start(key: str, folder: Path, *args: str) -> None:
            self.calls[key] = subprocess.Popen(
                ["git", "-C", str(folder), *args], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                stdin=subprocess.DEVNULL,
            )  # fmt: skip

        start("status", code, "status", "--porcelain=v2", "--branch", "--untracked-files=no")
        start("remote", code, "config", "--get", "remote.origin.url")
        if package is not None and package.is_dir():
            start(
                "ignored", package, "ls-files", "-z", "--others", "--ignored", "--exclude-standard", "--directory", "."
            )
        if package is not None and package.exists():  # a package folder, or a single module file
            folder, name = (package, ".") if package.is_dir() else (package.parent, package.name)
            start("untracked", folder, "ls-files", "-z", "--others", "--exclude-standard", "--full-name", "--", name)

    def _output(self, key: str) -> bytes | None:
        if key not in self.outputs:
            call = self.calls.get(key)
            out = call.communicate(timeout=60)[0] if call is not None else None
            self.outputs[key] = out if call is not None and call.returncode == 0 else None
        return self.outputs[key]

    def ignored(self) -> set[str] | None:
        """Real paths of the files and folders under the package that git ignores; None outside a work tree."""
        listed = self._output("ignored")
        if listed is None or self.package is None:
            return None
        base = str(self.package.resolve())
        return {
            os.path.realpath(os.path.join(base, entry.rstrip("/")))
            for entry in listed.decode(errors="surrogateescape").split("\0")
            if entry
        }

    def untracked(self) -> list[str]:
        """Files of the package that git neither tracks nor ignores (copied, so part of what runs),
        relative to the repository's top folder."""
        listed = self._output("untracked")
        if not listed:
            return []
        return sorted(entry for entry in listed.decode(errors="surrogateescape").split("\0") if entry)

    def state(self) -> GitState | None:
        """The state of the code that runs; None outside a repository or without git."""
        if self.origin is not None:
            return _recorded_state(self.origin)
        status = self._output("status")
        if status is None:
            return None
        commit = branch = None
        dirty = False
        for line in status.decode(errors="replace").splitlines():
            if line.startswith("# branch.oid "):
                oid = line.split()[2]
                commit = None if oid == "(initial)" else oid
            elif line.startswith("# branch.head "):
                head = line.split(maxsplit=2)[2]
                branch = None if head == "(detached)" else head
            elif not line.startswith("#"):
                dirty = True
        dirty = dirty or bool(self.untracked())
        remote_out = (self._output("remote") or b"").decode().strip()
        if not remote_out:
            return GitState(commit, branch, dirty, None)
        from expyrun.run.freeze import strip_credentials  # (only here: a --debug launch never asks git)

        return GitState(commit, branch, dirty, strip_credentials(remote_out))

    def close(self) -> None:
        """Reap calls nobody read (a launch that stopped early)."""
        for call in self.calls.values():
            if call.returncode is None:
                call.kill()
                call.wait(timeout=10)

    def write_diff(self, run_dir: Path) -> None:
        """`git.diff` of the code that runs (only called when dirty): the earlier run's for a rerun,
        else `git diff HEAD` plus the untracked files of the package as new files."""
        if self.origin is not None:
            import shutil

            if (self.origin / DIFF_FILE).is_file():
                shutil.copyfile(self.origin / DIFF_FILE, run_dir / DIFF_FILE)
            return
        write_diff(self.code, run_dir, self.untracked())


def _recorded_state(run_dir: Path) -> GitState | None:
    """The git state an earlier run recorded for its snapshot."""
    recorded = (_record(run_dir) or {}).get("git")
    if not isinstance(recorded, dict):
        return None
    return GitState(recorded.get("commit"), recorded.get("branch"), bool(recorded.get("dirty")), recorded.get("remote"))


def write_diff(code: Path, run_dir: Path, untracked: Sequence[str] = ()) -> None:
    """`git diff HEAD` of the repository into the run folder (only called when dirty), followed by
    each untracked file of the package as a new file (`git apply` recreates them)."""
    import subprocess

    diff = subprocess.run(["git", "-C", str(code), "diff", "HEAD", "--binary"], capture_output=True, check=False)
    text = diff.stdout if diff.returncode == 0 else b""
    if untracked:
        top = subprocess.run(["git", "-C", str(code), "rev-parse", "--show-toplevel"], capture_output=True,
                             check=False).stdout.decode(errors="surrogateescape").strip()  # fmt: skip
        for name in untracked[:MAX_UNTRACKED_DIFFS]:  # `--no-index` exits 1 when the files differ
            new = subprocess.run(["git", "-C", top, "diff", "--no-index", "--binary", "--", "/dev/null", name],
                                 capture_output=True, check=False)  # fmt: skip
            text += new.stdout
        if len(untracked) > MAX_UNTRACKED_DIFFS:
            text += f"# expyrun: {len(untracked) - MAX_UNTRACKED_DIFFS} more untracked files not shown\n".encode()
    if text:
        (run_dir / DIFF_FILE).write_bytes(text)
