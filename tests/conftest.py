"""Shared fixtures: a project folder with a real package, and the real `expyrun` in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

# Timing is not what the property tests check: on a loaded 2-core machine (CI, other suites running)
# Hypothesis's deadlines and slow-generation health check fail tests that are correct.
settings.register_profile("expyrun", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("expyrun")

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


# Machine-wide folders (SPEC 13) each test gets its own of: a test's GPU leases and queue are never
# another test's (nor the developer's ~/.expyrun), so tests running side by side never wait on each other.
PER_TEST = ("EXPYRUN_GPU_LEASES", "EXPYRUN_QUEUE")


def _leaks(name: str) -> bool:
    """Variables of the developer's shell that change what a launched Python or expyrun does."""
    return name.startswith(("PYTHON", "EXPYRUN_")) and name not in PER_TEST


@pytest.fixture(autouse=True)
def hermetic_environment(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Every test sees the environment a user has: no `PYTHONUNBUFFERED`, `PYTHONDONTWRITEBYTECODE`,
    `PYTHONPATH` or `EXPYRUN_*` from the shell that started pytest; its own GPU lease and queue
    folders (`PER_TEST`, outside the test's project folder).

    A developer's shell exporting `PYTHONUNBUFFERED=1` once hid a run child that never flushed C
    `stdio`, and `PYTHONDONTWRITEBYTECODE=1` hid `__pycache__` written into snapshots.
    """
    for name in [name for name in os.environ if _leaks(name)]:
        monkeypatch.delenv(name)
    machine = tmp_path_factory.mktemp("machine")
    monkeypatch.setenv("EXPYRUN_GPU_LEASES", str(machine / "gpu-leases"))
    monkeypatch.setenv("EXPYRUN_QUEUE", str(machine / "queue"))


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


def trial_records(study_dir: Path) -> dict[int, dict]:
    """The `run.json` of every trial of a study folder, by trial number."""
    import json

    found = {}
    for folder in (study_dir / "trials").iterdir():
        record = json.loads((folder / "run.json").read_text())
        found[record["trial"]["number"]] = record
    return found


def files_under(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


def _take_terminal() -> None:
    """In the child: a new session whose controlling terminal is the pty on stdin (as in a shell)."""
    import fcntl
    import termios

    os.setsid()
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


@dataclass
class TerminalSession:
    """What a program run on a pseudo-terminal showed, and when (monotonic seconds)."""

    code: int
    shown: bytes
    seen_at: dict[bytes, float]
    ended_at: float
    stops: int


def terminal_session(
    args: list[str],
    cwd: Path,
    answers: dict[bytes, bytes] | None = None,
    on_stop: float | None = None,
    timeout: float = 120,
) -> TerminalSession:
    """Run `expyrun` on a pseudo-terminal, acting as the user and the shell around it.

    `answers`: when a pattern first shows up, type the given bytes (b"\x1a" is Ctrl-Z). `on_stop`:
    when expyrun stops (Ctrl-Z), wait that long, then continue it as a shell's `fg` does.
    """
    import pty
    import select
    import signal
    import time

    answers = dict(answers or {})
    leader, follower = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "expyrun", *args], cwd=cwd, env=clean_env(),
        stdin=follower, stdout=follower, stderr=follower, preexec_fn=_take_terminal,
    )  # fmt: skip
    os.close(follower)
    shown, seen_at, stops, status = b"", {}, 0, None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and status is None:
        if select.select([leader], [], [], 0.05)[0]:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # the terminal closed: every process using it is gone
                chunk = b""
            shown += chunk
            for pattern in [p for p in answers if p in shown and p not in seen_at]:
                seen_at[pattern] = time.monotonic()
                os.write(leader, answers[pattern])
        pid, wait_status = os.waitpid(process.pid, os.WNOHANG | os.WUNTRACED)
        if pid and os.WIFSTOPPED(wait_status):
            stops += 1
            time.sleep(on_stop if on_stop is not None else 0)
            if on_stop is None:
                break
            os.kill(process.pid, signal.SIGCONT)
        elif pid:
            status = wait_status
    ended_at = time.monotonic()
    if status is None:
        process.kill()
        _, status = os.waitpid(process.pid, 0)
    while select.select([leader], [], [], 0.05)[0]:
        try:
            chunk = os.read(leader, 65536)
        except OSError:
            break
        if not chunk:
            break
        shown += chunk
    os.close(leader)
    process.returncode = os.waitstatus_to_exitcode(status)
    return TerminalSession(process.returncode, shown, seen_at, ended_at, stops)


def run_in_terminal(args: list[str], cwd: Path, timeout: float = 120) -> tuple[int, bytes]:
    """Run `expyrun` with a pseudo-terminal as its stdin, stdout and stderr; returns what it showed."""
    session = terminal_session(args, cwd, timeout=timeout)
    return session.code, session.shown


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    """A throwaway PostgreSQL cluster per test module (binding 127.0.0.1, stopped by pid)."""
    import shutil
    import tempfile

    from postgres import PostgresServer, available

    reason = available()
    if reason:  # `.ci/install` installs PostgreSQL: its absence is a broken install, not a reason to skip
        pytest.fail(f"{reason}: run `bash .ci/install` (apt-get install postgresql)")
    folder = Path(tempfile.mkdtemp(prefix="expyrun-pg-"))  # pytest's tmp folders are closed to other users
    server = PostgresServer(folder)
    try:
        yield server.start()
    finally:
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)
