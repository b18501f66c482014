"""Run folder allocation: `{base}/exp.{i}`, atomic across any number of concurrent launches."""

from __future__ import annotations

import os
import re
from pathlib import Path

_EXP = re.compile(r"exp\.(\d+)")


def allocate_run_dir(base: Path) -> Path:
    """Create and return the next `exp.{i}` under `base`.

    `i` is one more than the largest existing index. `mkdir` is the atomic step: a launch that
    loses the race for a number tries the next one without listing the folder again.
    """
    base.mkdir(parents=True, exist_ok=True)
    index = 1 + max((int(m.group(1)) for m in map(_EXP.fullmatch, os.listdir(base)) if m), default=-1)
    while True:
        candidate = base / f"exp.{index}"
        try:
            candidate.mkdir()
        except FileExistsError:
            index += 1
            continue
        return candidate
