"""YAML writing of configs, keeping key order.

Every run writes its config twice (`raw_config.yml`, `config.yml`); at 50,000 keys, writing them
with `yaml.dump` took longer than resolving the config. The text must be byte for byte what
`yaml.dump(data, Dumper=CSafeDumper, sort_keys=False, allow_unicode=True, default_flow_style=False)`
writes (property tests compare them on generated trees), obtained in one of two ways:

- The block layout of mappings, lists and scalars written plain or in single quotes, on lines
  short enough that libyaml never folds them, is written here directly (about 4x faster than
  libyaml at 50,000 keys). Which style libyaml picks for a scalar follows its analysis
  (`yaml_emitter_analyze_scalar`) and PyYAML's implicit typing.
- Anything else (double-quoted or folded scalars, shared subtrees written as anchors and aliases,
  dates, long keys) goes to libyaml (`CSafeDumper` when PyYAML has it) for the whole file. Even
  then the nodes of the plain config types are built here rather than by PyYAML's generic
  representer, and the resolver skips its regexes for words no YAML type can start with.

Without libyaml, PyYAML's pure-Python dumper writes everything (its choices differ in corners).
"""

from __future__ import annotations

import gc
import io
import json
import os
import re
from collections.abc import Iterable
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

_LIBYAML = hasattr(yaml, "CSafeDumper")  # what the hand-written path mirrors, byte for byte
_BaseDumper = yaml.CSafeDumper if _LIBYAML else yaml.SafeDumper
_STR = "tag:yaml.org,2002:str"
_INT = "tag:yaml.org,2002:int"
_BOOL = "tag:yaml.org,2002:bool"
_NULL = "tag:yaml.org,2002:null"
_MAP = "tag:yaml.org,2002:map"
_SEQ = "tag:yaml.org,2002:seq"
# First characters of plain scalars that YAML 1.1 may read as something else than a string.
_TYPED_FIRST_CHARS = frozenset(ch for ch in yaml.resolver.Resolver.yaml_implicit_resolvers if ch)


class _ConfigDumper(_BaseDumper):  # type: ignore[misc, valid-type]
    """PyYAML's safe dumper, representing config trees without its per-value generic dispatch."""

    def represent(self, data: Any) -> None:
        self.shared: dict[int, Node] = {}
        self.serialize(self._node(data))
        self.shared, self.alias_key = {}, None
        self.represented_objects: dict[int, Node] = {}
        self.object_keeper: list[Any] = []

    def _node(self, value: Any) -> Node:
        """The node `SafeRepresenter.represent_data` makes for `value` (flow style off, order kept)."""
        kind = type(value)
        if kind is str:
            return ScalarNode(_STR, value)
        if kind is dict or kind is list:
            node = self.shared.get(id(value))
            if node is not None:  # the same object twice: the emitter writes an anchor and an alias
                return node
            items: list = []
            if kind is dict:
                node = self.shared[id(value)] = MappingNode(_MAP, items, flow_style=False)
                for key, child in value.items():  # string keys and values inline: most of a config
                    items.append(
                        (
                            ScalarNode(_STR, key) if type(key) is str else self._node(key),
                            ScalarNode(_STR, child) if type(child) is str else self._node(child),
                        )
                    )
            else:
                node = self.shared[id(value)] = SequenceNode(_SEQ, items, flow_style=False)
                for child in value:
                    items.append(ScalarNode(_STR, child) if type(child) is str else self._node(child))
            return node
        if kind is int:
            return ScalarNode(_INT, str(value))
        if kind is bool:
            return ScalarNode(_BOOL, "true" if value else "false")
        if value is None:
            return ScalarNode(_NULL, "null")
        if kind is float:
            self.alias_key = None  # floats are never aliased; a rare value may have left its key set
            return self.represent_float(value)
        return self.represent_data(value)  # dates and anything rarer: PyYAML's own representer

    def descend_resolver(self, current_node: Any, current_index: Any) -> None:
        """No path resolvers are registered: skip PyYAML's per-node bookkeeping."""

    def ascend_resolver(self) -> None:
        pass

    def resolve(self, kind: type, value: Any, implicit: tuple[bool, bool]) -> str:
        """PyYAML's implicit typing, with a shortcut for the words no other type can start with.

        The emitter asks twice per scalar: would it read back as written plain (`implicit[0]`), and
        quoted (always a string: no path resolvers are registered).
        """
        if kind is ScalarNode:
            if not implicit[0]:
                return _STR
            if value and value[0] not in _TYPED_FIRST_CHARS:
                return _STR
            if value.isdigit() and value.isascii() and (value[0] != "0" or value == "0"):
                return _INT  # base 10; a leading 0 is octal or a string: PyYAML decides
        return super().resolve(kind, value, implicit)


