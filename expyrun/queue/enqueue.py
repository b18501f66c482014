"""`expyrun CONFIG --queue [--priority N]`: prepare the run, every sweep point or the study's workers, and queue them.

Why here and not in the launch path: the folders are prepared exactly as for Slurm
(`execute/batch.py`: configs, snapshot, git state of the copied code, `queued`), so a
queued folder is a complete record of what will run; only where they wait differs (the machine's
queue folder, `queue/store.py`, instead of Slurm's). Anything that fails before the entries are
added removes every folder this launch made: exit 2, nothing queued. Imported only with `--queue`.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from expyrun import console
from expyrun.config import ResolvedConfig
from expyrun.errors import UsageError
from expyrun.execute.batch import Batch
from expyrun.execute.launch_spec import LaunchSpec
from expyrun.execute.slurm_script import config_digest
from expyrun.queue import store
from expyrun.run.record import now
from expyrun.run.status import Status


class _QueueBatch(Batch):
    """The launch's folders, each recording the queue that executes it."""

    def __init__(self, resolved: ResolvedConfig, argv: list[str], cwd: Path, priority: int, folder: Path) -> None:
        super().__init__(resolved, False, argv, cwd, launcher="queue")  # never --debug (refused in `enqueue`)
        self.queue_fields = {"priority": priority, "folder": str(folder)}

    def prepare(self, resolved: ResolvedConfig, fields: dict[str, Any]) -> Any:
        fields["queue"] = dict(self.queue_fields)  # the node executes it with the queue's hooks
        return super().prepare(resolved, fields)


def enqueue(resolved: ResolvedConfig, launch: LaunchSpec, sweep: Any, study: Any, argv: list[str],
            flags: set[str], priority: int) -> int:  # fmt: skip
    """Prepare the config's folders, add them to the queue, print them (stdout, one a line); exit 0."""
    if "--debug" in flags:
        raise UsageError("--queue with --debug: a debug run executes `__code__` as it is when it starts, "
                         "which a queued run cannot promise", "queue it without --debug")  # fmt: skip
    if launch.launcher != "local":
        raise UsageError(f"--queue with `__launch__.launcher: {launch.launcher}`: the queue executes runs on this "
                         "machine", "use launcher: local, or submit without --queue")  # fmt: skip
    folder = store.writable_folder()  # refused before anything is created
    batch = _QueueBatch(resolved, argv, Path.cwd(), priority=priority, folder=folder)
    added: list[store.Entry] = []
    try:
        if not batch.prepare_launch(launch, sweep, study, "--needed" in flags, "nothing queued"):
            return 0
        batch.record_git()
        for prepared in batch.prepared:  # the worker executes a folder only as it was queued
            prepared.record["queue"]["config_sha256"] = config_digest(prepared.run_dir)
            prepared.write_record()
        if batch.sweep_record is not None:
            batch.sweep_record.detach(status=Status.QUEUED)
        queued_at = now()
        for prepared in batch.prepared:
            added.append(store.add(folder, prepared.run_dir, priority, queued_at))
    except BaseException:
        for entry in added:
            entry.path.unlink(missing_ok=True)
        batch.discard()
        raise
    finally:
        batch.close_git()
    for prepared in batch.prepared:
        sys.stdout.write(f"{prepared.run_dir}\n")
    what = f"sweep {batch.sweep_folder}: " if batch.sweep_folder is not None else ""
    console.info(f"{what}{len(added)} run{'s' if len(added) != 1 else ''} queued in {folder} (priority {priority}); "
                 "`expyrun worker` executes them")  # fmt: skip
    return 0
