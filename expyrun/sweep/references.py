"""`{__sweep__.variant}` and `{__sweep__.point}`: a sweep point's variant name and index in its config.

A point's values are set in the raw config like overrides (SPEC 9); its variant's name and its index
are not values of the config, yet runs want them in `__name__` (`grid/{__sweep__.variant}/lr{optim.lr}`)
or in a value a template reads. They are written into the point's raw config as text before it is
interpolated, as if the user had typed them, so both stored configs hold them and `raw_config.yml`
still resolves alone (no `__sweep__` is left to refer to). The sweep's own config, never run itself,
cannot resolve them: its warnings about them are not shown (`point_only`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from expyrun.config.tree import Path, dotted
from expyrun.config.yaml_reader import NO_PARSE_PREFIX
from expyrun.errors import ConfigError, did_you_mean

PREFIX = "{__sweep__."
FIELDS = ("variant", "point")
_REFERENCE = re.compile(r"\{__sweep__\.([A-Za-z0-9_.\-]*)\}")
_INTERPOLATED = ("$", "{", "}")  # a variant name holding one would be read as a reference


def point_only(message: str) -> bool:
    """A warning of the sweep's own config about a reference only a point resolves."""
    return f"reference {PREFIX}" in message


def set_point_references(
    node: Any, variant: str | None, index: int, where: Callable[[Path], str], path: Path = ()
) -> Any:
    """`node` (a raw config, changed in place) with every `{__sweep__.FIELD}` replaced by the point's
    value: a whole-value reference by the value itself (the index stays an int), one inside a longer
    text by its text. `!P` values are left as written, as interpolation leaves them."""
    if isinstance(node, dict):
        for key, child in node.items():
            node[key] = set_point_references(child, variant, index, where, (*path, key))
    elif isinstance(node, list):
        for position, child in enumerate(node):
            node[position] = set_point_references(child, variant, index, where, (*path, position))
    elif isinstance(node, str) and PREFIX in node and not node.startswith(NO_PARSE_PREFIX):
        return _substitute(node, {"variant": variant, "point": index}, lambda: f"{where(path)}: `{dotted(path)}`")
    return node


def _substitute(text: str, values: dict[str, Any], where: Callable[[], str]) -> Any:
    def value(match: re.Match[str]) -> Any:
        field = match.group(1)
        if field not in values:
            hint = did_you_mean(field, FIELDS, f"a sweep point knows {', '.join(PREFIX + f + '}' for f in FIELDS)}")
            raise ConfigError(f"{where()}: {match.group(0)} is not a value of a sweep point", hint)
        found = values[field]
        if found is None:
            raise ConfigError(
                f"{where()}: {match.group(0)}: this sweep has no variants", "name the points with __sweep__.variants"
            )
        if isinstance(found, str) and any(char in found for char in _INTERPOLATED):
            raise ConfigError(
                f"{where()}: {match.group(0)}: the variant name {found!r} holds `$`, `{{` or `}}`, which "
                "interpolation would read",
                "rename the variant",
            )
        return found

    whole = _REFERENCE.fullmatch(text)
    if whole:
        return value(whole)
    return _REFERENCE.sub(lambda match: str(value(match)), text)
