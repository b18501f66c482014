"""`__default__` inheritance: parent configs, merge rules and `__new_key_policy__`.

Path rules follow expyrun 0.2.1: absolute paths as they are, paths starting with `.` relative
to the file that names them, anything else relative to the current directory.
"""

# No `from __future__ import annotations` here: typing.NamedTuple turns string annotations into
# ForwardRefs, compiling each (~15 us a field, at every launch); these evaluate as written.
import os
from pathlib import Path as FsPath
from typing import Any, NamedTuple

from expyrun.config.overrides import misread_number
from expyrun.config.tree import Path, dotted
from expyrun.config.yaml_reader import YamlFile, read_yaml
from expyrun.errors import ConfigError

POLICIES = ("raise", "warn", "pass")


class LoadedConfig(NamedTuple):
    """A config after inheritance: the merged data and the files in the order they were merged."""

    data: dict
    sources: list[YamlFile]
    warnings: list[str]


def display_path(path: FsPath, cwd: FsPath) -> str:
    """How a file is named in messages: relative to the current directory when inside it."""
    try:
        return str(path.relative_to(cwd))
    except ValueError:
        return str(path)


def load_config(config_file: str | os.PathLike[str], cwd: FsPath) -> LoadedConfig:
    """Read a config and all its ancestors, and merge them."""
    path = cwd / config_file
    if path.is_dir():
        raise ConfigError(f"{config_file}: is a folder, not a config file", "name the YAML file inside it")
    if not path.exists():
        raise ConfigError(f"{config_file}: no such config file")
    # A FIFO or /dev/stdin (`expyrun <(...)`) is read as it is: resolving it names a pipe, not a file.
    path = path.resolve() if path.is_file() else FsPath(os.path.abspath(path))
    warnings: list[str] = []
    data, sources = _load(path, str(config_file), cwd, (), warnings)
    return LoadedConfig(data, sources, warnings)


def _load(
    path: FsPath, display: str, cwd: FsPath, chain: tuple[FsPath, ...], warnings: list[str]
) -> tuple[dict, list[YamlFile]]:
    if path in chain:
        names = [display_path(p, cwd) for p in (*chain, path)]
        raise ConfigError(f"cyclic __default__ inheritance: {' -> '.join(names)}")
    file = read_yaml(path, display)
    warnings.extend(file.warnings)
    data = file.data
    if data is None:
        raise ConfigError(f"{display}: the config is empty", "a config is a YAML mapping of keys")
    if not isinstance(data, dict):
        raise ConfigError(f"{display}:1: a config must be a YAML mapping, not a {type(data).__name__}")
    parents = _parent_refs(file, data.pop("__default__", None))
    policy = data.pop("__new_key_policy__", "warn")
    if policy not in POLICIES:
        line = file.lines.get(("__new_key_policy__",), 1)
        raise ConfigError(f"{display}:{line}: __new_key_policy__ is {policy!r}", f"use one of {', '.join(POLICIES)}")
    if not parents:
        return data, [file]

    merged: dict | None = None
    sources: list[YamlFile] = []
    for ref, line in parents:
        parent_path = _locate_parent(ref, f"{display}:{line}", path, cwd)
        parent_data, parent_sources = _load(parent_path, display_path(parent_path, cwd), cwd, (*chain, path), warnings)
        sources.extend(parent_sources)
        if merged is None:
            merged = parent_data
        else:
            merge_into(merged, parent_data, "pass", parent_sources[-1], (), warnings)
    assert merged is not None
    merge_into(merged, data, policy, file, (), warnings)
    sources.append(file)
    return merged, sources


def _parent_refs(file: YamlFile, value: Any) -> list[tuple[str, int]]:
    line = file.lines.get(("__default__",), 1)
    if value is None:
        return []
    refs = [value] if isinstance(value, str) else value
    if not isinstance(refs, list) or not all(isinstance(ref, str) and ref for ref in refs):
        raise ConfigError(f"{file.display}:{line}: __default__ must be a path or a list of paths, got {value!r}")
    return [(ref, file.lines.get(("__default__", i), line)) for i, ref in enumerate(refs)]


def _locate_parent(ref: str, where: str, child: FsPath, cwd: FsPath) -> FsPath:
    relative_to_file = ref.startswith(".")
    as_written = FsPath(ref)
    if as_written.is_absolute():
        candidate, other = as_written, None
    elif relative_to_file:
        candidate, other = child.parent / ref, cwd / ref
    else:
        candidate, other = cwd / ref, child.parent / ref
    if candidate.is_file():
        return candidate.resolve()
    hint = None
    if other is not None and other.is_file():
        if relative_to_file:
            hint = (
                f"`{ref}` exists relative to the current directory; "
                f"paths starting with `.` are relative to {child.name}"
            )
        else:
            hint = f"did you mean `./{ref}`? paths not starting with `.` are relative to the current directory"
    base = "the current directory" if not relative_to_file else child.parent.name + "/"
    raise ConfigError(f"{where}: parent config `{ref}` not found (looked in {base}: {candidate})", hint)


def _kind(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    return type(value).__name__


def merge_into(base: dict, child: dict, policy: str, file: YamlFile, prefix: Path, warnings: list[str]) -> None:
    """Merge `child` into `base` in place: mappings key by key, anything else replaced."""
    for key, value in child.items():
        path = (*prefix, key)
        if key not in base:
            if policy != "pass" and not str(path[0]).startswith("__"):  # reserved sections check their keys
                _new_key(base, path, policy, file, warnings)
            base[key] = value
            continue
        previous = base[key]
        if isinstance(previous, dict) and isinstance(value, dict):
            merge_into(previous, value, policy, file, path, warnings)
            continue
        old_kind, new_kind = _kind(previous), _kind(value)
        if old_kind == "number" and misread_number(value) is not None:
            where = f"{file.display}:{file.line_of(path)}"
            raise ConfigError(f"{where}: `{dotted(path)}` replaces a number with text: {misread_number(value)}")
        if old_kind and new_kind and old_kind != new_kind:
            warnings.append(
                f"{file.display}:{file.line_of(path)}: `{dotted(path)}` changes type "
                f"({old_kind} -> {new_kind}); the parent value is replaced"
            )
        base[key] = value


def _new_key(base: dict, path: Path, policy: str, file: YamlFile, warnings: list[str]) -> None:
    where = f"{file.display}:{file.line_of(path)}"
    message = f"`{dotted(path)}` is a new key: none of the parent configs has it"
    if policy == "warn":
        warnings.append(f"{where}: {message}")
        return
    import difflib

    close = difflib.get_close_matches(str(path[-1]), [str(k) for k in base], n=3)
    hint = (
        f"did you mean {', '.join(f'`{dotted((*path[:-1], c))}`' for c in close)}?"
        if close
        else ("set __new_key_policy__ to warn or pass to allow new keys")
    )
    raise ConfigError(f"{where}: {message} (__new_key_policy__: raise)", hint)
