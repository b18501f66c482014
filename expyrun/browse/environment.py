"""`expyrun env RUN [--venv PATH] [--check]`: compare with, or rebuild, a run's environment.

Rebuilding uses pip-tools' `pip-sync`, which also uninstalls whatever the file does not list: it
only ever targets a new virtual environment or one it made before (never an arbitrary folder).
"""

from __future__ import annotations

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
    """Differences between the run's requirements and this interpreter; exit 1 when any."""
    frozen = _frozen(run_dir)
    drift = requirement_drift(frozen)
    for line in drift:
        sys.stdout.write(line + "\n")
    if drift:
        console.warning(f"{len(drift)} differences with {frozen} (+ here only, - run only, ~ other version)")
        return 1
    console.info(f"this interpreter matches {frozen}")
    return 0


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


def restore(run_dir: Path, target: Path) -> int:
    frozen = _frozen(run_dir)
    try:
        import piptools  # noqa: F401
    except ImportError:
        raise UsageError("`expyrun env --venv` needs pip-tools", "pip install 'expyrun[env]'") from None
    if target.exists() and not (target / "pyvenv.cfg").is_file():
        raise UsageError(
            f"{target} exists and is not a virtual environment",
            "pip-sync removes every package not listed: give a new or dedicated venv path",
        )
    lines, dropped = restorable(frozen.read_text(encoding="utf-8"))
    if not target.exists():
        console.info(f"creating virtual environment {target}")
        venv.create(target, with_pip=True)
    python = target / "bin" / "python"
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as requirements:
        requirements.write("\n".join(lines) + "\n")
    command = [sys.executable, "-m", "piptools", "sync", "--python-executable", str(python), requirements.name]
    completed = subprocess.run(command, stdout=sys.stderr, check=False)
    Path(requirements.name).unlink()
    for line in dropped:
        console.warning(f"could not restore: {line}")
    if completed.returncode != 0:
        raise EnvError(f"pip-sync failed (exit {completed.returncode}) for {target}")
    console.info(f"{target} matches {frozen}" + (f" except {len(dropped)} local packages" if dropped else ""))
    return 0
