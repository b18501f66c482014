"""A cached virtual environment holding expyrun 0.2.1, for differential tests and benchmarks."""

from __future__ import annotations

import os
import subprocess
import sys
import venv
from pathlib import Path

CACHE = Path(os.environ.get("EXPYRUN_LEGACY_VENV", Path.home() / ".cache" / "expyrun-tests" / "expyrun-0.2.1"))

RESOLVE_SCRIPT = """\
import json, sys, warnings
warnings.simplefilter("ignore")
from expyrun import config, main
cfg = main.build_config(sys.argv[1], sys.argv[2:])
print(json.dumps(config.Parser(cfg).parse()))
"""


def legacy_python() -> Path | None:
    """The interpreter of a venv with expyrun 0.2.1, created once; None when it cannot be installed."""
    python = CACHE / "bin" / "python"
    marker = CACHE / ".complete"
    if marker.exists():
        return python
    CACHE.parent.mkdir(parents=True, exist_ok=True)
    venv.create(CACHE, with_pip=True, clear=True)
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "expyrun==0.2.1"],
        capture_output=True,
        text=True,
        check=False,
    )
    if install.returncode != 0:
        sys.stderr.write(install.stderr)
        return None
    marker.touch()
    return python
