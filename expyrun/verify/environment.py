"""The environment a verify reruns in: a virtual environment matching a run's `frozen_requirements.txt`,
built once per distinct requirements and reused (keyed by their hash), so a second verify is fast.

Why cached: building an environment takes seconds to minutes (uv, else pip-tools: the tool choice and
the sync are `verify/restore.py`'s, shared with `expyrun env --venv`); the same requirements need
it once. Folder: `$EXPYRUN_ENV_CACHE`, else `$XDG_CACHE_HOME/expyrun/envs`, else
`~/.cache/expyrun/envs`; one `{hash}/` per requirements (and Python version), marked complete by a
`.expyrun-ready` file written last, built under a lock so two verifies never build one twice.

A `__run__.__python__` run (a tool's interpreter, SPEC 10) froze that interpreter's requirements,
not expyrun's: expyrun need not be among them, so the rerun's node runs in expyrun's interpreter and
only the entry point in the matching one (`tool_python`): the run's own recorded interpreter when it
still matches the frozen requirements (no build), else a built environment.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

from expyrun import console
from expyrun.errors import ExpyrunError
from expyrun.run.freeze import FROZEN_FILE

READY = ".expyrun-ready"


class EnvironmentMismatch(Exception):
    """No environment matching the run's requirements could be made here: the verdict says why."""


def cache_root() -> Path:
    explicit = os.environ.get("EXPYRUN_ENV_CACHE")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "expyrun" / "envs"


def requirements_key(text: str) -> str:
    """The cache key: the requirements (blank lines and comments aside) and this Python's version."""
    lines = sorted(line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#"))
    digest = hashlib.sha256("\n".join([sys.version.split()[0], *lines]).encode()).hexdigest()
    return digest[:24]


def tool_python(run_dir: Path, recorded: str | None) -> tuple[Path, bool, bool]:
    """The interpreter a `__python__` run's entry point reruns with, whether it was reused (not
    built now) and whether it is the run's own recorded interpreter (`recorded`, its `run.json`
    `python.executable`): that one when it is still there and lists exactly the frozen requirements,
    as `expyrun env --check` compares; else an environment built from them like any run's.
    `EnvironmentMismatch` when none can be had."""
    from expyrun.run.freeze import requirement_drift

    if recorded and os.access(recorded, os.X_OK):
        try:
            drift = requirement_drift(run_dir / FROZEN_FILE, Path(recorded))
        except (OSError, subprocess.SubprocessError):  # an interpreter that cannot list its packages
            drift = ["(its packages cannot be listed)"]
        if not drift:
            return Path(recorded), True, True
        console.info(f"the run's interpreter {recorded} no longer matches its requirements ({len(drift)} differences)")
    python, cached = matching_python(run_dir)
    return python, cached, False


def matching_python(run_dir: Path) -> tuple[Path, bool]:
    """The interpreter of an environment matching `run_dir`'s frozen requirements, and whether it was
    reused from the cache; `EnvironmentMismatch` when it cannot be made."""
    from expyrun.verify.restore import restorable, restore

    frozen = run_dir / FROZEN_FILE
    text = frozen.read_text(encoding="utf-8")
    _, dropped = restorable(text)
    if dropped:
        raise EnvironmentMismatch(f"cannot be restored: {'; '.join(dropped)}")
    target = cache_root() / requirements_key(text)
    python = target / "bin" / "python"
    if (target / READY).is_file():
        return python, True
    target.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(target.parent / f".{target.name}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX)
        if (target / READY).is_file():  # another verify built it while this one waited
            return python, True
        if target.exists():  # a build that was stopped: start again
            shutil.rmtree(target)
        console.info(f"building an environment matching {frozen} (once: cached in {target})")
        try:
            restore(run_dir, target)
        except ExpyrunError as error:
            raise EnvironmentMismatch(str(error)) from None
        (target / READY).write_text(str(frozen) + "\n", encoding="utf-8")
        return python, False
    finally:
        os.close(fd)
