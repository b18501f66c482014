"""Optuna studies from the command line, on real journal storages."""

from __future__ import annotations

import json
from pathlib import Path

import optuna  # the test extra installs it: a missing one is a failure, not a skip
import pytest
import yaml
from conftest import RUN_SECTION, run_in_terminal, start_expyrun, write

OBJECTIVE = """
import ctypes, os, time
import expyrun
import optuna

def main(name, config):
    x, kind = config["x"], config["model"]["kind"]
    trial = expyrun.trial()
    assert trial is not None and isinstance(trial, optuna.trial.Trial)
    print("evaluating", x, kind, flush=True)
    if config.get("crash") and trial.number == 1:
        ctypes.string_at(0)
    if config.get("fail_all"):
        raise RuntimeError("always failing")
    if config.get("sleep"):
        time.sleep(config["sleep"])
    for step in range(0 if config.get("two") else 5):  # report() is for single-objective studies
        trial.report((x - 1) ** 2 + 5 - step, step)
        if trial.should_prune():
            raise optuna.TrialPruned()
    if config.get("bad_objective"):
        return "not a number"
    if config.get("two"):
        return [(x - 1) ** 2, x]
    return (x - 1) ** 2 + (0.5 if kind == "b" else 0.0)
"""

STUDY = (
    RUN_SECTION.replace("demo", "tune")
    + """\
x: 0.0
model: {kind: a}
label: "x={x}"
__optuna__:
  n_trials: 6
  sampler: {name: TPESampler, seed: 1}
  search_space:
    x: {type: float, low: -4, high: 4}
    model.kind: {type: categorical, choices: [a, b]}
"""
)


@pytest.fixture
def study_project(project):
    write(project / "pkg" / "main.py", OBJECTIVE)
    write(project / "tune.yml", STUDY)
    return project


def trials_of(study_dir: Path) -> list[dict]:
    return [json.loads((d / "run.json").read_text()) for d in sorted((study_dir / "trials").iterdir())]


def test_study_folder_with_trial_folders_and_summary(study_project, expyrun):
    result = expyrun("tune.yml")
    assert result.returncode == 0, result.stderr
    study_dir = study_project / "outputs" / "tune" / "exp.0"
    assert {"config.yml", "run.json", "outputs.log", "frozen_requirements.txt", "pkg", "study.json"} <= {
        p.name for p in study_dir.iterdir()
    }
    summary = json.loads((study_dir / "study.json").read_text())
    assert summary["counts"] == {"COMPLETE": 6} and summary["n_trials"] == 6
    records = trials_of(study_dir)
    assert sorted(r["trial"]["number"] for r in records) == list(range(6))
    best = min(records, key=lambda r: r["trial"]["values"][0])
    assert summary["best"]["number"] == best["trial"]["number"]
    first = study_dir / "trials" / "trial.0"
    config = yaml.safe_load((first / "config.yml").read_text())
    assert "__optuna__" not in config and config["label"] == f"x={config['x']}"
    assert config["x"] == records[0]["trial"]["params"]["x"]
    assert "evaluating" in (first / "outputs.log").read_text()
    assert json.loads((study_dir / "run.json").read_text())["result"]["number"] == best["trial"]["number"]
    assert (study_dir / "plots" / "optimization_history.html").exists()
    assert (study_dir / "study.journal").resolve() == (study_project / "outputs" / "tune" / "study.journal").resolve()
    listed = [json.loads(line) for line in expyrun("list", "outputs", "--json").stdout.splitlines()]
    assert [row["path"] for row in listed] == ["tune/exp.0"] + [f"tune/exp.0/trials/trial.{i}" for i in range(6)]
    assert listed[0]["study"] == "tune" and listed[3]["trial"]["number"] == 2


def test_a_study_ends_naming_its_best_trial_and_show_lists_its_trials_best_first(study_project, expyrun):
    result = expyrun("tune.yml")
    assert result.returncode == 0, result.stderr
    study_dir = study_project / "outputs" / "tune" / "exp.0"
    best = json.loads((study_dir / "study.json").read_text())["best"]
    printed = result.stdout + result.stderr
    assert f"best trial {best['number']}: " in printed, printed
    shown = expyrun("show", str(study_dir))
    assert shown.returncode == 0, shown.stderr
    table = shown.stderr.partition("# trials (6): ")[2]  # show writes to stderr
    assert table.startswith(f"best trial {best['number']}: "), shown.stderr
    rows = [line.split() for line in table.splitlines()[2:8]]
    assert len(rows) == 6 and rows[0][0] == str(best["number"]), table
    assert all(row[1] == "COMPLETE" for row in rows), table


def test_a_trial_config_reruns_as_an_ordinary_run(study_project, expyrun):
    assert expyrun("tune.yml", "--__optuna__.n_trials", "2").returncode == 0
    trial_dir = study_project / "outputs" / "tune" / "exp.0" / "trials" / "trial.1"
    write(study_project / "pkg" / "main.py", "def main(name, config):\n    return 'changed code'\n")
    result = expyrun(str(trial_dir / "config.yml"))
    assert result.returncode == 1  # expyrun.trial() is None outside a study: the stored code asserts it
    rerun = study_project / "outputs" / "tune" / "exp.1"
    record = json.loads((rerun / "run.json").read_text())
    assert record["status"] == "failed" and record["exception"]["type"] == "AssertionError"
    assert not (rerun / "trials").exists()


