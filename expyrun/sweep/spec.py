"""The `__sweep__` section and the points it names: variants x grid x zip.

Points are generated lazily, in SPEC order (variants outermost, then the grid with its first key
outermost, the zip innermost), so a sweep of a million points costs memory for one at a time.
Keys are checked against the raw config, and values converted to the type they replace, as
command-line overrides are (`+key` adds a key); a null unsets a part's key or variant.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple

from expyrun.config.overrides import conform, existing_key, referenced
from expyrun.errors import ConfigError, did_you_mean

PARTS = ("name", "grid", "zip", "variants")


@dataclass(frozen=True)
class Point:
    """One point of a sweep: its index, its variant (or None) and the values it sets (dotted keys)."""

    index: int
    variant: str | None
    values: dict[str, Any]


class SweepSpec(NamedTuple):
    name: str
    grid: dict[str, list[Any]]
    zip: dict[str, list[Any]]
    variants: dict[str, dict[str, Any]]

    @property
    def size(self) -> int:
        grid = 1
        for values in self.grid.values():
            grid *= len(values)
        zipped = len(next(iter(self.zip.values()))) if self.zip else 1
        return max(len(self.variants), 1) * grid * zipped

    def points(self) -> Iterator[Point]:
        variants: list[tuple[str | None, dict[str, Any]]] = list(self.variants.items()) or [(None, {})]
        grid_keys = list(self.grid)
        zip_keys = list(self.zip)
        zip_rows = list(zip(*self.zip.values(), strict=True)) if zip_keys else [()]
        index = 0
        for variant, fixed in variants:
            for grid_row in itertools.product(*self.grid.values()):
                for zip_row in zip_rows:
                    values = {**fixed, **dict(zip(grid_keys, grid_row, strict=True))}
                    values.update(zip(zip_keys, zip_row, strict=True))
                    yield Point(index, variant, values)
                    index += 1

    def point(self, index: int) -> Point:
        """Point `index` alone, as `points()` would yield it, without producing those before it (the
        sweep record writes a point's values when it first hears of it)."""
        if not 0 <= index < self.size:
            raise IndexError(f"point {index} of a sweep of {self.size}")
        zipped = len(next(iter(self.zip.values()))) if self.zip else 1
        rest, zip_index = divmod(index, zipped)
        grid_values: list[tuple[str, Any]] = []
        for key, column in reversed(self.grid.items()):  # the last grid key advances fastest
            rest, position = divmod(rest, len(column))
            grid_values.append((key, column[position]))
        variant: str | None = None
        values: dict[str, Any] = {}
        if self.variants:
            variant = list(self.variants)[rest]
            values.update(self.variants[variant])
        values.update(reversed(grid_values))
        values.update((key, column[zip_index]) for key, column in self.zip.items())
        return Point(index, variant, values)


def _err(key: str, message: str, hint: str | None = None) -> ConfigError:
    return ConfigError(f"`__sweep__.{key}`: {message}", hint)


def parse_sweep(section: Any, raw: dict, default_name: str) -> SweepSpec:
    """Validate `__sweep__` against the raw config it sweeps (before anything is created)."""
    if not isinstance(section, dict) or not section:
        raise ConfigError(f"`__sweep__` must be a mapping with grid, zip or variants, got {section!r}")
    for part in section:
        if part not in PARTS:
            raise _err(str(part), "unknown part", did_you_mean(str(part), PARTS, "use grid, zip, variants"))
    name = section.get("name") or default_name
    if not isinstance(name, str) or "/" in name or name in (".", ".."):
        raise _err("name", f"expected a folder name, got {name!r}")
    grid = _lists(section, "grid")
    zipped = _lists(section, "zip")
    lengths = {key: len(values) for key, values in zipped.items()}
    if len(set(lengths.values())) > 1:
        detail = ", ".join(f"{key}: {length}" for key, length in lengths.items())
        raise _err("zip", f"lists of different lengths ({detail})", "zip advances its lists together")
    variants = _variants(section.get("variants"))
    owners: dict[str, str] = {}
    for part, keys in (("grid", grid), ("zip", zipped), *((f"variants.{v}", values) for v, values in variants.items())):
        for key in keys:
            bare = key.removeprefix("+")
            owner = owners.get(bare)
            if owner is not None and not (owner.startswith("variants.") and part.startswith("variants.")):
                raise _err(
                    f"{part}.{key}", f"`{bare}` is also set by `__sweep__.{owner}`", "set a key in one part only"
                )
            owners[bare] = part
    if not grid and not zipped and not variants:
        raise ConfigError("`__sweep__`: no points: give grid, zip or variants")
    grid = {key: [_value(raw, f"grid.{key}", key, item) for item in values] for key, values in grid.items()}
    zipped = {key: [_value(raw, f"zip.{key}", key, item) for item in values] for key, values in zipped.items()}
    variants = {
        variant: {key: _value(raw, f"variants.{variant}.{key}", key, item) for key, item in values.items()}
        for variant, values in variants.items()
    }
    return SweepSpec(name, grid, zipped, variants)


def _value(raw: dict, where: str, key: str, value: Any) -> Any:
    """A point's value converted and checked as `--key VALUE` would be (a new `+key` takes it as YAML
    read it), so a bad value fails before anything is created, naming the key and the value."""
    label = f"`__sweep__.{where}`"
    if key.startswith("+"):
        return conform(None, value, label)
    _, old = existing_key(raw, key, label)
    return conform(referenced(raw, old), value, label)


def _lists(section: dict, part: str) -> dict[str, list[Any]]:
    value = section.get(part)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _err(part, f"expected a mapping of dotted keys to lists, got {value!r}")
    value = {key: values for key, values in value.items() if values is not None}  # null: a child unsets it
    for key, values in value.items():
        if not isinstance(values, list):
            raise _err(f"{part}.{key}", f"expected a list of values, got {values!r}")
        if not values:
            raise _err(f"{part}.{key}", "empty list: a sweep over it has no point")
    return {str(key): values for key, values in value.items()}


def _variants(value: Any) -> dict[str, dict[str, Any]]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not value:
        raise _err("variants", f"expected a mapping of names to mappings of values, got {value!r}")
    value = {name: values for name, values in value.items() if values is not None}  # null: a child unsets it
    for name, values in value.items():
        if not isinstance(values, dict):
            raise _err(f"variants.{name}", f"expected a mapping of dotted keys to values, got {values!r}")
    return {str(name): {str(key): item for key, item in values.items()} for name, values in value.items()}
