"""Safe YAML reading that remembers on which line every key was written.

The libyaml loader is used when PyYAML has it (parsing dominates the cost of a launch); the
mapping and sequence constructors are replaced to record lines, refuse non-string or dotted keys,
and read an unquoted `!P` as the no-interpolation prefix rather than as an unknown YAML tag.
"""

# No `from __future__ import annotations` here: typing.NamedTuple turns string annotations into
# ForwardRefs, compiling each (~15 us a field, at every launch); these evaluate as written.
from pathlib import Path as FsPath
from typing import Any, NamedTuple

import yaml

from expyrun.config.tree import Path, copy_tree
from expyrun.errors import ConfigError

_ScalarNode = yaml.ScalarNode
_BaseLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
NO_PARSE_PREFIX = "!P"
MAX_VALUES = 1_000_000  # values a file may build, aliases expanded: a 400-byte alias bomb builds billions
MAX_DEPTH = 200  # nesting levels of mappings and lists


class YamlFile(NamedTuple):
    """A parsed config file: its data and the line of every key and list item (1-based)."""

    path: FsPath
    display: str
    data: Any
    lines: dict[Path, int]
    warnings: list[str]

    def line_of(self, path: Path) -> int | None:
        """The line of `path` or of its closest written ancestor."""
        for end in range(len(path), 0, -1):
            line = self.lines.get(path[:end])
            if line is not None:
                return line
        return None


_STR = "tag:yaml.org,2002:str"
_INT = "tag:yaml.org,2002:int"
_FLOAT = "tag:yaml.org,2002:float"
_BOOL = "tag:yaml.org,2002:bool"
_NULL = "tag:yaml.org,2002:null"
_MAP = "tag:yaml.org,2002:map"
_MERGE = "tag:yaml.org,2002:merge"
_STR_KEY_TAGS = (_STR, "tag:yaml.org,2002:value")
_DOTTED_KEYS_ALLOWED = ("__optuna__", "search_space")  # its keys name config keys: `training.lr`
_SWEEP = "__sweep__"  # so do the keys of its grid, zip and variants
# First characters of plain scalars that YAML 1.1 may read as something else than a string.
_TYPED_FIRST_CHARS = frozenset(ch for ch, resolvers in yaml.resolver.Resolver.yaml_implicit_resolvers.items() if ch)
_SEQ = "tag:yaml.org,2002:seq"


class _LineLoader(_BaseLoader):  # type: ignore[misc, valid-type]
    """Composes nodes with PyYAML (libyaml when present) and builds values itself.

    Building top-down keeps the path of every node at hand, so lines are recorded without a
    second walk; the common tags are built inline, the rare ones by PyYAML's safe constructors.
    """

    def __init__(self, text: str, display: str) -> None:
        super().__init__(text)
        self.text = text
        self.display = display
        self.lines: dict[Path, int] = {}
        self.warnings: list[str] = []
        self.built: dict[int, Any] = {}
        self.sizes: dict[int, int] = {}  # values built for an anchored node, counted again per alias
        self.count = 0
        self.may_merge = "<<" in text  # merge keys are rare: skip PyYAML's scan of every mapping

    def descend_resolver(self, current_node: Any, current_index: Any) -> None:
        """No path resolvers are registered: skip PyYAML's per-node bookkeeping."""

    def ascend_resolver(self) -> None:
        pass

    def resolve(self, kind: type, value: Any, implicit: tuple[bool, bool]) -> str:
        """PyYAML's implicit typing, with a shortcut for the plain words no other type can start with."""
        if kind is yaml.ScalarNode and implicit[0] and value:
            if value[0] not in _TYPED_FIRST_CHARS:
                return _STR
            # A base-10 int. `isdigit` alone also accepts superscripts (`1²`, which `int()` refuses)
            # and other scripts' digits (`1٣`, which `int()` reads as 13): YAML's `[0-9]` is ASCII,
            # both are strings for PyYAML. A leading 0 is octal in YAML 1.1: PyYAML decides.
            if value.isdigit() and value.isascii() and (value[0] != "0" or value == "0"):
                return _INT
        return super().resolve(kind, value, implicit)

    def build(self, node: yaml.Node, path: Path) -> Any:
        tag = node.tag
        if type(node) is yaml.ScalarNode:
            value = node.value
            if tag == _STR:
                return value
            if tag == _INT and value.isdigit() and value.isascii() and (value[0] != "0" or value == "0"):  # as above
                return int(value)
            if tag == _BOOL:
                return self.bool_values[value.lower()]
            if tag == _NULL:
                return None
            return self.construct_object(node, deep=True)
        if id(node) in self.built:  # an alias: later stages edit in place, so never share
            self._count(self.sizes[id(node)], node)
            return copy_tree(self.built[id(node)])
        if len(path) >= MAX_DEPTH:
            raise ConfigError(f"{self.display}:{node.start_mark.line + 1}: nested deeper than {MAX_DEPTH} levels")
        before = self.count
        if tag == _MAP and isinstance(node, yaml.MappingNode):
            value = self._build_mapping(node, path)
        elif tag == _SEQ:
            self._count(len(node.value), node)
            value = [self._build_item(child, (*path, i)) for i, child in enumerate(node.value)]
        else:
            return self.construct_object(node, deep=True)
        self.built[id(node)] = value
        self.sizes[id(node)] = self.count - before
        return value

    def _count(self, values: int, node: yaml.Node) -> None:
        self.count += values
        if self.count > MAX_VALUES:
            raise ConfigError(
                f"{self.display}:{node.start_mark.line + 1}: the YAML builds more than {MAX_VALUES:,} values "
                "(aliases expanded)",
                "is an alias repeated many times (an alias bomb)?",
            )

    def _build_item(self, node: yaml.Node, path: Path) -> Any:
        self.lines[path] = node.start_mark.line + 1
        return self.build(node, path)

    def _build_mapping(self, node: yaml.MappingNode, path: Path) -> dict:
        merged = self.may_merge and any(key.tag == _MERGE for key, _ in node.value)
        if merged:
            self.flatten_mapping(node)  # merged keys come first and may be overridden: not duplicates
        data: dict = {}
        lines = self.lines
        self._count(len(node.value), node)
        for key_node, value_node in node.value:
            # A plain `=` key is PyYAML's `!!value`, which its mappings read as the string "=".
            key = key_node.value if key_node.tag in _STR_KEY_TAGS else self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            dotted_ok = path == _DOTTED_KEYS_ALLOWED or (len(path) >= 2 and path[0] == _SWEEP)
            if type(key) is not str or ("." in key and not dotted_ok):
                _refuse_key(key, f"{self.display}:{line}")
            child = (*path, key)
            if key in data and not merged:
                self.warnings.append(
                    f"{self.display}:{line}: duplicate key `{key}` (also on line {lines[child]}); the last one wins"
                )
            lines[child] = line
            if value_node.tag == _STR and type(value_node) is _ScalarNode:  # the common case, inline
                data[key] = value_node.value
            else:
                data[key] = self.build(value_node, child)
        return data


