"""Frozen requirements of the running interpreter, listed in-process.

expyrun 0.2.1 ran whatever `pip` was first on PATH, which freezes another environment as soon as
the launcher and the run disagree. Here the distributions come from `importlib.metadata` for the
interpreter that runs the experiment.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

FROZEN_FILE = "frozen_requirements.txt"
_SECRET_WORDS = ("tok", "key", "secret", "pass", "auth", "sig", "cred", "session")  # in a query parameter's name


def strip_credentials(url: str) -> str:
    """`https://user:p@ss@host/x?token=t&v=1` -> `https://host/x?v=1` (ssh's bare `git@` user is kept).

    The user part ends at the last `@` of the authority (a password may hold `@`); query parameters
    named like credentials (`token`, `access_key`, `sig`...) are dropped, the others kept.
    """
    scheme, separator, rest = url.partition("://")
    if not separator:
        return url
    end = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
    authority, tail = rest[:end], rest[end:]
    if "@" in authority:
        user, host = authority.rsplit("@", 1)
        authority = authority if user == "git" else host
    tail, hash_mark, fragment = tail.partition("#")
    path, question_mark, query = tail.partition("?")
    if question_mark:
        kept = [item for item in query.split("&") if item and not _names_a_secret(item.partition("=")[0])]
        path += "?" + "&".join(kept) if kept else ""
    return f"{scheme}://{authority}{path}{hash_mark}{fragment}"


def _names_a_secret(parameter: str) -> bool:
    """Whether a query parameter's name holds a credential word, in any case (substring tests: a
    pattern compiled at import cost every launch 0.1 ms)."""
    folded = parameter.casefold()
    return any(word in folded for word in _SECRET_WORDS)


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _search_path() -> list[str]:
    """The folders of sys.path where the interpreter's distributions are installed.

    The current folder is left out: `python -m expyrun` (and `-c`) puts it first on sys.path and the
    `expyrun` script does not, so a project's own `*.egg-info` in the launch folder would turn the
    editable install into `name==version` for one of them. One interpreter, one frozen list.
    """
    try:
        here = os.path.realpath(os.getcwd())
    except OSError:  # the current folder was removed
        here = None
    return [entry for entry in sys.path if entry and os.path.realpath(entry) != here]


def _distributions() -> list[Path]:
    """The `.dist-info` / `.egg-info` folders on sys.path, in path order.

    This is what `importlib.metadata.distributions()` walks; scanning directly spares a launch
    the import of importlib.metadata and the e-mail parser it runs over every METADATA file.
    """
    found = []
    for entry in _search_path():
        try:
            names = sorted(os.listdir(entry))
        except OSError:
            continue
        found += [Path(entry, n) for n in names if n.endswith((".dist-info", ".egg-info"))]
    return found


def _name_version(info: Path) -> tuple[str | None, str]:
    """Name and version from the metadata's header lines."""
    text = ""
    for candidate in ("METADATA", "PKG-INFO"):
        try:
            text = (info / candidate).read_text(encoding="utf-8", errors="replace")
            break
        except OSError:
            continue
    name = version = None
    for line in text.splitlines():
        if not line:
            break
        if line.startswith("Name:"):
            name = line[5:].strip()
        elif line.startswith("Version:"):
            version = line[8:].strip()
    return name, version or ""


def _requirement(info: Path, name: str, version: str) -> str:
    """One line of the file: `name==version`, `name @ url` (PEP 610), or `-e url` for editables."""
    try:
        direct = json.loads((info / "direct_url.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        direct = None
    if not isinstance(direct, dict) or not direct.get("url"):
        return f"{name}=={version}"
    url = strip_credentials(direct["url"])
    if direct.get("dir_info", {}).get("editable"):
        return f"-e {url}  # editable {name}=={version}"
    vcs = direct.get("vcs_info")
    if vcs:
        commit = vcs.get("commit_id")
        return f"{name} @ {vcs['vcs']}+{url}@{commit}" if commit else f"{name} @ {vcs['vcs']}+{url}"
    if url.startswith("file:"):
        return f"{name} @ {url}  # local: {name}=={version}"
    return f"{name} @ {url}"


def frozen_requirements() -> list[str]:
    """One line per distribution of this interpreter, sorted by normalised name."""
    seen: dict[str, str] = {}
    for info in _distributions():
        name, version = _name_version(info)
        if not name:
            continue
        key = _normalise(name)
        if key not in seen:  # the first on sys.path wins, as for imports
            seen[key] = _requirement(info, name, version)
    return [seen[key] for key in sorted(seen)]


def write_frozen_requirements(run_dir: Path, cache_dir: Path | None = None, python: Path | None = None) -> None:
    """`frozen_requirements.txt` in the run folder.

    With `cache_dir`, the text is kept there under a key made of the interpreter and the
    modification times of the folders on sys.path (installing, removing or upgrading a
    distribution changes its folder's), so repeated launches copy it instead of reading every
    distribution's metadata again.
    """
    target = run_dir / FROZEN_FILE
    if python is not None:  # another interpreter's (a tool environment): asked each time
        target.write_text("".join(line + "\n" for line in frozen_requirements_of(python)), encoding="utf-8")
        return
    cached = cache_dir / f"frozen-{_environment_key()}.txt" if cache_dir is not None else None
    if cached is not None:
        try:
            target.write_bytes(cached.read_bytes())
            return
        except OSError:
            pass
    text = "\n".join(frozen_requirements()) + "\n"
    target.write_text(text, encoding="utf-8")
    if cached is not None:
        temporary = cached.with_name(f".{cached.name}.{os.getpid()}.tmp")
        try:
            cached.parent.mkdir(parents=True, exist_ok=True)
            temporary.write_text(text, encoding="utf-8")
            os.replace(temporary, cached)
        except OSError:  # a cache only
            pass


def _environment_key() -> str:
    import hashlib

    parts = [sys.executable]
    for entry in _search_path():
        try:
            parts.append(f"{entry}\0{os.stat(entry).st_mtime_ns}")
        except OSError:
            parts.append(f"{entry}\0-")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:32]


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


def compare_pins(before: dict[str, str], after: dict[str, str]) -> list[str]:
    """`+ line` only after, `- line` only before, `~ old -> new` pinned differently; sorted by name."""
    changes = []
    for name in sorted(before.keys() | after.keys()):
        old, new = before.get(name), after.get(name)
        if old == new:
            continue
        if old is None:
            changes.append(f"+ {new}")
        elif new is None:
            changes.append(f"- {old}")
        else:
            changes.append(f"~ {old} -> {new}")
    return changes


def requirement_drift(frozen_file: Path, python: Path | None = None) -> list[str]:
    """Differences between a run's frozen requirements and the interpreter that runs it, one line
    each: this one, or `python` (a run's `__python__`, whose list is not expyrun's own)."""
    stored = parse_requirements(frozen_file.read_text(encoding="utf-8"))
    current = frozen_requirements() if python is None else frozen_requirements_of(python)
    return compare_pins(stored, parse_requirements("\n".join(current)))


def frozen_requirements_of(python: Path) -> list[str]:
    """The frozen requirements of another interpreter (`__run__.__python__`): this module, which
    needs only the standard library, run as a script by it."""
    import subprocess

    listed = subprocess.run(
        [str(python), os.path.abspath(__file__)], capture_output=True, text=True, timeout=120, check=True
    )
    return listed.stdout.splitlines()


if __name__ == "__main__":  # run by another interpreter: print its frozen requirements
    sys.stdout.write("".join(line + "\n" for line in frozen_requirements()))
