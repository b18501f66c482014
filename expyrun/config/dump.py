"""YAML writing of configs, keeping key order.

Every run writes its config twice (`raw_config.yml`, `config.yml`), so at 50,000 keys the writing
costs as much as the resolution. libyaml emits the text (`CSafeDumper` when PyYAML has it), but
`yaml.dump` would still represent every value through PyYAML's generic Python representer and
resolve every scalar twice through its regex resolver. Here the nodes of the plain config types
are built directly, exactly as `SafeRepresenter` builds them (shared mappings and lists still
become anchors and aliases), other types go through the representer, and the resolver skips the
regexes for words no YAML type can start with. The text is byte for byte what
`yaml.dump(data, Dumper=CSafeDumper, sort_keys=False, allow_unicode=True, default_flow_style=False)`
writes (a property test compares them).
"""

from __future__ import annotations

import gc
import io
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

_BaseDumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
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
        self.shared, self.represented_objects, self.object_keeper, self.alias_key = {}, {}, [], None

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

    The cyclic garbage collector is paused meanwhile: a node per value and no cycles, and its
    full scans of the whole config tree are what made writing a large config slow.
    """
    stream = io.StringIO()
    dumper = _ConfigDumper(stream, allow_unicode=True, default_flow_style=False, sort_keys=False)
    collecting = gc.isenabled()
    gc.disable()
    try:
        dumper.open()
        dumper.represent(data)
        dumper.close()
    finally:
        dumper.dispose()
        if collecting:
            gc.enable()
    return stream.getvalue()