def _refuse_key(key: Any, where: str) -> None:
    if not isinstance(key, str):
        hint = "quote it" + (" (YAML reads yes/no/on/off as booleans)" if isinstance(key, bool) else "")
        raise ConfigError(f"{where}: key {key!r} is not a string", hint)
    raise ConfigError(f"{where}: key `{key}` contains `.`", "nest it instead: `a: {b: ...}` for `a.b`")


def _construct_no_parse(loader: _LineLoader, node: yaml.Node) -> str:
    """`key: !P {a}` written without quotes: keep the text after the tag, prefixed."""
    source = loader.text[node.start_mark.index : node.end_mark.index]
    return NO_PARSE_PREFIX + source[len(NO_PARSE_PREFIX) :].lstrip()


_LineLoader.add_constructor(NO_PARSE_PREFIX, _construct_no_parse)


def parse_yaml(text: str, display: str) -> tuple[Any, dict[Path, int], list[str]]:
    """Parse YAML text safely; returns the data, the line of every key path, and warnings."""
    loader = _LineLoader(text, display)
    try:
        node = loader.get_single_node()
        data = None if node is None else loader.build(node, ())
    except yaml.MarkedYAMLError as error:
        raise ConfigError(_describe_yaml_error(error, display)) from None
    except yaml.YAMLError as error:
        raise ConfigError(f"{display}: invalid YAML: {error}") from None
    except RecursionError:  # libyaml's composer nests deeper than Python can follow
        raise ConfigError(f"{display}: nested deeper than {MAX_DEPTH} levels") from None
    finally:
        loader.dispose()
    return data, loader.lines, loader.warnings


def read_yaml(path: FsPath, display: str) -> YamlFile:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise ConfigError(f"{display}: not UTF-8 text ({error.reason})") from None
    except OSError as error:
        raise ConfigError(f"{display}: cannot read: {error.strerror}") from None
    data, lines, warnings = parse_yaml(text, display)
    return YamlFile(path, display, data, lines, warnings)


def _describe_yaml_error(error: yaml.MarkedYAMLError, display: str) -> str:
    mark = error.problem_mark or error.context_mark
    where = f"{display}:{mark.line + 1}" if mark is not None else display
    problem = error.problem or error.context or "invalid YAML"
    if "nesting depth" in problem:  # libyaml >= 0.2.6 (PyYAML 6.0.4) stops deep nesting before our own check
        return f"{where}: nested deeper than {MAX_DEPTH} levels"
    if isinstance(error, yaml.constructor.ConstructorError) and "tag" in problem:
        tag = problem.split("tag", 1)[1].strip().strip("'").replace("tag:yaml.org,2002:", "!!")
        return f"{where}: YAML tag {tag} is not allowed (configs are read with a safe loader)"
    return f"{where}: invalid YAML: {problem}"