def test_rerunning_resumes_and_n_trials_is_a_study_total(study_project, expyrun):
    assert expyrun("tune.yml", "--__optuna__.n_trials", "3").returncode == 0
    assert expyrun("tune.yml", "--__optuna__.n_trials", "5").returncode == 0
    study = optuna.load_study(
        study_name="tune",
        storage=optuna.storages.JournalStorage(
            optuna.storages.journal.JournalFileBackend(str(study_project / "outputs" / "tune" / "study.journal"))
        ),
    )
    assert len(study.trials) == 5
    second = study_project / "outputs" / "tune" / "exp.1"
    assert sorted(r["trial"]["number"] for r in trials_of(second)) == [3, 4]


def test_two_concurrent_workers_share_a_journal(study_project):
    write(
        study_project / "tune.yml",
        STUDY.replace("n_trials: 6", "n_trials: 10\n  storage: shared.journal") + "sleep: 0.2\n",
    )
    processes = [start_expyrun(["tune.yml"], study_project) for _ in range(2)]
    for process in processes:
        _, stderr = process.communicate(timeout=120)
        assert process.returncode == 0, stderr
    numbers = []
    for study_dir in (study_project / "outputs" / "tune").glob("exp.*"):
        numbers += [r["trial"]["number"] for r in trials_of(study_dir)]
    assert sorted(numbers) == list(range(10))
    assert len(list((study_project / "outputs" / "tune").glob("exp.*"))) == 2
    assert (study_project / "shared.journal").is_file()


@pytest.mark.parametrize("isolation", ["process", "inline"])
def test_pruning_in_both_isolations(study_project, expyrun, isolation):
    write(
        study_project / "tune.yml",
        STUDY.replace(
            "n_trials: 6",
            f"""n_trials: 12
  isolation: {isolation}
  pruner: {{name: MedianPruner, n_startup_trials: 2, n_warmup_steps: 0}}""",
        ),
    )
    assert expyrun("tune.yml").returncode == 0
    summary = json.loads((study_project / "outputs" / "tune" / "exp.0" / "study.json").read_text())
    assert summary["counts"].get("PRUNED", 0) >= 1 and summary["n_trials"] == 12
    pruned = [r for r in trials_of(study_project / "outputs" / "tune" / "exp.0") if r["trial"]["state"] == "PRUNED"]
    assert pruned and all(r["status"] == "pruned" for r in pruned)


def test_multi_objective_pareto_front(study_project, expyrun):
    write(
        study_project / "tune.yml",
        STUDY.replace("n_trials: 6", "n_trials: 6\n  directions: [minimize, maximize]") + "two: true\n",
    )
    assert expyrun("tune.yml").returncode == 0
    summary = json.loads((study_project / "outputs" / "tune" / "exp.0" / "study.json").read_text())
    assert isinstance(summary["pareto_front"], list) and summary["pareto_front"]
    assert all(len(t["values"]) == 2 for t in summary["pareto_front"])
    plots = study_project / "outputs" / "tune" / "exp.0" / "plots"
    assert (plots / "pareto_front.html").stat().st_size > 1000  # once never written: importances took its place
    assert {p.name for p in plots.iterdir()} >= {"optimization_history.value_0.html", "param_importances.value_1.html"}


def test_segfaulting_trial_is_failed_and_the_study_goes_on(study_project, expyrun):
    write(study_project / "tune.yml", STUDY + "crash: true\n")
    assert expyrun("tune.yml").returncode == 0
    study_dir = study_project / "outputs" / "tune" / "exp.0"
    summary = json.loads((study_dir / "study.json").read_text())
    assert summary["counts"] == {"COMPLETE": 5, "FAIL": 1}
    crashed = json.loads((study_dir / "trials" / "trial.1" / "run.json").read_text())
    assert crashed["status"] == "failed" and "SIGSEGV" in crashed["exception"]["message"]
    assert "Fatal Python error" in (study_dir / "trials" / "trial.1" / "outputs.log").read_text()


def test_consecutive_failures_stop_the_study_with_exit_1(study_project, expyrun):
    write(
        study_project / "tune.yml",
        STUDY.replace("n_trials: 6", "n_trials: 20\n  max_consecutive_failures: 3") + "fail_all: true\n",
    )
    result = expyrun("tune.yml")
    assert result.returncode == 1
    study_dir = study_project / "outputs" / "tune" / "exp.0"
    assert json.loads((study_dir / "study.json").read_text())["counts"] == {"FAIL": 3}
    assert json.loads((study_dir / "run.json").read_text())["status"] == "failed"
    assert "always failing" in (study_dir / "trials" / "trial.0" / "outputs.log").read_text()


