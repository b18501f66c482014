"""What resuming a run folder does to it (SPEC 14), below the ways in that resume it: which runs may
resume, the folder put back to `queued` for its next attempt, and a study trial's `EXPYRUN_RETRY_OF`.

Why: a run stopped by a crash, a reboot or Ctrl-C could only start over in a new folder; a Slurm
requeue alone continued in place. Resuming does what a requeue does: the folder goes back to
`queued`, its log gets a line naming the new attempt (appended: never truncated), and the node entry
executes it with `attempt` + 1 and `EXPYRUN_ATTEMPT` (`commands/resume.py` for one run,
`campaign/resume.py` for a sweep's points), so an entry point that saved a checkpoint in its folder
(its working directory) continues from it. Costs one read and one write of `run.json`.

Refused (one line, exit 2, nothing changed): a folder that is not a run, a study's trial (its study
retries it), a run still queued or running, a completed (or pruned) one.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from expyrun.errors import UsageError
from expyrun.run.capture import append_log
from expyrun.run.record import host_name, load_record, now, write_record
from expyrun.run.status import ACTIVE, UNSUCCESSFUL, Status

RESUMABLE = UNSUCCESSFUL
"""The statuses a run can be resumed from: `interrupted`, `failed`, `died`."""


def resumable_status(record: dict[str, Any], shown: str) -> str:
    """`shown` (the status `list` shows: `died` for a process gone from this host), where a local run
    left `queued` by a launcher that is gone is `died` too (it will never be started)."""
    status = shown
    local = record.get("launcher", "local") == "local" and not any(
        isinstance(record.get(key), dict) for key in ("slurm", "queue", "ray")
    )  # a folder waiting in Slurm's queue, the machine's queue or Ray's is not abandoned by its launcher's end
    if status == Status.QUEUED and local and _gone(record):
        return Status.DIED
    return status


def _gone(record: dict[str, Any]) -> bool:
    """The process the record names ended on this host (another host's cannot be asked: not gone)."""
    pid = record.get("pid")
    if record.get("host") != host_name() or not isinstance(pid, int):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def check_resumable(run_dir: Path, record: dict[str, Any] | None, shown: str) -> dict[str, Any]:
    """`record` (`run_dir`'s, whose status `list` shows as `shown`) when it can be resumed, its status
    the one it is resumed from; a `UsageError` saying why not otherwise."""
    if not isinstance(record, dict) or not record:
        raise UsageError(f"{run_dir}: not a run folder (no readable run.json)",
                         "give a folder such as outputs/NAME/exp.0")  # fmt: skip
    if isinstance(record.get("trial"), dict):  # its study asks Optuna again: the retry gets EXPYRUN_RETRY_OF
        raise UsageError(f"{run_dir} is a study's trial: not resumed on its own",
                         "launch the study again: it retries its failed and dead trials")  # fmt: skip
    status = resumable_status(record, shown)
    if status == Status.COMPLETED:
        again = f"run its config again as a new run: expyrun {run_dir / 'config.yml'}"
        raise UsageError(f"{run_dir} is completed: not resumed", again)
    if status in ACTIVE:
        raise UsageError(f"{run_dir} is {status}: not resumed", "wait for it to end, or stop it first")
    if status not in RESUMABLE:
        raise UsageError(f"{run_dir} is {status}: not resumed", "only an interrupted, failed or died run resumes")
    record["status"] = status  # `died`, where the record still says `running`
    return record


def prepare_attempt(run_dir: Path, record: dict[str, Any]) -> int:
    """Put the folder back to `queued` (as a requeue does) with a line naming the next attempt in its
    log; the number of that attempt (the record's `attempt` is left to whoever starts it, and a sweep
    point's row in `sweep.json` to the caller)."""
    previous = record.get("status")
    attempt = int(record.get("attempt") or 1) + 1
    append_log(run_dir, f"expyrun: resumed ({previous} at {record.get('ended_at') or 'an unknown time'}): "
                        f"attempt {attempt} follows ({host_name()}, {now()})")  # fmt: skip
    record.update(status=Status.QUEUED, exit_code=None, ended_at=None, exception=None, result=None,
                  launcher="local", pid=os.getpid(), host=host_name())  # fmt: skip
    write_record(run_dir, record)
    return attempt


# -- a study's retried trial: EXPYRUN_RETRY_OF -----------------------------------------------------

RETRY_OF_ENV = "EXPYRUN_RETRY_OF"
"""The folder of the trial attempt a retried trial retries (its checkpoint is there), in the trial's
environment; absent for a trial that retries nothing."""


def retried_trial_folder(trial: Any, trials_dir: Path) -> str | None:
    """The folder of the trial that the Optuna trial `trial` retries (the `failed_trial` that Optuna's
    retry callbacks and expyrun's reclaim record), None when it is a first attempt."""
    storage = trial.study._storage
    try:
        number = storage.get_trial_system_attrs(trial._trial_id).get("failed_trial")
    except Exception:  # a storage that cannot say: the trial is taken for a first attempt
        return None
    if not isinstance(number, int) or isinstance(number, bool):
        return None
    try:  # its own folder (`run_dir`, set when it was prepared): maybe another launch's study folder
        failed = storage.get_trial_id_from_study_id_trial_number(trial.study._study_id, number)
        folder = storage.get_trial_user_attrs(failed).get("run_dir")
    except Exception:
        folder = None
    return folder if isinstance(folder, str) else str(trials_dir / f"trial.{number}")


def set_retry_environment(run_dir: Path | str) -> None:
    """`EXPYRUN_RETRY_OF` for the trial about to run in `run_dir` (from its `run.json`'s `retry_of`),
    or removed: a worker runs one trial after another and the last one's must not leak."""
    record = load_record(run_dir)
    retry_of = record.get("retry_of") if isinstance(record, dict) else None
    if isinstance(retry_of, str):
        os.environ[RETRY_OF_ENV] = retry_of
    else:
        os.environ.pop(RETRY_OF_ENV, None)