def dump_yaml(data: Any) -> str:
    """`data` as block-style YAML, keys in their order, unicode written as is.

    The cyclic garbage collector is paused meanwhile: many small objects and no cycles, and its
    full scans of the whole config tree made writing a large config slow.
    """
    collecting = gc.isenabled()
    gc.disable()
    try:
        text = _BlockWriter().write(data) if _LIBYAML else None
        return text if text is not None else _libyaml_dump(data)
    finally:
        if collecting:
            gc.enable()


# The first line of a resolved config (`config.yml`): what the run received, read back as written.
RESOLVED_MARK = "# expyrun: resolved config"
_PENDING_MARK = "# expyrun: interpolated when read: "


def dump_resolved(data: dict, pending: Iterable[tuple[str | int, ...]] = ()) -> str:
    """`data` as YAML, marked as resolved so that reading it back never interpolates it again.

    A stored `config.yml` holds the values the run received: `$HOME/x` that the user protected
    with `!P`, or `{model}` that came from the environment, must come back as that text, not as
    the home folder or the value of `model`. Only the `pending` paths (secrets, kept as their
    `$NAME` reference, and command-line overrides not yet applied) are interpolated when the
    file is read; they are listed in the second line as JSON lists of path segments.
    """
    header = f"{RESOLVED_MARK}: the values the run received, read back as written (raw_config.yml re-resolves)\n"
    paths = sorted({tuple(path) for path in pending}, key=lambda path: [str(segment) for segment in path])
    if paths:
        header += _PENDING_MARK + json.dumps([list(path) for path in paths], ensure_ascii=False) + "\n"
    return header + dump_yaml(data)


def read_resolved_mark(path: str | os.PathLike) -> list[tuple[str | int, ...]] | None:
    """The paths to interpolate in a file written by `dump_resolved`; None for any other config."""
    if not os.path.isfile(path):  # a FIFO or a device, already read once: never a stored config
        return None
    try:
        with open(path, encoding="utf-8", errors="replace") as file:
            first, second = file.readline(), file.readline()
    except OSError:
        return None
    if not first.startswith(RESOLVED_MARK):
        return None
    if not second.startswith(_PENDING_MARK):
        return []
    try:
        listed = json.loads(second[len(_PENDING_MARK) :])
    except ValueError:
        listed = None
    if not isinstance(listed, list) or not all(isinstance(item, list) and item for item in listed):
        from expyrun.errors import ConfigError

        raise ConfigError(
            f"{path}:2: the list of values to interpolate is not readable",
            "restore the line as expyrun wrote it, or rerun the run's raw_config.yml",
        )
    return [tuple(item) for item in listed]


def _libyaml_dump(data: Any) -> str:
    """The general case, through libyaml."""
    stream = io.StringIO()
    dumper = _ConfigDumper(stream, allow_unicode=True, default_flow_style=False, sort_keys=False)
    try:
        dumper.open()
        dumper.represent(data)
        dumper.close()
    finally:
        dumper.dispose()
    return stream.getvalue()


class _Unsupported(Exception):
    """Something libyaml would write in a way `_BlockWriter` does not: let libyaml write it all."""


# Characters libyaml writes as they are (allow_unicode): printable (`IS_PRINTABLE`), no line break
# (U+2028/U+2029 are breaks), nothing above U+FFFF (libyaml escapes those). Others: double quotes.
_not_as_is_unicode: Any = None


def _not_as_is(text: str) -> Any:
    """A character libyaml would not write as it is; the Unicode pattern (a few milliseconds to
    compile, at every launch) is compiled only for text that is not ASCII (ASCII: a control
    character or DEL, which `isprintable` tells without a pattern)."""
    global _not_as_is_unicode
    if text.isascii():
        return not text.isprintable()
    if _not_as_is_unicode is None:
        _not_as_is_unicode = re.compile("[^\x20-\x7e\xa0-\u2027\u202a-\ud7ff\ue000-\ufefe\uff00-\ufffd]").search
    return _not_as_is_unicode(text)


_START_INDICATORS = frozenset("#,[]{}&*!|>'\"%@`")
_WORD_PUNCTUATION = str.maketrans("", "", "_./-")


def _is_word(text: str) -> bool:
    """`[A-Za-z0-9_][A-Za-z0-9_./-]*`, the common case (plain if typed as str), read with str methods:
    compiling the pattern cost every launch 0.1 ms."""
    if not text or not text.isascii() or not (text[0].isalnum() or text[0] == "_"):
        return False
    rest = text.translate(_WORD_PUNCTUATION)
    return not rest or rest.isalnum()


_WIDTH = 80  # libyaml's default best_width: it may fold a scalar at a space beyond that column
_SIMPLE_KEY_BYTES = 128  # keys longer than this in UTF-8 are written as `? key` by libyaml
_RESOLVER = yaml.resolver.Resolver()


