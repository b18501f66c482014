"""Safe YAML reading that remembers on which line every key was written.

The libyaml loader is used when PyYAML has it (parsing dominates the cost of a launch); the
mapping and sequence constructors are replaced to record lines, refuse non-string or dotted keys,
and read an unquoted `!P` as the no-interpolation prefix rather than as an unknown YAML tag.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path as FsPath
from typing import Any

import yaml

from expyrun.config.tree import Path
from expyrun.errors import ConfigError

_BaseLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
NO_PARSE_PREFIX = "!P"


@dataclass
class YamlFile:
    """A parsed config file: its data and the line of every key and list item (1-based)."""

    path: FsPath
    display: str
    data: Any
    lines: dict[Path, int]

    def line_of(self, path: Path) -> int | None:
        """The line of `path` or of its closest written ancestor."""
        for end in range(len(path), 0, -1):
            line = self.lines.get(path[:end])
            if line is not None:
                return line
        return None


class _LineLoader(_BaseLoader):  # type: ignore[misc, valid-type]
    def __init__(self, text: str, display: str) -> None:
        super().__init__(text)
        self.text = text
        self.display = display
        self.container_lines: dict[int, Any] = {}


def _construct_mapping(loader: _LineLoader, node: yaml.MappingNode) -> dict:
    loader.flatten_mapping(node)
    data: dict = {}
    lines: dict[str, int] = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        line = key_node.start_mark.line + 1
        where = f"{loader.display}:{line}"
        if not isinstance(key, str):
            hint = "quote it" + (" (YAML reads yes/no/on/off as booleans)" if isinstance(key, bool) else "")
            raise ConfigError(f"{where}: key {key!r} is not a string", hint)
        if "." in key:
            raise ConfigError(
                f"{where}: key `{key}` contains `.`", "nest it instead: `a: {b: ...}` for `a.b`"
            )
        data[key] = loader.construct_object(value_node, deep=True)
        lines[key] = line
    loader.container_lines[id(data)] = lines
    return data


def _construct_sequence(loader: _LineLoader, node: yaml.SequenceNode) -> list:
    data = [loader.construct_object(child, deep=True) for child in node.value]
    loader.container_lines[id(data)] = [child.start_mark.line + 1 for child in node.value]
    return data


def _construct_no_parse(loader: _LineLoader, node: yaml.Node) -> str:
    """`key: !P {a}` written without quotes: keep the text after the tag, prefixed."""
    source = loader.text[node.start_mark.index : node.end_mark.index]
    return NO_PARSE_PREFIX + source[len(NO_PARSE_PREFIX) :].lstrip()


_LineLoader.add_constructor("tag:yaml.org,2002:map", _construct_mapping)
_LineLoader.add_constructor("tag:yaml.org,2002:seq", _construct_sequence)
_LineLoader.add_constructor(NO_PARSE_PREFIX, _construct_no_parse)


def parse_yaml(text: str, display: str) -> tuple[Any, dict[Path, int]]:
    """Parse YAML text safely; returns the data and the line of every key path."""
    loader = _LineLoader(text, display)
    try:
        data = loader.get_single_data()
    except yaml.MarkedYAMLError as error:
        raise ConfigError(_describe_yaml_error(error, display)) from None
    except yaml.YAMLError as error:
        raise ConfigError(f"{display}: invalid YAML: {error}") from None
    finally:
        loader.dispose()
    lines: dict[Path, int] = {}
    data = _collect_lines(data, (), loader.container_lines, lines, set())
    return data, lines


def read_yaml(path: FsPath, display: str) -> YamlFile:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise ConfigError(f"{display}: not UTF-8 text ({error.reason})") from None
    except OSError as error:
        raise ConfigError(f"{display}: cannot read: {error.strerror}") from None
    data, lines = parse_yaml(text, display)
    return YamlFile(path, display, data, lines)


def _collect_lines(
    node: Any, prefix: Path, container_lines: dict[int, Any], out: dict[Path, int], seen: set[int]
) -> Any:
    """Walk the tree once: flatten the line records and un-share YAML aliases.

    An alias (`*anchor`) yields the very same object twice; later stages edit the tree in place,
    so a second occurrence is replaced by a deep copy.
    """
    if not isinstance(node, (dict, list)):
        return node
    if id(node) in seen:
        return copy.deepcopy(node)
    seen.add(id(node))
    own_lines = container_lines.get(id(node))
    items = node.items() if isinstance(node, dict) else enumerate(node)
    for segment, child in list(items):
        path = (*prefix, segment)
        if own_lines is not None:
            out[path] = own_lines[segment]
        node[segment] = _collect_lines(child, path, container_lines, out, seen)
    return node


def _describe_yaml_error(error: yaml.MarkedYAMLError, display: str) -> str:
    mark = error.problem_mark or error.context_mark
    where = f"{display}:{mark.line + 1}" if mark is not None else display
    problem = error.problem or error.context or "invalid YAML"
    if isinstance(error, yaml.constructor.ConstructorError) and "tag" in problem:
        tag = problem.split("tag", 1)[1].strip().strip("'").replace("tag:yaml.org,2002:", "!!")
        return f"{where}: YAML tag {tag} is not allowed (configs are read with a safe loader)"
    return f"{where}: invalid YAML: {problem}"
