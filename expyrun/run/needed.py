"""`--needed`: find a completed run of the same resolved config and the same code, to reuse it.

Two runs are the same when their resolved configs are equal once `__run__.__code__` (which names
each run's own folder) is set aside, and their code snapshots have the same sha256. The sha256 of
the code about to run is computed without copying anything (the store's stat index spares
re-reading unchanged files).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, NamedTuple

from expyrun import console
from expyrun.config import ResolvedConfig
from expyrun.config.tree import copy_tree
from expyrun.run.prepare import CODE_FOLDER, STORE_FOLDER, run_base, snapshot_source
from expyrun.run.record import RUN_FILE
from expyrun.run.status import Status


def code_digest(resolved: ResolvedConfig, ignored: set[str] | None = None) -> str:
    """The `snapshot.sha256` a run of `resolved` would record."""
    from expyrun.run.snapshot import take_snapshot

    run = resolved.run
    source = snapshot_source(run)
    store = run.output_dir / STORE_FOLDER
    name = CODE_FOLDER if run.is_command else None
    snapshot = take_snapshot(
        source, Path("/nonexistent"), store, run.max_file_mb, run.output_dir, ignored, dry=True, name=name
    )
    return str(snapshot.as_record()["sha256"])


def comparable(config: Any) -> Any:
    """A resolved config as compared by `--needed`: without `__run__.__code__`."""
    config = copy_tree(config)
    if isinstance(config, dict) and isinstance(config.get("__run__"), dict):
        config["__run__"].pop("__code__", None)
    return config


class Done(NamedTuple):
    """A completed run `--needed` reuses: its folder and its record (whose result a sweep shows)."""

    run_dir: Path
    record: dict[str, Any]


def find_done(resolved: ResolvedConfig, digest: str) -> Path | None:
    """The newest completed run in the name folder with the same config and code, if any."""
    done = find_done_run(resolved, digest)
    return None if done is None else done.run_dir


def find_done_run(resolved: ResolvedConfig, digest: str) -> Done | None:
    """`find_done` with the reused run's record.

    A name folder may hold folders expyrun did not write (another tool's `run.json`, a damaged or
    crafted one): they are not runs, so they are passed over with a warning, never trusted.
    """
    base = run_base(resolved, debug=False)
    try:
        names = os.listdir(base)
    except OSError:
        return None
    wanted = comparable(resolved.for_disk())
    indexed = sorted((int(n[4:]), n) for n in names if n.startswith("exp.") and n[4:].isdigit())
    for _, name in reversed(indexed):
        run_dir = base / name
        record = _run_record(run_dir)
        if record is None or record.get("status") != Status.COMPLETED or record["snapshot"].get("sha256") != digest:
            continue
        if _stored_config(run_dir) == wanted:
            return Done(run_dir, record)
    return None


def _run_record(run_dir: Path) -> dict[str, Any] | None:
    """The record of a run folder with a snapshot; None (with a warning when a run.json is there but
    is not a run record) otherwise."""
    from expyrun.run.record import load_record, record_problem

    record = load_record(run_dir)
    if record is None:
        return None
    problem = record_problem(record)
    if problem is not None:
        console.warning(f"{run_dir / RUN_FILE} is not a run record ({problem}): not reused (--needed)")
        return None
    snapshot = record.get("snapshot")
    return record if isinstance(snapshot, dict) else None


def _stored_config(run_dir: Path) -> Any:
    """A run's stored `config.yml` as `comparable` gives it; None when it cannot be read."""
    from expyrun.config.yaml_reader import read_yaml
    from expyrun.errors import ConfigError

    try:
        return comparable(read_yaml(run_dir / "config.yml", str(run_dir / "config.yml")).data)
    except (ConfigError, RecursionError):
        return None
