"""`expyrun env RUN [--venv PATH] [--check]`: compare with, or rebuild, a run's environment.

Rebuilding uses `uv pip sync` when uv is installed, else pip-tools' `pip-sync`; both also uninstall
whatever the file does not list, so it only ever targets a new virtual environment or one it made
before (never an arbitrary folder).

It stands in verify/ because a verify rebuilds a run's environment the same way (`environment.py`,
cached): restoring an environment is part of reproducing a run, and browse/ (which shows a run's
last verdict, `last.py`) stays above verify/ instead of the two importing each other.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import venv
from pathlib import Path
from urllib.parse import unquote, urlparse

from expyrun import console
from expyrun.errors import ExpyrunError, UsageError
from expyrun.run.freeze import FROZEN_FILE, requirement_drift


class EnvError(ExpyrunError):
    """Restoring the environment failed after it started."""

    exit_code = 1


def _frozen(run_dir: Path) -> Path:
    frozen = run_dir / FROZEN_FILE
    if not frozen.is_file():
        raise UsageError(f"{run_dir}: no {FROZEN_FILE}", "debug runs do not freeze their requirements")
    return frozen


def check(run_dir: Path) -> int:
    """Differences between the run's requirements and its interpreter (`__python__`'s, else this
    one); exit 1 when any."""
    frozen = _frozen(run_dir)
    python = _run_interpreter(run_dir)
    drift = requirement_drift(frozen, python)
    for line in drift:  # names and versions read from the run's file: shown, never acting on the terminal
        sys.stdout.write(console.visible(line, one_line=True) + "\n")
    if drift:
        console.warning(f"{len(drift)} differences with {frozen} (+ here only, - run only, ~ other version)")
        return 1
    console.info(f"{'this interpreter' if python is None else python} matches {frozen}")
    return 0


def _run_interpreter(run_dir: Path) -> Path | None:
    """The `__python__` interpreter a run recorded (`run.json`'s `python.executable`), if any; a
    UsageError when it is gone (its packages cannot be listed)."""
    from expyrun.reading.runs import load_record

    record = load_record(run_dir)
    recorded = record.get("python") if isinstance(record, dict) else None
    executable = recorded.get("executable") if isinstance(recorded, dict) else None
    if not isinstance(executable, str) or not executable:
        return None
    python = Path(executable)
    if not os.access(python, os.X_OK):
        raise UsageError(
            f"{run_dir}: the run's interpreter {python} (__python__) is gone", "its requirements cannot be compared"
        )
    return python


def _local_path(line: str) -> Path | None:
    for marker in ("-e ", " @ "):
        if marker in line:
            url = line.split(marker, 1)[1].split()[0]
            if url.startswith("file:"):
                return Path(unquote(urlparse(url).path))
    return None


def restorable(text: str) -> tuple[list[str], list[str]]:
    """Lines pip-sync can install, and what cannot be restored (local paths that are gone)."""
    keep, dropped = [], []
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        path = _local_path(line)
        if path is not None and not path.exists():
            requirement, _, note = line.partition("#")
            dropped.append(f"{requirement.strip()} ({note.strip() + ', ' if note else ''}local path {path} is gone)")
            continue
        keep.append(line)
    return keep, dropped


def _uv() -> str | None:
    """The `uv` executable: on PATH, or beside this interpreter (a venv that is not activated);
    `EXPYRUN_ENV_TOOL=pip-tools` chooses pip-tools even where uv is installed."""
    choice = os.environ.get("EXPYRUN_ENV_TOOL", "")
    if choice not in ("", "uv", "pip-tools"):
        raise UsageError(f"EXPYRUN_ENV_TOOL={choice!r} is not a tool expyrun knows", "use uv or pip-tools")
    if choice == "pip-tools":
        return None
    beside = Path(sys.executable).parent / "uv"
    found = shutil.which("uv") or (str(beside) if beside.is_file() and os.access(beside, os.X_OK) else None)
    if found is None and choice == "uv":
        raise UsageError("EXPYRUN_ENV_TOOL=uv but uv is not installed", "pip install uv")
    return found


def _sync_command(uv: str | None, python: Path, requirements: str) -> list[str]:
    """`uv pip sync` when uv is installed (seconds, no pip in the venv needed), else pip-tools' pip-sync."""
    if uv is not None:
        return [uv, "pip", "sync", "--python", str(python), requirements]
    return [sys.executable, "-m", "piptools", "sync", "--python-executable", str(python), requirements]


def _create(target: Path, uv: str | None) -> None:
    """A new venv of this interpreter's Python. pip-tools >= 7.7 refuses the pip that `venv` bundles
    (23.x), so without uv the venv's pip is upgraded first."""
    console.info(f"creating virtual environment {target}")
    if uv is not None:
        _checked([uv, "venv", "--quiet", "--python", sys.executable, str(target)], "uv venv", target)
        return
    venv.create(target, with_pip=True)
    python = str(target / "bin" / "python")
    _checked([python, "-m", "pip", "install", "--quiet", "--upgrade", "pip"], "upgrading pip", target)


def _tool_environment() -> dict[str, str]:
    """This environment, uv told to trust the platform's certificates (as pip, curl and git do) unless
    the user said otherwise: uv's bundled roots refuse PyPI behind a TLS-inspecting proxy."""
    environment = dict(os.environ)
    for name in ("UV_SYSTEM_CERTS", "UV_NATIVE_TLS"):  # the second: uv before 0.9
        environment.setdefault(name, "1")
    return environment


def _checked(command: list[str], what: str, target: Path) -> None:
    completed = subprocess.run(command, stdout=sys.stderr, check=False, env=_tool_environment())
    if completed.returncode != 0:
        raise EnvError(f"{what} failed (exit {completed.returncode}) for {target}")


def restore(run_dir: Path, target: Path) -> int:
    """Create (or sync one made before) a venv at `target` matching the run's frozen requirements.

    A venv this call created is removed when a step fails: a half-made venv would later be taken for
    one expyrun made and synced as if it were complete.
    """
    frozen = _frozen(run_dir)
    uv = _uv()
    if uv is None:
        try:
            import piptools  # noqa: F401
        except ImportError:
            raise UsageError(
                "`expyrun env --venv` needs uv or pip-tools", "pip install uv  (or: pip install 'expyrun[env]')"
            ) from None
    if target.exists() and not (target / "pyvenv.cfg").is_file():
        raise UsageError(
            f"{target} exists and is not a virtual environment",
            "a sync removes every package not listed: give a new or dedicated venv path",
        )
    lines, dropped = restorable(frozen.read_text(encoding="utf-8"))
    created = not target.exists()
    with tempfile.TemporaryDirectory(prefix="expyrun-env-") as scratch:
        requirements = Path(scratch) / "requirements.txt"
        requirements.write_text("\n".join(lines) + "\n", encoding="utf-8")
        try:
            if created:
                _create(target, uv)
            tool = "uv pip sync" if uv is not None else "pip-sync"
            console.info(f"syncing {target} with {tool}")
            _checked(_sync_command(uv, target / "bin" / "python", str(requirements)), tool, target)
        except BaseException:
            if created:
                shutil.rmtree(target, ignore_errors=True)
                console.warning(f"removed the unfinished virtual environment {target}")
            raise
    for line in dropped:
        console.warning(f"could not restore: {line}")
    console.info(f"{target} matches {frozen}" + (f" except {len(dropped)} local packages" if dropped else ""))
    return 0
