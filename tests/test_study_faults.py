"""Faults around a study's trials, against the real `expyrun` and a real journal storage: a trial
whose state changed in the storage while it ran, a trial log filling the disk, an inline trial
that takes the study process down, Ctrl-C on a terminal and SIGKILL of a `workers: N` command.
Every wait has a deadline and fails saying what it saw."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import optuna
import pytest
from conftest import RUN_SECTION, clean_env, run_expyrun, write
from conftest import trial_records as records

ENTRY = """
import ctypes, json, os, sys, time
import expyrun


def _event(**fields):
    with open(os.path.join(os.environ["EXPYRUN_CWD"], "events.txt"), "a") as f:
        f.write(json.dumps(fields) + "\\n")


def main(name, config):
    trial = expyrun.trial()
    n = trial.number
    action = config["actions"].get(f"t{n}", "")
    _event(n=n, event="start", pid=os.getpid(), ppid=os.getppid())
    if action == "wait_flag":  # until the test has changed the trial in the storage
        deadline = time.time() + 60
        while not os.path.exists(os.path.join(os.environ["EXPYRUN_CWD"], "flag")) and time.time() < deadline:
            time.sleep(0.02)
        if config["report_after"]:
            trial.report(1.0, 1)
    if action == "flood":
        for i in range(40000):
            print(f"trial {n} line {i:06d} " + "x" * 40)
    if action == "os_exit":
        os._exit(5)
    if action == "segv":
        ctypes.string_at(0)
    end = time.time() + config["sleep"]
    while time.time() < end:
        time.sleep(0.05)
    return config["x"] ** 2
"""


def study_config(n_trials: int, optuna_extra: str = "", top: str = "", output: str = "outputs") -> str:
    return (
        RUN_SECTION.replace("demo", "faults").replace("outputs", output)
        + top
        + f"""\
x: 0.0
sleep: 0.0
report_after: false
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
def faults(project: Path) -> Path:
    write(project / "pkg" / "main.py", ENTRY)
    return project


def wait_for(predicate: Callable[[], object], timeout: float, what: Callable[[], str]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    pytest.fail(f"timed out after {timeout:g} s waiting; saw: {what()}")


def events(project: Path) -> list[dict]:
    path = project / "events.txt"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def journal_study(journal: Path, name: str = "faults") -> optuna.Study:
    from optuna.storages.journal import JournalFileBackend

    return optuna.load_study(study_name=name, storage=optuna.storages.JournalStorage(JournalFileBackend(str(journal))))


def states(study: optuna.Study) -> dict[str, int]:
    counts: dict[str, int] = {}
    for trial in study.get_trials(deepcopy=False):
        counts[trial.state.name] = counts.get(trial.state.name, 0) + 1
    return counts


def finish(process: subprocess.Popen[str], timeout: float = 120) -> tuple[str, str]:
    try:
        return process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        _, err = process.communicate()
        pytest.fail(f"expyrun still running after {timeout:g} s; stderr: {err[-3000:]}")


def start(args: list[str], cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "expyrun", *args], cwd=cwd, env=clean_env(),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


# -- a trial changed in the storage while it ran --------------------------------------------------


@pytest.mark.parametrize(("isolation", "report_after"), [("process", False), ("process", True), ("inline", False)])
def test_a_trial_marked_failed_in_the_storage_while_it_ran_leaves_the_study_going(faults, isolation, report_after):
    config = study_config(3, f"  isolation: {isolation}\n").replace("actions: {}", "actions: {t0: wait_flag}")
    write(faults / "tune.yml", config.replace("report_after: false", f"report_after: {str(report_after).lower()}"))
    process = start(["tune.yml"], faults)
    study_dir = faults / "outputs" / "faults" / "exp.0"
    wait_for(lambda: any(e["n"] == 0 for e in events(faults)), 60, lambda: f"events {events(faults)}")
    study = journal_study(study_dir / "study.journal")
    trial = study.get_trials(deepcopy=False)[0]
    assert study._storage.set_trial_state_values(trial._trial_id, optuna.trial.TrialState.FAIL)  # the dashboard
    (faults / "flag").touch()
    out, err = finish(process)
    assert process.returncode == 0, err
    shown_by_trial = (study_dir / "trials" / "trial.0" / "outputs.log").read_text()  # on stderr too (SPEC 3.3)
    assert "Cannot tell" not in out + err and err.count("Traceback") == shown_by_trial.count("Traceback")
    assert states(journal_study(study_dir / "study.journal")) == {"FAIL": 1, "COMPLETE": 2}
    record = records(study_dir)[0]
    assert record["status"] == "failed" and record["trial"]["state"] == "FAIL"
    assert record["exception"]["type"] == "TrialStateChanged"
    assert "FAIL in the storage while it ran" in record["exception"]["message"]
    assert json.loads((study_dir / "study.json").read_text())["counts"] == {"FAIL": 1, "COMPLETE": 2}


# -- a trial's log fills the disk -----------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Callable[[int], Path]]:
    """A tmpfs of a few hundred KB mounted for the test (needs root; skipped where mounting is impossible)."""
    mounted: list[Path] = []

    def mount(size_kb: int) -> Path:
        point = tmp_path / f"disk{len(mounted)}"
        point.mkdir()
        result = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size_kb}k", "tmpfs", str(point)], capture_output=True, text=True
        )
        if result.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip()}")
        mounted.append(point)
        return point

    yield mount
    for point in mounted:
        subprocess.run(["umount", "-l", str(point)], check=False)