def test_bad_objective_fails_the_trial_with_what_was_returned(study_project, expyrun):
    write(study_project / "tune.yml", STUDY.replace("n_trials: 6", "n_trials: 2") + "bad_objective: true\n")
    assert expyrun("tune.yml").returncode == 1
    record = json.loads((study_project / "outputs" / "tune" / "exp.0" / "trials" / "trial.0" / "run.json").read_text())
    assert "'not a number'" in record["exception"]["message"] and "must be a number" in record["exception"]["message"]


X_LINE = "    x: {type: float, low: -4, high: 4}"


@pytest.mark.parametrize(
    ("old", "new", "fragment"),
    [
        (X_LINE, X_LINE.replace("x:", "y:"), "`__optuna__.search_space.y`: `y` is not a key of the config"),
        (X_LINE, "    x: {type: float, low: 4, high: -4}", "low (4) is greater than high (-4)"),
        (X_LINE, "    x: {type: floot, low: -4, high: 4}", "unknown type 'floot' (did you mean `float`?)"),
        (X_LINE, "    x: {type: float, low: 0, high: 1, log: true}", "a log scale needs low > 0"),
        (X_LINE, "    x: {type: int, low: 0, high: 1.5}", "search_space.x.high`: expected an int"),
        ("name: TPESampler", "name: TPESamplr", "optuna.samplers has no 'TPESamplr'"),
        ("seed: 1", "sed: 1", "`__optuna__.sampler.sed`: TPESampler takes no argument 'sed' (did you mean seed?)"),
        ("n_trials: 6", "n_trials: 6\n  pruner: {name: MedianPruner, n_warmup: 2}", "pruner.n_warmup`: MedianPruner"),
        ("n_trials: 6", "n_trials: six", "`__optuna__.n_trials`: expected an integer"),
        (
            "n_trials: 6",
            "n_trials: 6\n  n_jobs: 2\n  storage: sqlite:///s.db",
            "SQLite cannot be shared by several workers",
        ),
        ("n_trials: 6", "n_trails: 6", "`__optuna__.n_trails`: unknown setting (did you mean `n_trials`?)"),
        ("n_trials: 6", "n_trials: 6\n  isolation: thread", "expected process or inline"),
    ],
)
def test_bad_study_definitions_exit_2_before_anything(study_project, expyrun, old, new, fragment):
    assert old in STUDY
    write(study_project / "tune.yml", STUDY.replace(old, new))
    result = expyrun("tune.yml")
    assert result.returncode == 2, result.stderr
    assert fragment in result.stderr and "Traceback" not in result.stderr
    assert not (study_project / "outputs").exists()


def test_dry_run_refuses_a_sampler_keyword_typo(study_project, expyrun):
    write(study_project / "tune.yml", STUDY.replace("seed: 1", "sed: 1"))
    result = expyrun("tune.yml", "--dry-run")
    assert result.returncode == 2 and "TPESampler takes no argument 'sed'" in result.stderr
    assert result.stdout == "" and not (study_project / "outputs").exists()


def test_dry_run_validates_the_study(study_project, expyrun):
    result = expyrun("tune.yml", "--dry-run")
    assert result.returncode == 0 and yaml.safe_load(result.stdout)["__optuna__"]["n_trials"] == 6
    assert not (study_project / "outputs").exists()


def test_trial_is_none_outside_a_study():
    import expyrun

    assert expyrun.trial() is None


def test_inline_isolation_runs_in_the_driver(study_project, expyrun):
    write(study_project / "tune.yml", STUDY.replace("n_trials: 6", "n_trials: 3\n  isolation: inline"))
    assert expyrun("tune.yml").returncode == 0
    records = trials_of(study_project / "outputs" / "tune" / "exp.0")
    assert [r["status"] for r in records] == ["completed"] * 3
    assert (
        "evaluating"
        in (study_project / "outputs" / "tune" / "exp.0" / "trials" / "trial.2" / "outputs.log").read_text()
    )


def test_interrupting_a_study_writes_the_summary(study_project):
    import signal
    import time

    write(study_project / "tune.yml", STUDY.replace("n_trials: 6", "n_trials: 50") + "sleep: 0.3\n")
    process = start_expyrun(["tune.yml"], study_project)
    study_dir = study_project / "outputs" / "tune" / "exp.0"
    deadline = time.monotonic() + 60
    while not (study_dir / "trials" / "trial.2" / "run.json").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    process.communicate(timeout=60)
    assert process.returncode == 130
    summary = json.loads((study_dir / "study.json").read_text())
    assert summary["counts"].get("COMPLETE", 0) >= 2
    assert json.loads((study_dir / "run.json").read_text())["status"] == "interrupted"


def test_progress_bar_on_a_terminal_only(study_project):
    code, shown = run_in_terminal(["tune.yml"], study_project)
    assert code == 0, shown.decode(errors="replace")
    assert b"6/6" in shown and b"best" in shown
    log = (study_project / "outputs" / "tune" / "exp.0" / "outputs.log").read_bytes()
    assert b"6/6" not in log and b"trial 5:" in log
