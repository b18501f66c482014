"""Seeded studies: resumed or shared launches and trial workers never replay one another's draws, the
same commands give the same trials, and what a trial suggests itself is recorded and replayed."""

from __future__ import annotations

import json
from pathlib import Path

import optuna  # the test extra installs it
import pytest
import yaml
from conftest import RUN_SECTION, run_expyrun, trial_records, write

ENTRY = """
import expyrun

def main(name, config):
    trial = expyrun.trial()
    y = trial.suggest_float("y", 0.0, 1.0) if config["inner"] else 0.0
    return config["x"] + y
"""


def study_config(n_trials: int, sampler: str = "RandomSampler", extra: str = "") -> str:
    return RUN_SECTION.replace("demo", "seeded") + (
        f"x: 0.0\ninner: false\n{extra}__optuna__:\n  n_trials: {n_trials}\n"
        f"  sampler: {{name: {sampler}, seed: 0}}\n"
        "  search_space:\n    x: {type: float, low: 0.0, high: 1.0}\n"
    )


@pytest.fixture
def seeded(project: Path) -> Path:
    write(project / "pkg" / "main.py", ENTRY)
    return project


def journal(project: Path) -> optuna.Study:
    from optuna.storages.journal import JournalFileBackend

    backend = JournalFileBackend(str(project / "outputs" / "seeded" / "study.journal"))
    return optuna.load_study(study_name="seeded", storage=optuna.storages.JournalStorage(backend))


def xs(project: Path) -> list[float]:
    """The `x` of every trial of the study, by trial number."""
    return [t.params["x"] for t in sorted(journal(project).trials, key=lambda t: t.number)]


def launch(project: Path, *args: str) -> None:
    result = run_expyrun(["tune.yml", *args], project, timeout=120)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("sampler", ["RandomSampler", "TPESampler"])
def test_a_resumed_seeded_study_never_proposes_a_point_again_and_the_same_commands_give_the_same_trials(
    seeded, tmp_path, sampler
):
    trials = []
    for project in (seeded, tmp_path / "again"):
        if project != seeded:
            write(project / "pkg" / "__init__.py", "")
            write(project / "pkg" / "main.py", ENTRY)
        write(project / "tune.yml", study_config(2, sampler))
        launch(project)
        launch(project, "--__optuna__.n_trials", "4")
        launch(project, "--__optuna__.n_trials", "6")
        trials.append(xs(project))
    assert len(trials[0]) == 6 and len(set(trials[0])) == 6, f"a point was proposed twice: {trials[0]}"
    assert trials[0] == trials[1], "the same commands gave other trials"
    study_dirs = [seeded / "outputs" / "seeded" / f"exp.{i}" for i in range(3)]
    seeds = [json.loads((d / "study.json").read_text())["sampler_seed"] for d in study_dirs]
    assert seeds[0] == 0 and len(set(seeds)) == 3, f"each launch records its own seed: {seeds}"
    for study_dir, seed in zip(study_dirs, seeds, strict=True):
        assert {r["trial"]["sampler_seed"] for r in trial_records(study_dir).values()} == {seed}


def test_a_fresh_seeded_study_proposes_what_plain_optuna_does_with_that_seed(seeded):
    write(seeded / "tune.yml", study_config(4))
    launch(seeded)
    plain = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    plain.optimize(lambda t: t.suggest_float("x", 0.0, 1.0), n_trials=4)
    assert xs(seeded) == [t.params["x"] for t in plain.trials]


def test_seeded_study_workers_never_propose_the_same_point(seeded):
    write(seeded / "tune.yml", study_config(6, extra="__launch__: {workers: 2}\n"))
    launch(seeded)
    points = xs(seeded)
    assert len(points) == 6 and len(set(points)) == 6, f"two workers proposed the same points: {points}"
    study_dirs = sorted((seeded / "outputs" / "seeded").glob("exp.*"))
    seeds = {json.loads((d / "study.json").read_text())["sampler_seed"] for d in study_dirs}
    assert len(study_dirs) == 2 and len(seeds) == 2, f"each worker records its own seed: {seeds}"


@pytest.mark.parametrize("isolation", ["process", "inline"])
def test_a_value_suggested_inside_a_trial_is_drawn_independently_and_recorded_for_a_rerun(seeded, isolation):
    write(seeded / "tune.yml", study_config(6, extra="").replace("inner: false", "inner: true")
          + f"  isolation: {isolation}\n")  # fmt: skip
    launch(seeded)
    trials = sorted(journal(seeded).trials, key=lambda t: t.number)
    same = [t.number for t in trials if t.params["x"] == t.params["y"]]
    assert not same, f"y replayed the study process's draws of x in trials {same}"
    assert len({t.params["y"] for t in trials}) == 6
    study_dir = seeded / "outputs" / "seeded" / "exp.0"
    records = trial_records(study_dir)
    for trial in trials:
        record = records[trial.number]
        assert record["trial"]["params"] == trial.params
        assert record["trial"]["suggested_in_trial"] == ["y"]
        config = yaml.safe_load((study_dir / "trials" / f"trial.{trial.number}" / "config.yml").read_text())
        assert config["__trial__"]["params"] == trial.params

    trial = trials[3]
    rerun = run_expyrun([str(study_dir / "trials" / "trial.3" / "config.yml")], seeded, timeout=60)
    assert rerun.returncode == 0, rerun.stderr
    rerun_dir = max((seeded / "outputs" / "seeded").glob("exp.*"), key=lambda p: int(p.suffix[1:]))
    assert json.loads((rerun_dir / "run.json").read_text())["result"] == pytest.approx(trial.value)


