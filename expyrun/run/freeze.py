"""Frozen requirements of the running interpreter, listed in-process.

expyrun 0.2.1 ran whatever `pip` was first on PATH, which freezes another environment as soon as
the launcher and the run disagree. Here the distributions come from `importlib.metadata` for the
interpreter that runs the experiment.
"""

from __future__ import annotations

import importlib.metadata as metadata
import json
import re
from pathlib import Path

FROZEN_FILE = "frozen_requirements.txt"
_CREDENTIALS = re.compile(r"(?<=://)[^/@]+@")


def strip_credentials(url: str) -> str:
    """`https://user:token@host/x` -> `https://host/x` (ssh's bare `git@` user is kept)."""
    return _CREDENTIALS.sub(lambda m: m.group(0) if m.group(0) == "git@" else "", url)


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement(dist: metadata.Distribution) -> str | None:
    name = dist.metadata["Name"]
    if not name:
        return None
    direct = dist.read_text("direct_url.json")
    if direct:
        try:
            info = json.loads(direct)
        except ValueError:
            info = {}
        url = strip_credentials(info.get("url", ""))
        if info.get("dir_info", {}).get("editable"):
            return f"-e {url}  # editable {name}=={dist.version}" if url else None
        vcs = info.get("vcs_info")
        if vcs and url:
            commit = vcs.get("commit_id", "")
            return f"{name} @ {vcs['vcs']}+{url}@{commit}" if commit else f"{name} @ {vcs['vcs']}+{url}"
        if url and not url.startswith("file:"):
            return f"{name} @ {url}"
        if url:
            return f"{name} @ {url}  # local: {name}=={dist.version}"
    return f"{name}=={dist.version}"


def frozen_requirements() -> list[str]:
    """`name==version` lines, sorted by normalised name, one per distribution."""
    seen: dict[str, str] = {}
    for dist in metadata.distributions():
        line = _requirement(dist)
        key = _normalise(dist.metadata["Name"] or "")
        if line and key and key not in seen:
            seen[key] = line
    return [seen[key] for key in sorted(seen)]


def write_frozen_requirements(run_dir: Path) -> list[str]:
    lines = frozen_requirements()
    (run_dir / FROZEN_FILE).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return lines


def parse_requirements(text: str) -> dict[str, str]:
    """Normalised name -> the line that pins it, from a frozen requirements file."""
    pins: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.split("  #")[0].strip()
        if not line or line.startswith("#"):
            continue
        match = re.match(r"(-e\s+)?([A-Za-z0-9][A-Za-z0-9._-]*)", line)
        if line.startswith("-e"):
            comment = raw.partition("# editable ")[2]
            name = comment.split("==")[0] if comment else line
        else:
            name = match.group(2) if match else line
        pins[_normalise(name)] = line
    return pins


def requirement_drift(frozen_file: Path) -> list[str]:
    """Differences between a run's frozen requirements and this interpreter, one line each."""
    stored = parse_requirements(frozen_file.read_text(encoding="utf-8"))
    current = parse_requirements("\n".join(frozen_requirements()))
    changes = []
    for name in sorted(stored.keys() | current.keys()):
        old, new = stored.get(name), current.get(name)
        if old == new:
            continue
        if old is None:
            changes.append(f"+ {new}")
        elif new is None:
            changes.append(f"- {old}")
        else:
            changes.append(f"~ {old} -> {new}")
    return changes
