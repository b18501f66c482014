"""A sweep point's config and record fields: its values set as overrides are, its `run.json` `sweep`.

The sweep itself runs on the one loop (`expyrun.campaign.sweep`); Slurm's submit side and
`--dry-run` use these too.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from expyrun.config import ResolvedConfig
from expyrun.config.overrides import add_key, existing_key
from expyrun.config.resolve import interpolate, resolution_environ
from expyrun.config.tree import copy_tree, set_at
from expyrun.sweep.record import SWEEP_FILE, SWEEP_LOG, SweepRecord
from expyrun.sweep.references import set_point_references
from expyrun.sweep.spec import Point, SweepSpec

__all__ = [
    "CHECK_LIMIT", "DRY_RUN_POINTS", "SWEEP_FILE", "SWEEP_LOG", "SweepRecord", "check_points", "describe_points",
    "point_config", "point_fields",
]  # fmt: skip


def point_config(resolved: ResolvedConfig, point: Point, cwd: Path) -> ResolvedConfig:
    """The point's config: its values set in the raw config, as overrides are, and its variant and
    index where `{__sweep__.variant}` and `{__sweep__.point}` name them; then interpolated.

    The config without its `__sweep__` section is taken once per sweep (`_base`): copying the section
    for every point made checking a swept list of N values cost N^2."""
    raw, environ = _base(resolved, cwd)
    raw = copy_tree(raw)
    paths = set()
    for key, value in point.values.items():
        label = f"`__sweep__` point {point.index}: {key}"
        if key.startswith("+"):
            paths.add(add_key(raw, key[1:], copy_tree(value), label))
        else:
            path, _ = existing_key(raw, key, label)
            set_at(raw, path, copy_tree(value))
            paths.add(path)
    provenance = resolved.provenance.copy()  # the sweep's config is shared by every point: not changed
    provenance.sweep_paths |= paths
    set_point_references(raw, point.variant, point.index, provenance.where)
    return interpolate(raw, provenance, cwd, environ, [])


_BASE: list[tuple[ResolvedConfig, Path, dict[str, Any], dict[str, str]]] = []  # the last sweep's, see _base


def _base(resolved: ResolvedConfig, cwd: Path) -> tuple[dict[str, Any], dict[str, str]]:
    """The raw config without `__sweep__` and the resolution environment, computed once per sweep
    (per resolved config and folder): every point starts from a copy of it."""
    if _BASE and _BASE[0][0] is resolved and _BASE[0][1] == cwd:
        return _BASE[0][2], _BASE[0][3]
    raw = {key: value for key, value in resolved.raw.items() if key != "__sweep__"}
    raw = copy_tree(raw)
    _BASE[:] = [(resolved, cwd, raw, resolution_environ(cwd))]
    return raw, _BASE[0][3]


def point_fields(folder: Path, point: Point) -> dict[str, Any]:
    """What a point's `run.json` says of its sweep: the sweep folder, the point's index, variant and values."""
    return {"sweep": {"dir": str(folder), "point": point.index, "variant": point.variant, "overrides": point.values}}


CHECK_LIMIT = 10_000  # a sweep up to this size has every point's config checked before anything exists
DRY_RUN_POINTS = 100  # `--dry-run` lists at most this many points (and says how many there are)


def check_points(resolved: ResolvedConfig, spec: SweepSpec, cwd: Path) -> None:
    """Before anything exists: every point's config resolves (names, templates, references: what
    depends on the combination; each value alone was checked by `parse_sweep`). Past `CHECK_LIMIT`
    points only the first is, and each other point is checked as it is prepared: one that fails
    then fails alone and the sweep goes on (checking a million configs would take minutes)."""
    for point in itertools.islice(spec.points(), None if spec.size <= CHECK_LIMIT else 1):
        point_config(resolved, point, cwd)


def describe_points(
    resolved: ResolvedConfig, spec: SweepSpec, cwd: Path, limit: int | None = None
) -> Iterator[dict[str, Any]]:
    """Each point as `--dry-run` prints it: index, variant, values and the run name it resolves to;
    the first `limit` of them, the others (up to `CHECK_LIMIT`) checked as a launch would check them."""
    for point in spec.points():
        if limit is not None and point.index >= limit:
            if spec.size <= CHECK_LIMIT:
                point_config(resolved, point, cwd)
                continue
            return
        config = point_config(resolved, point, cwd)
        yield {"point": point.index, "variant": point.variant, "values": point.values, "name": config.run.name}
