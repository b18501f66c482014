"""`--needed`: find a completed run of the same resolved config and the same code, to reuse it.

Two runs are the same when their resolved configs are equal once `__run__.__code__` (which names
each run's own folder) is set aside, and their code snapshots have the same sha256. The sha256 of
the code about to run is computed without copying anything (the store's stat index spares
re-reading unchanged files).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from expyrun.config import ResolvedConfig
from expyrun.config.tree import copy_tree
from expyrun.run.prepare import CODE_FOLDER, STORE_FOLDER, run_base, snapshot_source


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


def find_done(resolved: ResolvedConfig, digest: str) -> Path | None:
    """The newest completed run in the name folder with the same config and code, if any."""
    from expyrun.config.yaml_reader import read_yaml
    from expyrun.errors import ConfigError

    base = run_base(resolved, debug=False)
    try:
        names = os.listdir(base)
    except OSError:
        return None
    wanted = comparable(resolved.for_disk())
    indexed = sorted((int(n[4:]), n) for n in names if n.startswith("exp.") and n[4:].isdigit())
    for _, name in reversed(indexed):
        run_dir = base / name
        try:
            record = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        snapshot = record.get("snapshot") if isinstance(record, dict) else None
        if record.get("status") != "completed" or not isinstance(snapshot, dict) or snapshot.get("sha256") != digest:
            continue
        try:
            stored = read_yaml(run_dir / "config.yml", str(run_dir / "config.yml")).data
        except ConfigError:
            continue
        if comparable(stored) == wanted:
            return run_dir
    return None
