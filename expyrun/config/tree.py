"""Dotted keys over nested mappings and lists.

A path is a tuple of segments: `str` for a mapping key, `int` for a list index. Users write
paths dotted (`layers.0.width`); a digit segment indexes a list and names a key in a mapping.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

Segment = str | int
Path = tuple[Segment, ...]

MISSING = object()


def dotted(path: Path) -> str:
    """The dotted form of a path, as users write it."""
    return ".".join(str(segment) for segment in path)


def split_dotted(key: str) -> list[str]:
    """Split a dotted key into its raw text segments."""
    return key.split(".")


def children(value: Any) -> Iterator[tuple[Segment, Any]]:
    """The (segment, child) pairs of a mapping or list."""
    if isinstance(value, dict):
        yield from value.items()
    elif isinstance(value, list):
        yield from enumerate(value)


def step(node: Any, segment: str) -> tuple[Segment, Any]:
    """Follow one textual segment from `node`; returns the typed segment and the child.

    The child is `MISSING` when it does not exist.
    """
    if isinstance(node, dict):
        return segment, node.get(segment, MISSING)
    if isinstance(node, list) and segment.isdigit():
        index = int(segment)
        return index, node[index] if index < len(node) else MISSING
    return segment, MISSING


def lookup(tree: Any, key: str) -> tuple[Path, Any] | None:
    """Find a dotted key in a tree: its typed path and value, or None when absent."""
    node = tree
    path: list[Segment] = []
    for segment in split_dotted(key):
        typed, node = step(node, segment)
        if node is MISSING:
            return None
        path.append(typed)
    return tuple(path), node


def get(tree: Any, path: Path) -> Any:
    for segment in path:
        tree = tree[segment]
    return tree


def set_at(tree: Any, path: Path, value: Any) -> None:
    get(tree, path[:-1])[path[-1]] = value


def flatten(tree: Any, prefix: Path = ()) -> dict[Path, Any]:
    """Every leaf of a tree by path; empty mappings and lists below the root are leaves too."""
    flat: dict[Path, Any] = {}
    if tree or prefix:
        _flatten_into(tree, prefix, flat)
    return flat


def _flatten_into(node: Any, prefix: Path, flat: dict[Path, Any]) -> None:
    if isinstance(node, (dict, list)) and node:
        for segment, child in children(node):
            _flatten_into(child, (*prefix, segment), flat)
    else:
        flat[prefix] = node


def unflatten(flat: dict[Path, Any]) -> Any:
    """Rebuild a tree from `flatten`'s output; int segments become list indices."""
    if () in flat:
        return flat[()]
    root: dict = {}
    for path, value in flat.items():
        node: Any = root
        for segment, following in itertools.pairwise(path):
            if isinstance(node, list):
                while len(node) <= segment:  # type: ignore[operator]
                    node.append(None)
                if node[segment] is None:  # type: ignore[index]
                    node[segment] = [] if isinstance(following, int) else {}  # type: ignore[index]
                node = node[segment]  # type: ignore[index]
            else:
                node = node.setdefault(segment, [] if isinstance(following, int) else {})
        last = path[-1]
        if isinstance(node, list):
            while len(node) <= last:  # type: ignore[operator]
                node.append(None)
        node[last] = value
    return root


def all_keys(tree: Any, prefix: Path = ()) -> Iterator[Path]:
    """Every path of a tree, inner nodes included (for suggestions)."""
    for segment, child in children(tree):
        path = (*prefix, segment)
        yield path
        yield from all_keys(child, path)


def copy_tree(node: Any) -> Any:
    """A deep copy of a config tree (mappings, lists and immutable scalars), faster than deepcopy."""
    if type(node) is dict:
        return {key: copy_tree(value) if type(value) in (dict, list) else value for key, value in node.items()}
    if type(node) is list:
        return [copy_tree(value) if type(value) in (dict, list) else value for value in node]
    return node
