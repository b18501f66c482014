"""What Slurm says about submitted jobs: one `squeue` call for many runs, and which are gone.

A run recorded `queued` or `running` whose job Slurm no longer holds as pending or running
(cancelled, failed, timed out, purged) will never write its record again: `expyrun list` shows
it `died` and a waiting launch stops waiting for it. `squeue -t all` answers for every job the
controller still knows (finished ones for `MinJobAge`); a job it does not know is gone too, so
`sacct` (which needs accounting) would add nothing to that answer. When `squeue` is missing or
fails, nothing is claimed: the records keep their status.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterable
from typing import Any

# States of a job that may still execute (or is still ending and writing its record).
ACTIVE = frozenset({
    "PENDING", "RUNNING", "SUSPENDED", "COMPLETING", "CONFIGURING", "REQUEUED", "REQUEUE_FED", "REQUEUE_HOLD",
    "RESIZING", "SIGNALING", "STAGE_OUT", "STOPPED", "RESV_DEL_HOLD", "SPECIAL_EXIT", "POWER_UP_NODE",
})  # fmt: skip
TIMEOUT_S = 30.0  # a controller that does not answer in this long is not waited for
_CHUNK = 500  # job ids per squeue call (command lines have limits)


def job_key(slurm: Any) -> str | None:
    """How squeue (`-r`, `%i`) names a run's job: `ARRAY_TASK` for an array task, else the job id."""
    if not isinstance(slurm, dict):
        return None
    if slurm.get("array_job_id") is not None and slurm.get("array_task_id") is not None:
        return f"{slurm['array_job_id']}_{slurm['array_task_id']}"
    if slurm.get("job_id") is not None:
        return str(slurm["job_id"])
    return None


def _query_id(slurm: dict[str, Any]) -> str:
    return str(slurm.get("array_job_id") or slurm.get("job_id"))


def job_states(slurm_records: Iterable[Any], timeout: float = TIMEOUT_S) -> dict[str, str] | None:
    """`{job_key: state}` for the jobs of these `slurm` records that Slurm knows; None when it could not
    be asked (no squeue here, or it failed)."""
    ids = sorted({_query_id(s) for s in slurm_records if job_key(s) is not None})
    if not ids:
        return {}
    squeue = shutil.which("squeue")
    if squeue is None:
        return None
    states: dict[str, str] = {}
    for start in range(0, len(ids), _CHUNK):
        chunk = ",".join(ids[start : start + _CHUNK])
        command = [squeue, "-h", "-r", "-t", "all", "-o", "%i|%T", "-j", chunk]
        try:
            answer = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False,
                                    env=_environment())  # fmt: skip
        except (OSError, subprocess.TimeoutExpired):
            return None
        if answer.returncode != 0:
            if "Invalid job id" in answer.stderr:  # none of these ids is known any more
                continue
            return None
        for line in answer.stdout.splitlines():
            key, _, state = line.strip().partition("|")
            if key:
                states[key] = state.split()[0] if state else ""
    return states


def is_gone(slurm: Any, states: dict[str, str] | None) -> bool:
    """Whether the run's job is known to be no longer pending or running (False when unsure)."""
    key = job_key(slurm)
    if key is None or states is None:
        return False
    return states.get(key, "") not in ACTIVE


class JobStates:
    """One answer of squeue for many runs (None inside: it could not be asked, nothing is claimed)."""

    def __init__(self, states: dict[str, str] | None) -> None:
        self.states = states

    @classmethod
    def ask(cls, slurm_records: Iterable[Any]) -> JobStates:
        return cls(job_states(slurm_records))

    def gone(self, slurm: Any) -> bool:
        return is_gone(slurm, self.states)


def _environment() -> dict[str, str]:
    """squeue prints in the format asked for: a user's SQUEUE_FORMAT and the like are left out."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("SQUEUE_", "SLURM_TIME_FORMAT"))}