@pytest.mark.parametrize(("isolation", "jobs"), [("process", 1), ("inline", 1), ("inline", 2)])
def test_a_trial_filling_the_disk_with_its_log_completes_with_log_error(faults, small_disk, isolation, jobs):
    """The storage lives elsewhere (a database server, another disk): the trial's log fills the run
    folders' disk, and the trial completes with `log_error`, as a plain run does. Once the disk is
    full, later trials cannot even be prepared: they fail, saying why; nothing is left `running`."""
    disk = small_disk(768)
    storage = f"  storage: {faults / 'study.journal'}\n  isolation: {isolation}\n  n_jobs: {jobs}\n"
    config = study_config(2, storage, output=str(disk / "outputs"))
    write(faults / "tune.yml", config.replace("actions: {}", "actions: {t0: flood}"))
    result = run_expyrun(["tune.yml"], faults, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stdout + result.stderr
    study_dir = disk / "outputs" / "faults" / "exp.0"
    found = records(study_dir)
    assert found[0]["status"] == "completed" and found[0]["trial"]["state"] == "COMPLETE", found[0]
    assert "No space left on device" in found[0]["log_error"]
    assert "running" not in {r["status"] for r in found.values()}
    study = journal_study(faults / "study.journal")
    assert study.trials[0].state.name == "COMPLETE" and "RUNNING" not in states(study)
    assert "trial 1 could not be prepared" in result.stdout or study.trials[1].state.name == "COMPLETE"
    assert json.loads((study_dir / "run.json").read_text())["status"] == "completed"


# -- an inline trial takes the study process down -------------------------------------------------


@pytest.mark.parametrize("action", ["os_exit", "segv"])
def test_an_inline_trial_ending_the_study_process_is_recorded_failed_and_retried_by_the_next_launch(faults, action):
    config = study_config(3, "  isolation: inline\n").replace("actions: {}", f"actions: {{t1: {action}}}")
    write(faults / "tune.yml", config)
    result = run_expyrun(["tune.yml"], faults, timeout=120)
    assert result.returncode != 0
    study_dir = faults / "outputs" / "faults" / "exp.0"
    found = records(study_dir)
    assert found[1]["status"] == "failed", found[1]
    assert "the study process" in found[1]["exception"]["message"]
    assert "isolation: inline" in found[1]["exception"]["message"]
    assert json.loads((study_dir / "run.json").read_text())["status"] == "failed"

    rerun = run_expyrun(["tune.yml", "--actions", "{}"], faults, timeout=120)
    assert rerun.returncode == 0, rerun.stderr
    study = journal_study(study_dir / "study.journal")
    assert states(study) == {"COMPLETE": 3, "FAIL": 1}
    retried = [t.system_attrs["failed_trial"] for t in study.trials if "failed_trial" in t.system_attrs]
    assert retried == [1]
    assert records(study_dir)[1]["status"] == "failed"


# -- Ctrl-C and SIGKILL of a `workers: N` command -------------------------------------------------

TTY_ENTRY = ENTRY.replace(
    '    _event(n=n, event="start", pid=os.getpid(), ppid=os.getppid())\n',
    '    _event(n=n, event="start", pid=os.getpid(), ppid=os.getppid())\n'
    '    with open("/dev/tty", "w") as tty:  # what the person at the terminal sees: the trial runs\n'
    '        tty.write(f"TRIAL {n} RUNNING\\n")\n',
)


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


def _all_trials_ended(study_dir: Path) -> None:
    study = journal_study(study_dir.parent / "study.journal")
    assert "RUNNING" not in states(study), states(study)
    for folder in sorted(study_dir.parent.glob("exp.*")):
        if (folder / "trials").is_dir():
            assert "running" not in {r["status"] for r in records(folder).values()}, records(folder)


def test_ctrl_c_on_a_terminal_stops_every_launch_of_a_workers_study(faults):
    from conftest import terminal_session

    write(faults / "pkg" / "main.py", TTY_ENTRY)
    config = study_config(8, top="__launch__:\n  workers: 2\n").replace("sleep: 0.0", "sleep: 60")
    write(faults / "tune.yml", config)
    # both launches' trials run before Ctrl-C: the second "RUNNING" line is the cue
    session = terminal_session(["tune.yml"], faults, answers={b"1 RUNNING": b"\x03"}, timeout=90)
    shown = session.shown.decode(errors="replace")
    assert session.code == 130, shown[-3000:]
    assert session.ended_at - session.seen_at[b"1 RUNNING"] < 45, shown[-3000:]
    _all_trials_ended(faults / "outputs" / "faults" / "exp.0")


def test_sigkill_of_a_workers_command_stops_its_launches_and_records_their_trials(faults):
    config = study_config(8, top="__launch__:\n  workers: 2\n").replace("sleep: 0.0", "sleep: 60")
    write(faults / "tune.yml", config)
    process = subprocess.Popen(
        [sys.executable, "-m", "expyrun", "tune.yml"], cwd=faults, env=clean_env(),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    started = lambda: {e["n"] for e in events(faults)}  # noqa: E731
    wait_for(lambda: len(started()) >= 2, 60, lambda: f"trials started {started()}")
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=10)
    wait_for(lambda: not _session_processes(process.pid), 45,
             lambda: f"processes left: {_session_processes(process.pid)}")  # fmt: skip
    _all_trials_ended(faults / "outputs" / "faults" / "exp.0")
    folders = sorted((faults / "outputs" / "faults").glob("exp.*"))
    assert len(folders) == 2
    for folder in folders:
        assert json.loads((folder / "run.json").read_text())["status"] == "interrupted"
