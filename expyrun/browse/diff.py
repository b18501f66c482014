"""`expyrun diff A B`: config keys changed, added, removed; requirement changes; commit change."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from expyrun.config.tree import dotted, flatten
from expyrun.config.yaml_reader import read_yaml
from expyrun.errors import ConfigError
from expyrun.reading.runs import load_record
from expyrun.run.freeze import FROZEN_FILE, compare_pins, parse_requirements
from expyrun.text.table import printable

# Keys that differ between any two runs by construction.
_PER_RUN = {"__run__.__code__"}


def _config(run_dir: Path) -> dict[str, Any]:
    """The run's resolved config, read like any config (so a crafted file is bounded the same way)."""
    path = run_dir / "config.yml"
    if not path.is_file():
        return {}
    data = read_yaml(path, str(path)).data
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: not a mapping")
    return {dotted(p): v for p, v in flatten(data).items() if dotted(p) not in _PER_RUN}


def _show(value: Any) -> str:
    return json.dumps(value, default=str)


def config_changes(a: Path, b: Path) -> list[str]:
    """One line per key changed, added or removed, ending with where each side's value came from
    (`run.json` `provenance`: `c.yml:4`, `cli`, `sweep`, ...) when the runs recorded it."""
    left, right = _config(a), _config(b)
    came_left, came_right = _origins(a), _origins(b)
    lines = []
    for key in sorted(left.keys() | right.keys()):
        if key not in right:
            lines.append(f"- {key}: {_show(left[key])}{_from(came_left.get(key))}")
        elif key not in left:
            lines.append(f"+ {key}: {_show(right[key])}{_from(came_right.get(key))}")
        elif left[key] != right[key] or type(left[key]) is not type(right[key]):
            origins = f"{came_left.get(key, '?')} -> {came_right.get(key, '?')}" if came_left or came_right else None
            lines.append(f"~ {key}: {_show(left[key])} -> {_show(right[key])}{_from(origins)}")
    return lines


def _origins(run_dir: Path) -> dict[str, str]:
    """Where each value of a run came from, as its `run.json` recorded it (empty for older runs)."""
    provenance = (load_record(run_dir) or {}).get("provenance")
    return provenance if isinstance(provenance, dict) else {}


def _from(origin: str | None) -> str:
    return f"  ({origin})" if origin else ""


def requirement_changes(a: Path, b: Path) -> list[str]:
    def pins(run: Path) -> dict[str, str]:
        path = run / FROZEN_FILE
        return parse_requirements(path.read_text(encoding="utf-8")) if path.exists() else {}

    return compare_pins(pins(a), pins(b))


def commit_change(a: Path, b: Path) -> str | None:
    left, right = _git(a), _git(b)
    before, after = left.get("commit"), right.get("commit")
    dirty = (left.get("dirty"), right.get("dirty"))
    if before == after and dirty[0] == dirty[1]:
        return None
    return f"{_commit_label(before, dirty[0])} -> {_commit_label(after, dirty[1])}"


def _git(run_dir: Path) -> dict[str, Any]:
    """The `git` of a run's record; empty when there is none or the record is not expyrun's (any
    folder may hold a foreign or crafted run.json)."""
    git = (load_record(run_dir) or {}).get("git")
    return git if isinstance(git, dict) else {}


def _commit_label(commit: str | None, dirty: bool | None) -> str:
    return f"{commit or 'none'}{' (dirty)' if dirty else ''}"


def render_diff(a: Path, b: Path, code: bool = False) -> str:
    """The differences for people; `code`: then a unified diff of the two code snapshots."""
    out = [f"--- {a}", f"+++ {b}", "", "# config"]
    out += config_changes(a, b) or ["(same)"]
    out += ["", "# requirements"]
    out += requirement_changes(a, b) or ["(same)"]
    out += ["", "# commit", commit_change(a, b) or "(same)"]
    text = "\n".join(printable(line) for line in out) + "\n"  # no escape sequence reaches the terminal
    if not code:
        return text
    from expyrun.browse.code_diff import code_diff
    from expyrun.console import visible

    changes = code_diff(a, b)
    return text + "\n# code\n" + (visible("".join(changes)) if changes else "(same)\n")
