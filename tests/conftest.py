"""Shared fixtures: a project folder with a real package, and the real `expyrun` in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

ENTRY_POINT = """\
import json
import os


def main(name, config):
    print("running", name)
    return {"name": name, "config": config}
"""


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A folder holding a package `pkg` with an entry point `pkg.main:main`."""
    write(tmp_path / "pkg" / "__init__.py", "")
    write(tmp_path / "pkg" / "main.py", ENTRY_POINT)
    return tmp_path


RUN_SECTION = """\
__run__:
  __main__: pkg.main:main
  __name__: demo
  __output_dir__: outputs
"""


def _leaks(name: str) -> bool:
    """Variables of the developer's shell that change what a launched Python or expyrun does."""
    return name.startswith(("PYTHON", "EXPYRUN_"))


@pytest.fixture(autouse=True)
def hermetic_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test sees the environment a user has: no `PYTHONUNBUFFERED`, `PYTHONDONTWRITEBYTECODE`,
    `PYTHONPATH` or `EXPYRUN_*` from the shell that started pytest.

    A developer's shell exporting `PYTHONUNBUFFERED=1` once hid a run child that never flushed C
    `stdio`, and `PYTHONDONTWRITEBYTECODE=1` hid `__pycache__` written into snapshots.
    """
    for name in [name for name in os.environ if _leaks(name)]:
        monkeypatch.delenv(name)


def clean_env() -> dict[str, str]:
    """This environment without PYTHON* and EXPYRUN_* settings (see `hermetic_environment`)."""
    return {k: v for k, v in os.environ.items() if not _leaks(k)}


def start_expyrun(args: list[str], cwd: Path) -> subprocess.Popen[str]:
    """The real `expyrun` in the background, for tests that signal or race it."""
    return subprocess.Popen(
        [sys.executable, "-m", "expyrun", *args],
        cwd=cwd,
        env=clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def run_expyrun(
    args: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    full_env = clean_env()
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "expyrun", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture
def expyrun(project: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    def call(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None):
        return run_expyrun(list(args), cwd or project, env)

    return call


def files_under(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


def _take_terminal() -> None:
    """In the child: a new session whose controlling terminal is the pty on stdin (as in a shell)."""
    import fcntl
    import termios

    os.setsid()
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def run_in_terminal(args: list[str], cwd: Path, timeout: float = 120) -> tuple[int, bytes]:
    """Run `expyrun` with a pseudo-terminal as its stdin, stdout and stderr; returns what it showed."""
    import pty
    import select
    import time

    leader, follower = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "expyrun", *args], cwd=cwd, env=clean_env(),
        stdin=follower, stdout=follower, stderr=follower, preexec_fn=_take_terminal,
    )  # fmt: skip
    os.close(follower)
    shown, deadline = b"", time.monotonic() + timeout
    while time.monotonic() < deadline:
        if select.select([leader], [], [], 0.1)[0]:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # the terminal closed: every process using it is gone
                break
            if not chunk:
                break
            shown += chunk
        elif process.poll() is not None:
            break
    os.close(leader)
    return process.wait(timeout=30), shown
