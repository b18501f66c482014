"""Studies on a real PostgreSQL server: shared by two workers, and a killed worker's trial retried."""

from __future__ import annotations

import json
import signal
import time

import optuna  # the test extra installs it: a missing one is a failure, not a skip
from conftest import start_expyrun, write
from test_tune import OBJECTIVE, STUDY


def launch(project, *args):
    return start_expyrun(["tune.yml", *args], project)


def study_config(url: str, name: str, n_trials: int) -> str:
    return STUDY.replace(
        "n_trials: 6",
        f"""n_trials: {n_trials}
  study_name: {name}
  storage: {url}
  heartbeat_interval: 1
  grace_period: 3""",
    )


def test_two_workers_share_a_postgres_study(project, postgres_url):
    write(project / "pkg" / "main.py", OBJECTIVE)
    write(project / "tune.yml", study_config(postgres_url, "shared", 8) + "sleep: 0.2\n")
    workers = [launch(project) for _ in range(2)]
    for worker in workers:
        _, stderr = worker.communicate(timeout=180)
        assert worker.returncode == 0, stderr
    study = optuna.load_study(study_name="shared", storage=postgres_url)
    assert sorted(t.number for t in study.trials) == list(range(8))
    assert all(t.state.is_finished() and t.state != optuna.trial.TrialState.FAIL for t in study.trials)
    folders = list((project / "outputs" / "tune").glob("exp.*"))
    assert len(folders) == 2 and all((f / "trials").is_dir() for f in folders)


def test_a_killed_workers_trial_is_retried(project, postgres_url):
    write(project / "pkg" / "main.py", OBJECTIVE)
    write(project / "tune.yml", study_config(postgres_url, "retried", 3) + "sleep: 60\n")
    first = launch(project)
    trial_log = project / "outputs" / "tune" / "exp.0" / "trials" / "trial.0" / "outputs.log"
    deadline = time.monotonic() + 60
    while (not trial_log.exists() or "evaluating" not in trial_log.read_text()) and time.monotonic() < deadline:
        time.sleep(0.1)
    first.send_signal(signal.SIGKILL)
    first.communicate(timeout=60)
    time.sleep(4)  # past the grace period: trial 0's heartbeat is stale
    second = launch(project, "--sleep", "0")
    _, stderr = second.communicate(timeout=180)
    assert second.returncode == 0, stderr
    study = optuna.load_study(study_name="retried", storage=postgres_url)
    by_number = {t.number: t for t in study.trials}
    assert by_number[0].state == optuna.trial.TrialState.FAIL
    retries = [t for t in study.trials if t.system_attrs.get("failed_trial") == 0]
    assert retries and retries[0].state == optuna.trial.TrialState.COMPLETE
    assert retries[0].params == by_number[0].params
    summary = json.loads((project / "outputs" / "tune" / "exp.1" / "study.json").read_text())
    # n_trials is the total of counted trials: the failed trial 0 was retried, so its retry counts in its place
    assert summary["counts"] == {"FAIL": 1, "COMPLETE": 3} and summary["counted_trials"] == 3