BATCH_ENTRY = """
def main(name, configs):
    return {float(i) for i, _ in enumerate(configs)}
"""


def test_a_batch_returning_a_set_fails_its_trials_saying_a_set_has_no_order(seeded):
    write(seeded / "pkg" / "main.py", BATCH_ENTRY)
    write(seeded / "tune.yml", study_config(6) + "  batch_size: 3\n")
    result = run_expyrun(["tune.yml"], seeded, timeout=120)
    assert result.returncode == 1, result.stderr
    records = trial_records(seeded / "outputs" / "seeded" / "exp.0")
    assert sorted(records) == list(range(6))
    for record in records.values():
        assert record["status"] == "failed" and record["result"] is None
        assert "a set has no order" in record["exception"]["message"], record["exception"]
    assert all(t.state.name == "FAIL" for t in journal(seeded).trials)


THREAD_ENTRY = """
import threading
from concurrent.futures import ThreadPoolExecutor
import expyrun

def helper(step):
    trial = expyrun.trial()
    trial.report(float(step), step)
    return trial.number, trial.should_prune()

def main(name, config):
    number = expyrun.trial().number
    thread_seen = []
    thread = threading.Thread(target=lambda: thread_seen.append(helper(0)))
    thread.start()
    thread.join()
    with ThreadPoolExecutor(2) as pool:
        seen = thread_seen + list(pool.map(helper, [1, 2]))
    assert [n for n, _ in seen] == [number] * 3, seen
    return config["x"]
"""

AMBIGUOUS_ENTRY = """
import os, time
from concurrent.futures import ThreadPoolExecutor
import expyrun

def meet(what, number):
    # both inline trials are running while each of their helper threads asks
    folder = os.environ["RENDEZVOUS"]
    open(os.path.join(folder, f"{what}.{number}"), "w").close()
    deadline = time.monotonic() + 30
    while len([f for f in os.listdir(folder) if f.startswith(what)]) < 2:
        assert time.monotonic() < deadline, f"the other trial never {what}"
        time.sleep(0.01)

def main(name, config):
    number = expyrun.trial().number
    meet("started", number)
    with ThreadPoolExecutor(1) as pool:
        error = pool.submit(expyrun.trial).exception()
    meet("asked", number)
    if error is not None:
        raise error
    return config["x"]
"""


@pytest.mark.parametrize("isolation", ["process", "inline"])
def test_threads_a_trial_starts_report_to_that_trial(seeded, isolation):
    write(seeded / "pkg" / "main.py", THREAD_ENTRY)
    write(seeded / "tune.yml", study_config(3) + f"  isolation: {isolation}\n")
    launch(seeded)
    trials = journal(seeded).trials
    assert [t.state.name for t in trials] == ["COMPLETE"] * 3
    assert all(t.intermediate_values == {0: 0.0, 1: 1.0, 2: 2.0} for t in trials), [
        t.intermediate_values for t in trials
    ]


def test_a_thread_of_no_trial_asking_for_its_trial_while_inline_trials_run_at_once_fails_the_trial(seeded, tmp_path):
    write(seeded / "pkg" / "main.py", AMBIGUOUS_ENTRY)
    write(seeded / "tune.yml", study_config(2) + "  isolation: inline\n  n_jobs: 2\n")
    (tmp_path / "rendezvous").mkdir()
    result = run_expyrun(["tune.yml"], seeded, env={"RENDEZVOUS": str(tmp_path / "rendezvous")}, timeout=120)
    assert result.returncode == 1, result.stderr
    for record in trial_records(seeded / "outputs" / "seeded" / "exp.0").values():
        assert record["status"] == "failed"
        assert record["exception"]["type"] == "AmbiguousTrial", record["exception"]
        assert "which evaluates no trial, while 2 inline trials run" in record["exception"]["message"]


@pytest.mark.parametrize(
    ("setting", "key", "message"),
    [
        ("heartbeat_interval: 1000000000000", "heartbeat_interval", "must be at most 86400 (a day)"),
        ("heartbeat_interval: 10\n  grace_period: 5", "grace_period", "must be longer than heartbeat_interval (10)"),
        ("heartbeat_interval: 10\n  grace_period: 10", "grace_period", "must be longer than heartbeat_interval (10)"),
    ],
)
def test_a_heartbeat_interval_no_thread_can_wait_or_a_grace_period_shorter_than_it_is_refused(
    seeded, setting, key, message
):
    write(seeded / "tune.yml", study_config(2) + f"  {setting}\n")
    for args in (["tune.yml"], ["tune.yml", "--dry-run"]):
        result = run_expyrun(args, seeded, timeout=60)
        assert result.returncode == 2, result.stderr
        lines = result.stderr.strip().splitlines()
        assert f"`__optuna__.{key}`: {message}" in lines[0] and "Traceback" not in result.stderr, result.stderr
    assert not (seeded / "outputs").exists()
