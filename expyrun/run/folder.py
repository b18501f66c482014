"""Run folder allocation: `{base}/exp.{i}`, atomic across any number of concurrent launches."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


def allocate_run_dir(base: Path, prefix: str = "exp") -> Path:
    """Create and return the next `{prefix}.{i}` under `base` (`exp.{i}`; a sweep's `sweep.{i}`).

    `i` is one more than the largest existing index. `mkdir` is the atomic step: a launch that
    loses the race for a number tries the next one without listing the folder again. When the
    folder cannot be made, the parents made for it are removed again: a refused launch leaves nothing.
    """
    created = missing_parents(base)
    try:
        base.mkdir(parents=True, exist_ok=True)
        dotted = f"{prefix}."  # then digits (str methods: no pattern to compile at each launch)
        numbers = (name[len(dotted) :] for name in os.listdir(base) if name.startswith(dotted))
        index = 1 + max((int(number) for number in numbers if number.isdecimal()), default=-1)
        while True:
            candidate = base / f"{prefix}.{index}"
            try:
                candidate.mkdir()
            except FileExistsError:
                index += 1
                continue
            return candidate
    except BaseException:
        remove_created(created)
        raise


def discard_run_dir(run_dir: Path, created: list[Path]) -> None:
    """Remove a run folder whose preparation failed, and the empty parents made for it."""
    import shutil

    shutil.rmtree(run_dir, ignore_errors=True)
    remove_created(created)


def missing_parents(base: Path) -> list[Path]:
    """The folders `mkdir -p base` would create, deepest first."""
    missing: list[Path] = []
    folder = base
    while not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    return missing


def remove_created(created: list[Path]) -> None:
    for folder in created:  # deepest first; a folder another launch filled meanwhile stays
        with contextlib.suppress(OSError):
            folder.rmdir()
