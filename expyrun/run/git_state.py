"""Git state of the code's repository: commit, branch, dirty flag, remote, and `git diff HEAD`.

The `git` command is called directly (one `status` call gives commit, branch and dirtiness):
GitPython would add a fifth of a second of imports to every launch for the same answers.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from expyrun.run.freeze import strip_credentials

DIFF_FILE = "git.diff"


def _git(code: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["git", "-C", str(code), *args], capture_output=True, check=False)


@dataclass
class GitState:
    commit: str | None
    branch: str | None
    dirty: bool
    remote: str | None

    def as_record(self) -> dict[str, Any]:
        return {"commit": self.commit, "branch": self.branch, "dirty": self.dirty, "remote": self.remote}


def git_state(code: Path) -> GitState | None:
    """The state of the work tree holding `code`; None outside a repository or without git."""
    if shutil.which("git") is None:
        return None
    status = _git(code, "status", "--porcelain=v2", "--branch", "--untracked-files=no")
    if status.returncode != 0:
        return None
    commit = branch = None
    dirty = False
    for line in status.stdout.decode(errors="replace").splitlines():
        if line.startswith("# branch.oid "):
            oid = line.split()[2]
            commit = None if oid == "(initial)" else oid
        elif line.startswith("# branch.head "):
            head = line.split(maxsplit=2)[2]
            branch = None if head == "(detached)" else head
        elif not line.startswith("#"):
            dirty = True
    remote_out = _git(code, "config", "--get", "remote.origin.url").stdout.decode().strip()
    remote = strip_credentials(remote_out) if remote_out else None
    return GitState(commit, branch, dirty, remote)


def write_diff(code: Path, run_dir: Path) -> None:
    """`git diff HEAD` of the repository into the run folder (only called when dirty)."""
    diff = _git(code, "diff", "HEAD", "--binary")
    if diff.returncode == 0 and diff.stdout:
        (run_dir / DIFF_FILE).write_bytes(diff.stdout)


def ignored_files(folder: Path) -> set[Path] | None:
    """Files and folders under `folder` that git ignores; None when it is not in a work tree."""
    if shutil.which("git") is None:
        return None
    listed = _git(folder, "ls-files", "-z", "--others", "--ignored", "--exclude-standard", "--directory", ".")
    if listed.returncode != 0:
        return None
    ignored = set()
    for entry in listed.stdout.decode(errors="surrogateescape").split("\0"):
        if entry:  # paths come relative to `folder`
            ignored.add((folder / entry.rstrip("/")).resolve())
    return ignored
