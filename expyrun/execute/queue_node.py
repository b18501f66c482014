"""The queue's hooks around a queued folder executed by `python -m expyrun.node` under a worker
(`expyrun worker`, `queue/worker.py`), as `slurm_node.py` holds Slurm's.

Why: a worker stopped by Ctrl-C or SIGTERM (or killed: its node hears SIGTERM from the kernel)
returns its runs to the queue instead of ending them `interrupted`: the folder goes back to
`queued`, with a line in `outputs.log`, and the next worker executes it again in the same folder
with `attempt` + 1 (`EXPYRUN_ATTEMPT`), as a Slurm requeue does, up to `MAX_ATTEMPTS`.
Costs nothing on the launch path: imported only by the node for a folder whose record has `queue`.

It stands in execute/, below the node entry that picks it, beside the other schedulers' hooks; the
queue's own package (`queue/`: the store, enqueueing, the worker) stands above the node, which the
worker forks, so the node imports nothing of it.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from expyrun import console
from expyrun.execute.node_hooks import NodeHooks, refuse_edited_config
from expyrun.run.capture import append_log
from expyrun.run.status import Status

if TYPE_CHECKING:
    from expyrun.run.outcome import Outcome
    from expyrun.run.prepare import PreparedRun

MAX_ATTEMPTS = 3  # executions of one queued folder (a worker stopped or killed during it counts)


class QueueHooks(NodeHooks):
    """A queued folder: attempts named in the log, a stopped attempt returned to the queue."""

    def __init__(self) -> None:
        self.attempt = 1
        self.stopped_by: int | None = None

    def check(self, run_dir: Path, record: dict[str, Any]) -> None:
        """The folder's `config.yml` is the one queued (its sha256 in `run.json`): an edit made while it
        waited would run values its record does not hold, so the attempt fails instead, saying so."""
        refuse_edited_config(run_dir, (record.get("queue") or {}).get("config_sha256"), "the run was queued")

    def starting(self, run_dir: Path, attempt: int) -> None:
        self.attempt = attempt
        if attempt > 1:
            append_log(run_dir, f"expyrun: attempt {attempt} of {MAX_ATTEMPTS} (queue worker pid {os.getppid()})")
        console.info(f"attempt {attempt}: executing {run_dir}")

    def stopped(self, stopped_by: int | None) -> None:
        self.stopped_by = stopped_by

    def take_over_end(self, prepared: PreparedRun, outcome: Outcome) -> int | None:
        """Stopped by its worker (SIGINT/SIGTERM) with attempts left: `queued` again, and the exit code."""
        stopped = self.stopped_by in (signal.SIGINT, signal.SIGTERM)
        if outcome.status != Status.INTERRUPTED or not stopped or self.attempt >= MAX_ATTEMPTS:
            return None
        from expyrun.execute.slurm_node import update_sweep

        append_log(prepared.run_dir, f"expyrun: attempt {self.attempt} stopped by its worker; back in the queue")
        prepared.record.update(status=Status.QUEUED, exit_code=None)
        prepared.write_record()
        update_sweep(prepared.record, Status.QUEUED)
        console.info(f"attempt {self.attempt} stopped: {prepared.run_dir} is queued again")
        return outcome.exit_code
