"""The study engine against the real `expyrun` and real journal / SQLite storages: reused trial
workers, signals, dead drivers, GPU ids, samplers that stop the study, bad objectives, inline
threads. Every wait has a deadline and fails saying what it saw.

What every run must do in a trial too (a fork that never answers for it, SIGKILL after SIGTERM is
ignored, logs, exit codes) is `tests/test_executor.py`'s, in its `trial` and `inline` modes; these
are what only a study does (many trials, workers, storages, retries)."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import optuna
import pytest
from conftest import RUN_SECTION, clean_env, run_expyrun, start_expyrun, write
from conftest import trial_records as records

ENTRY = """
import ctypes, json, os, signal, sys, time
import expyrun

with open(os.path.join(os.environ["EXPYRUN_CWD"], "imports.txt"), "a") as _f:  # import-time side effect
    _f.write(f"{os.getpid()}\\n")
if os.environ.get("EXPYRUN_TEST_SLOW_IMPORT"):
    time.sleep(0.5)


def _event(**fields):
    with open(os.path.join(os.environ["EXPYRUN_CWD"], "events.txt"), "a") as f:
        f.write(json.dumps(fields) + "\\n")


def main(name, config):
    trial = expyrun.trial()
    n = trial.number
    action = config["actions"].get(f"t{n}", "")
    _event(n=n, event="start", time=time.time(), pid=os.getpid(), gpu=os.environ.get("CUDA_VISIBLE_DEVICES"))
    print(f"evaluating trial {n}", flush=True)
    for i in range(config["lines"]):
        print(f"trial {n} line {i}")
        time.sleep(0.002)
    for step in range(config["reports"]):
        trial.report(float(step), step)
        trial.should_prune()
    if action == "os_exit":
        os._exit(5)
    if action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    if action == "segv":
        ctypes.string_at(0)
    if action == "nan":
        return float("nan")
    if action == "inf":
        return float("-inf")
    if action == "sys_exit":
        sys.exit(3)
    end = time.time() + config["sleep"]
    while time.time() < end:  # Python code runs now and then, as in a training loop
        time.sleep(0.05)
    _event(n=n, event="end", time=time.time(), pid=os.getpid(), gpu=os.environ.get("CUDA_VISIBLE_DEVICES"))
    return config["x"] ** 2
"""


def study_config(n_trials: int = 6, optuna_extra: str = "", top: str = "") -> str:
    return (
        RUN_SECTION.replace("demo", "engine")
        + top
        + f"""\
x: 0.0
sleep: 0.0
reports: 0
lines: 0
actions: {{}}
__optuna__:
  n_trials: {n_trials}
  sampler: {{name: RandomSampler, seed: 0}}
  pruner: {{name: NopPruner}}
{optuna_extra}  search_space:
    x: {{type: float, low: -4, high: 4}}
