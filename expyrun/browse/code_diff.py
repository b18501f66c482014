"""`expyrun diff A B --code`: a unified diff of the two runs' code snapshots (SPEC 12.3).

The snapshot is the copy a run folder holds of the code it ran: the entry point's top-level
package or module (`pkg/` or `pkg.py`, from `__run__.__main__`) or, for a command run, `code/`.
Files are compared as text (a binary file that changed is named, not printed); files only on one
side are shown whole as added or removed, as `diff -ruN` would.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path

from expyrun.config.yaml_reader import read_yaml

CODE_FOLDER = "code"
_SKIPPED = {"__pycache__", ".git"}
MAX_BYTES = 4 * 1024 * 1024  # a larger file is compared by its bytes, not shown


def snapshot_root(run_dir: Path) -> Path | None:
    """The run's snapshot (a folder or one module file), or None when it has none (`--debug`)."""
    if (run_dir / CODE_FOLDER).is_dir():
        return run_dir / CODE_FOLDER
    config = run_dir / "config.yml"
    if not config.is_file():
        return None
    data = read_yaml(config, str(config)).data
    run = data.get("__run__") if isinstance(data, dict) else None
    main = run.get("__main__") if isinstance(run, dict) else None
    if not isinstance(main, str) or not main:
        return None
    top = main.partition(":")[0].split(".")[0]
    for candidate in (run_dir / top, run_dir / f"{top}.py"):
        if candidate.exists() and candidate.name not in ("config.yml", "run.json"):
            return candidate
    return None


def _files(root: Path | None) -> dict[str, Path]:
    """Relative path -> file, for every file of a snapshot (caches and `.git` left out)."""
    if root is None:
        return {}
    if root.is_file():
        return {root.name: root}
    found: dict[str, Path] = {}
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in _SKIPPED)
        for name in files:
            path = Path(folder) / name
            found[str(path.relative_to(root.parent))] = path
    return found


def _lines(path: Path | None) -> list[str] | None:
    """A file's lines, or None when it is binary or too large to show."""
    if path is None:
        return []
    if path.stat().st_size > MAX_BYTES:
        return None
    data = path.read_bytes()
    if b"\0" in data:
        return None
    return data.decode("utf-8", errors="replace").splitlines(keepends=True)


def code_diff(a: Path, b: Path) -> list[str]:
    """The unified diff of the snapshots of runs `a` and `b` (empty when they are the same)."""
    left, right = _files(snapshot_root(a)), _files(snapshot_root(b))
    out: list[str] = []
    for name in sorted(left.keys() | right.keys()):
        before, after = left.get(name), right.get(name)
        if before is not None and after is not None and before.read_bytes() == after.read_bytes():
            continue
        old, new = _lines(before), _lines(after)
        if old is None or new is None:
            out.append(f"Binary files a/{name} and b/{name} differ\n")
            continue
        out.extend(
            difflib.unified_diff(
                old,
                new,
                fromfile=f"a/{name}" if before is not None else "/dev/null",
                tofile=f"b/{name}" if after is not None else "/dev/null",
            )
        )
    return [line if line.endswith("\n") else line + "\n\\ No newline at end of file\n" for line in out]
