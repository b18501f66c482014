"""Trials left RUNNING by a study process that died without a word: failed, retried, their run.json said so.

A SIGKILL, an out-of-memory kill or a lost node leaves its trials RUNNING in the storage for good:
they would count towards `n_trials` and never run. Every study process looks for them at start and
then once per heartbeat interval: Optuna's `fail_stale_trials` on a database server, liveness
(expyrun/tune/liveness.py: owner pid on this host, heartbeat file seen from another) for a journal
or SQLite file. A dead trial is failed under the study's lock (the state change is the claim: one
process reclaims it), retried with the same parameters up to `max_retry` times, and its `run.json`
(which said `running` for good) says the process died.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from expyrun.console import visible
from expyrun.run.record import load_record, mark_finished, write_record
from expyrun.run.status import ACTIVE, Status
from expyrun.tune import optuna_compat as compat
from expyrun.tune.liveness import Liveness, owner_of, process_alive
from expyrun.tune.spec import StudySpec


def reclaim_dead_trials(
    study: Any, spec: StudySpec, liveness: Liveness | None, lock: Callable[[], AbstractContextManager[Any]]
) -> None:
    """Fail and retry the RUNNING trials whose study process is gone; `lock`: the study's lock."""
    import optuna

    if liveness is None:
        if spec.is_rdb and not spec.is_sqlite:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                optuna.storages.fail_stale_trials(study)
        return
    running = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
    if not any(liveness.is_dead(t) for t in running):
        return
    with lock():
        for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
            if not liveness.is_dead(trial):
                continue
            try:
                if not study._storage.set_trial_state_values(trial._trial_id, optuna.trial.TrialState.FAIL):
                    continue
            except optuna.exceptions.UpdateFinishedTrialError:
                continue
            retried = compat.retry(study, trial, spec.max_retry)
            liveness.release(trial._trial_id)
            owner = owner_of(trial)
            mark_dead(trial.user_attrs.get("run_dir"), owner)
            again = "queued again" if retried else f"not retried again (max_retry {spec.max_retry})"
            print(visible(f"expyrun: trial {trial.number} was left running by {owner}, which is gone: failed, "
                          f"{again}"), flush=True)  # fmt: skip


def settle_left_trials(study_dir: Path, how: str, inline: bool) -> int:
    """In the launcher, once the study's process has ended: its trials still `queued` or `running`
    (whose process is gone) are recorded `failed`, saying how the study process ended; their
    number. An inline trial shares the study's process, so its `os._exit` or segfault ends the
    study: its record says so."""
    trials = study_dir / "trials"
    try:
        folders = list(trials.iterdir())
    except OSError:
        return 0
    settled = 0
    for folder in folders:
        record = load_record(folder)
        if not record or record.get("status") not in ACTIVE:
            continue
        pid = record.get("pid")
        if isinstance(pid, int) and process_alive(pid, None):  # a worker that outlived the study
            continue
        if inline:
            message = (
                f"the study process ended while this trial ran in it ({how}): an inline trial (isolation: inline) "
                "shares the study's process, so its os._exit, a crash or a kill ends the study; the trial is "
                "failed and retried (use isolation: process to keep the study going)"
            )
        else:
            message = f"the study process ended while this trial was {record.get('status')} ({how})"
        mark_finished(record, Status.FAILED, 1, exception={"type": "Died", "message": message},
                      result=record.get("result"), duration_s=record.get("duration_s"))  # fmt: skip
        if isinstance(record.get("trial"), dict):
            record["trial"]["state"] = "FAIL"
        with contextlib.suppress(OSError):
            write_record(folder, record)
        settled += 1
    return settled


def mark_dead(run_dir: str | None, owner: str) -> None:
    """The run.json of a trial whose driver died says so (it said `running` for good)."""
    if not run_dir:
        return
    record = load_record(run_dir)
    if not record or record.get("status") not in ACTIVE:
        return
    message = f"the study process running this trial ({owner}) died; the trial was failed and retried"
    mark_finished(record, Status.FAILED, record.get("exit_code"), exception={"type": "Died", "message": message},
                  result=record.get("result"), duration_s=record.get("duration_s"))  # fmt: skip
    if isinstance(record.get("trial"), dict):
        record["trial"]["state"] = "FAIL"
    with contextlib.suppress(OSError):
        write_record(run_dir, record)