"""
    )


@pytest.fixture
def engine(project: Path) -> Path:
    write(project / "pkg" / "main.py", ENTRY)
    return project


def wait_for(predicate: Callable[[], object], timeout: float, what: Callable[[], str]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    pytest.fail(f"timed out after {timeout:g} s waiting; saw: {what()}")


def journal_study(project: Path, name: str = "engine") -> optuna.Study:
    from optuna.storages.journal import JournalFileBackend

    backend = JournalFileBackend(str(project / "outputs" / "engine" / "study.journal"))
    return optuna.load_study(study_name=name, storage=optuna.storages.JournalStorage(backend))


def states(study: optuna.Study) -> dict[str, int]:
    counts: dict[str, int] = {}
    for trial in study.get_trials(deepcopy=False):
        counts[trial.state.name] = counts.get(trial.state.name, 0) + 1
    return counts


def events(project: Path) -> list[dict]:
    path = project / "events.txt"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def running_trials(study_dir: Path) -> list[int]:
    if not (study_dir / "trials").is_dir():
        return []
    found = []
    for folder in (study_dir / "trials").iterdir():
        try:
            record = json.loads((folder / "run.json").read_text())
        except (OSError, ValueError):
            continue
        log = folder / "outputs.log"
        if record["status"] == "running" and log.exists() and "evaluating" in log.read_text():
            found.append(record["trial"]["number"])
    return found


def finish(process: subprocess.Popen[str], timeout: float = 120) -> tuple[str, str]:
    try:
        return process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        _, err = process.communicate()
        pytest.fail(f"expyrun still running after {timeout:g} s; stderr: {err[-3000:]}")


def test_four_jobs_reporting_often_all_complete(engine):
    write(engine / "tune.yml", study_config(16, "  n_jobs: 4\n").replace("reports: 0", "reports: 200"))
    result = run_expyrun(["tune.yml"], engine, timeout=180)
    assert result.returncode == 0, result.stderr
    study = journal_study(engine)
    assert states(study) == {"COMPLETE": 16}
    assert all(len(t.intermediate_values) == 200 for t in study.trials)
    pids = {r["pid"] for r in records(engine / "outputs" / "engine" / "exp.0").values()}
    assert 1 <= len(pids) <= 4  # reused workers, at most one per job


def test_entry_module_imported_once_per_worker(engine):
    write(engine / "tune.yml", study_config(10, "  n_jobs: 2\n"))
    result = run_expyrun(["tune.yml"], engine, timeout=120)
    assert result.returncode == 0, result.stderr
    imports = (engine / "imports.txt").read_text().split()
    assert len(imports) <= 2 and len(set(imports)) == len(imports), imports  # not once per trial
    trial_pids = {r["pid"] for r in records(engine / "outputs" / "engine" / "exp.0").values()}
    assert trial_pids <= {int(p) for p in imports}
    assert not list((engine / "outputs" / "engine" / "exp.0" / "pkg").rglob("__pycache__"))


def test_a_crashed_worker_fails_its_trial_only(engine):
    config = study_config(8, "  n_jobs: 2\n").replace("actions: {}", "actions: {t1: os_exit, t2: kill, t4: segv}")
    write(engine / "tune.yml", config)
    result = run_expyrun(["tune.yml"], engine, timeout=120)
    assert result.returncode == 0, result.stderr
    found = records(engine / "outputs" / "engine" / "exp.0")
    assert "exited with status 5" in found[1]["exception"]["message"]
    assert "killed by SIGKILL" in found[2]["exception"]["message"]
    assert "killed by SIGSEGV" in found[4]["exception"]["message"]
    assert {n for n, r in found.items() if r["status"] == "failed"} == {1, 2, 4}
    assert states(journal_study(engine)) == {"COMPLETE": 5, "FAIL": 3}
    assert (
        "Fatal Python error"
        in (engine / "outputs" / "engine" / "exp.0" / "trials" / "trial.4" / "outputs.log").read_text()
    )


@pytest.mark.parametrize("isolation", ["process", "inline"])
def test_sigterm_fails_running_trials_and_a_rerun_completes_the_study(engine, isolation):
    config = study_config(6, f"  n_jobs: 2\n  isolation: {isolation}\n")
    write(engine / "tune.yml", config.replace("sleep: 0.0", "sleep: 60"))
    process = start_expyrun(["tune.yml"], engine)
    study_dir = engine / "outputs" / "engine" / "exp.0"
    wait_for(lambda: len(running_trials(study_dir)) == 2, 60, lambda: f"running trials {running_trials(study_dir)}")
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    _, stderr = finish(process, 60)
    assert process.returncode == 143, stderr
    assert time.monotonic() - started < 8, "the trials handle SIGTERM: no need to wait for the grace period"
    study = journal_study(engine)
    assert "RUNNING" not in states(study)
    assert json.loads((study_dir / "study.json").read_text())["counts"]["FAIL"] == 2
    stopped = records(study_dir)
    assert sorted(stopped) == [0, 1]
    for record in stopped.values():
        assert record["status"] == "failed" and "the study was stopped (SIGTERM)" in record["exception"]["message"]
        assert record["exit_code"] == 143
    assert json.loads((study_dir / "run.json").read_text())["status"] == "interrupted"

    rerun = run_expyrun(["tune.yml", "--sleep", "0"], engine, timeout=120)
    assert rerun.returncode == 0, rerun.stderr
    study = journal_study(engine)
    assert states(study) == {"COMPLETE": 6, "FAIL": 2}
    retried = {t.system_attrs["failed_trial"]: t for t in study.trials if "failed_trial" in t.system_attrs}
    assert sorted(retried) == [0, 1] and all(t.state.name == "COMPLETE" for t in retried.values())
    assert retried[0].params == study.trials[0].params


def _session_processes(session: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == session and fields[0] != "Z":
            found.append(int(entry.name))
    return found


def test_sigkill_of_the_whole_study_then_a_rerun_retries_its_trials(engine):
    write(engine / "tune.yml", study_config(5, "  n_jobs: 2\n").replace("sleep: 0.0", "sleep: 60"))
    process = subprocess.Popen(
        [sys.executable, "-m", "expyrun", "tune.yml"], cwd=engine, env=clean_env(),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    study_dir = engine / "outputs" / "engine" / "exp.0"
    wait_for(lambda: len(running_trials(study_dir)) == 2, 60, lambda: f"running trials {running_trials(study_dir)}")
    deadline = time.monotonic() + 30
    while _session_processes(process.pid) and time.monotonic() < deadline:  # launcher, tee, driver, workers
        for pid in _session_processes(process.pid):
            os.kill(pid, signal.SIGKILL)
        time.sleep(0.05)
    process.wait(timeout=30)
    assert not _session_processes(process.pid)
    assert states(journal_study(engine)) == {"RUNNING": 2}

    rerun = run_expyrun(["tune.yml", "--sleep", "0"], engine, timeout=120)
    assert rerun.returncode == 0, rerun.stderr
    study = journal_study(engine)
    assert states(study) == {"COMPLETE": 5, "FAIL": 2}
    retried = sorted(t.system_attrs["failed_trial"] for t in study.trials if "failed_trial" in t.system_attrs)
    assert retried == [0, 1]
    dead = records(study_dir)
    assert all(r["status"] == "failed" and "died" in r["exception"]["message"] for r in dead.values())
    assert "was left running by process" in (engine / "outputs" / "engine" / "exp.1" / "outputs.log").read_text()


def test_gpu_ids_are_never_shared_by_two_running_trials(engine):
    top = "__launch__: {gpus: [0, 1], jobs: 2}\n"
    write(engine / "tune.yml", study_config(8, top=top).replace("sleep: 0.0", "sleep: 0.3"))
    result = run_expyrun(["tune.yml"], engine, timeout=120)
    assert result.returncode == 0, result.stderr
    seen = events(engine)
    spans: dict[int, dict[str, float]] = {}
    for event in seen:
        spans.setdefault(event["n"], {"gpu": event["gpu"]})[event["event"]] = event["time"]
    assert {s["gpu"] for s in spans.values()} == {"0", "1"}
    for gpu in ("0", "1"):
        intervals = sorted((s["start"], s["end"]) for s in spans.values() if s["gpu"] == gpu)
        assert all(a[1] <= b[0] for a, b in itertools.pairwise(intervals)), (gpu, intervals)
    for number, record in records(engine / "outputs" / "engine" / "exp.0").items():
        assert record["gpu"] == spans[number]["gpu"]


def test_inline_isolation_refuses_several_gpus_before_anything(engine):
    top = "__launch__: {gpus: [0, 1], jobs: 2}\n"
    write(engine / "tune.yml", study_config(2, "  isolation: inline\n", top=top))
    result = run_expyrun(["tune.yml"], engine)
    assert result.returncode == 2 and "inline trials share the driver's process" in result.stderr
    assert not (engine / "outputs").exists()


def test_grid_sampler_ends_completed_and_a_rerun_runs_nothing(engine):
    grid = "  n_jobs: 2\n"
    config = study_config(50, grid).replace(
        "sampler: {name: RandomSampler, seed: 0}", "sampler: {name: GridSampler, search_space: {x: [0, 1, 2, 3, 4]}}"
    )
    write(engine / "tune.yml", config)
    result = run_expyrun(["tune.yml"], engine, timeout=120)
    assert result.returncode == 0, result.stderr
    study = journal_study(engine)
    assert states(study) == {"COMPLETE": 5}
    assert sorted(t.params["x"] for t in study.trials) == [0, 1, 2, 3, 4]
    rerun = run_expyrun(["tune.yml"], engine, timeout=120)
    assert rerun.returncode == 0, rerun.stderr
    assert len(journal_study(engine).trials) == 5
    assert not (engine / "outputs" / "engine" / "exp.1" / "trials").exists()


def test_nan_and_inf_fail_their_trial_only(engine):
    write(engine / "tune.yml", study_config(5).replace("actions: {}", "actions: {t1: nan, t3: inf}"))
    result = run_expyrun(["tune.yml"], engine, timeout=120)
    assert result.returncode == 0, result.stderr
    found = records(engine / "outputs" / "engine" / "exp.0")
    for number in (1, 3):
        assert found[number]["status"] == "failed"
        assert "must be finite" in found[number]["exception"]["message"]
    assert states(journal_study(engine)) == {"COMPLETE": 3, "FAIL": 2}


@pytest.mark.parametrize("jobs", [1, 2])
def test_inline_trials_have_their_own_logs_and_exit_alone(engine, jobs):
    config = study_config(6, f"  isolation: inline\n  n_jobs: {jobs}\n")
    write(
        engine / "tune.yml", config.replace("lines: 0", "lines: 30").replace("actions: {}", "actions: {t1: sys_exit}")
    )
    result = run_expyrun(["tune.yml"], engine, timeout=120)
    assert result.returncode == 0, result.stderr
    study_dir = engine / "outputs" / "engine" / "exp.0"
    found = records(study_dir)
    assert found[1]["status"] == "failed" and "sys.exit(3)" in found[1]["exception"]["message"]
    assert {n for n, r in found.items() if r["status"] == "completed"} == {0, 2, 3, 4, 5}
    for number in range(6):
        lines = (study_dir / "trials" / f"trial.{number}" / "outputs.log").read_text().splitlines()
        own = [line for line in lines if line.startswith("trial ")]
        assert own == [f"trial {number} line {i}" for i in range(30)], (number, lines[:5])
    assert len(events(engine)) == 6 + 5  # starts, and ends of the trials that returned


def test_two_launches_on_a_fresh_sqlite_file_make_exactly_n_trials(engine):
    write(engine / "tune.yml", study_config(30, "  storage: sqlite:///study.db\n"))
    processes = [start_expyrun(["tune.yml"], engine) for _ in range(2)]
    for process in processes:
        _, stderr = finish(process, 240)
        assert process.returncode == 0, stderr
    study = optuna.load_study(study_name="engine", storage=f"sqlite:///{engine / 'study.db'}")
    assert states(study) == {"COMPLETE": 30}
    assert (engine / "study.db.expyrun-lock").exists()