def _plain_typed_as_str(text: str) -> bool:
    """Whether YAML reads `text`, written plain, back as a string (else libyaml quotes it)."""
    if text[0] not in _TYPED_FIRST_CHARS:
        return True
    return _RESOLVER.resolve(ScalarNode, text, (True, False)) == _STR


def _str_style(text: str) -> str:
    """`text` as libyaml writes a string in block context: plain when it may, else single-quoted.

    Mirrors `yaml_emitter_analyze_scalar` for text without line breaks or special characters
    (the caller checked): plain is ruled out by a leading or trailing space, `---`/`...`, an
    indicator first (`- `, `? `, `: ` or one of `#,[]{}&*!|>'"%@``), `: ` or a final `:`
    anywhere, and ` #`; then by implicit typing (`12`, `true`, `~` are quoted to stay strings).
    """
    if not text:
        return "''"
    plain = not (
        text[0] == " "
        or text[-1] == " "
        or text.startswith(("---", "..."))
        or text[0] in _START_INDICATORS
        or (text[0] in "?-" and (len(text) == 1 or text[1] == " "))
        or ": " in text
        or text[-1] == ":"
        or " #" in text
    )
    if plain and _plain_typed_as_str(text):
        return text
    return "'" + text.replace("'", "''") + "'"


def _float_text(value: float) -> str:
    """`SafeRepresenter.represent_float`'s text: `.nan`, `.inf`, and `1e17` as `1.0e+17`."""
    if value != value:
        return ".nan"
    if value in (_INF, -_INF):
        return ".inf" if value > 0 else "-.inf"
    text = repr(value).lower()
    return text.replace("e", ".0e", 1) if "." not in text and "e" in text else text


_INF = float("inf")


class _BlockWriter:
    """Writes a config tree as libyaml would, or says it cannot (`write` returns None)."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.seen: set[int] = set()  # containers met: a second meeting is an alias for libyaml
        self.strings: dict[str, tuple[str, bool]] = {}  # text -> (as written, has a space)

    def write(self, data: Any) -> str | None:
        if type(data) is not dict or not data:
            return None
        try:
            self._mapping(data, 0, "")
        except _Unsupported:
            return None
        return "".join(self.lines)

    def _mapping(self, mapping: dict, column: int, lead: str) -> None:
        """Entries at `column`; the first line starts with `lead` (a list item's `- `)."""
        self._enter(mapping)
        pad = " " * column
        for key, value in mapping.items():
            head = lead + self._key(key) + ":"
            lead = pad
            kind = type(value)
            if kind is dict and value:
                self.lines.append(head + "\n")
                self._mapping(value, column + 2, " " * (column + 2))
            elif kind is list and value:
                self.lines.append(head + "\n")
                self._sequence(value, column, pad)  # libyaml does not indent a list in a mapping
            else:
                self.lines.append(head + " " + self._scalar(value, len(head) + 1) + "\n")

    def _sequence(self, items: list, column: int, lead: str) -> None:
        """Items `- ` at `column`; the first line starts with `lead`."""
        self._enter(items)
        pad = " " * column
        for item in items:
            head = lead + "- "
            lead = pad
            kind = type(item)
            if kind is dict and item:
                self._mapping(item, column + 2, head)
            elif kind is list and item:
                self._sequence(item, column + 2, head)
            else:
                self.lines.append(head + self._scalar(item, len(head)) + "\n")

    def _enter(self, container: dict | list) -> None:
        if id(container) in self.seen:
            raise _Unsupported
        self.seen.add(id(container))

    def _string(self, text: str) -> tuple[str, bool]:
        known = self.strings.get(text)
        if known is None:
            if _is_word(text):
                written = text if _plain_typed_as_str(text) else f"'{text}'"
                known = (written, False)
            elif _not_as_is(text):
                raise _Unsupported  # double quotes, escapes, line breaks
            else:
                known = (_str_style(text), " " in text)
            self.strings[text] = known
        return known

    def _key(self, key: Any) -> str:
        written = self._string(key)[0] if type(key) is str else self._scalar(key, 0)
        raw = key if type(key) is str else written
        if len(raw) * 4 > _SIMPLE_KEY_BYTES and len(raw.encode()) > _SIMPLE_KEY_BYTES:  # UTF-8: 4 bytes at most
            raise _Unsupported
        return written

    def _scalar(self, value: Any, column: int) -> str:
        """`value` written at `column` of its line: a scalar, or an empty mapping or list."""
        kind = type(value)
        if kind is str:
            written, spaced = self._string(value)
            if spaced and column + len(written) > _WIDTH:
                raise _Unsupported  # libyaml would fold it at a space
            return written
        if kind is int:
            return str(value)
        if kind is bool:
            return "true" if value else "false"
        if value is None:
            return "null"
        if kind is float:
            return _float_text(value)
        if kind is dict or kind is list:
            self._enter(value)
            return "{}" if kind is dict else "[]"
        raise _Unsupported  # dates and rarer types: PyYAML's representer
