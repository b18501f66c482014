"""Git state of the code's repository: commit, branch, dirty flag, remote, ignored files, `git diff HEAD`.

The `git` command is called directly (one `status` call gives commit, branch and dirtiness):
GitPython would add a fifth of a second of imports to every launch for the same answers. The
calls of a launch start together, before the snapshot, and are read when needed, so their
latency overlaps expyrun's own work; outside a work tree (no `.git` above the code, no `GIT_DIR`)
git is not called at all.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from expyrun.run.freeze import strip_credentials

if TYPE_CHECKING:
    import subprocess

DIFF_FILE = "git.diff"


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


class GitProbe:
    """The git calls of one launch, started at once and read when needed."""

    def __init__(self, code: Path, package: Path | None = None) -> None:
        self.code = code
        self.package = package
        self.calls: dict[str, subprocess.Popen[bytes]] = {}
        self.outputs: dict[str, bytes | None] = {}
        if not in_work_tree(code):
            return
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

    def state(self) -> GitState | None:
        """The state of the work tree holding the code; None outside a repository or without git."""
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
        remote_out = (self._output("remote") or b"").decode().strip()
        remote = strip_credentials(remote_out) if remote_out else None
        return GitState(commit, branch, dirty, remote)

    def close(self) -> None:
        """Reap calls nobody read (a launch that stopped early)."""
        for call in self.calls.values():
            if call.returncode is None:
                call.kill()
                call.wait(timeout=10)


def write_diff(code: Path, run_dir: Path) -> None:
    """`git diff HEAD` of the repository into the run folder (only called when dirty)."""
    import subprocess

    diff = subprocess.run(["git", "-C", str(code), "diff", "HEAD", "--binary"], capture_output=True, check=False)
    if diff.returncode == 0 and diff.stdout:
        (run_dir / DIFF_FILE).write_bytes(diff.stdout)
