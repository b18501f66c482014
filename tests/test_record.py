"""`run.json` has one owner (expyrun/run/record.py): every kind of run folder records the schema
version and the fields of its three moments (prepared, started, ended), and reads back through
the owner; a record written before schema versions is read as version 1 by `list` and `show`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import RUN_SECTION, trial_records, write

from expyrun.run.record import SCHEMA_VERSION, load_record, record_problem, schema_version
from expyrun.run.status import Status

ENTRY = """\
def main(name, config):
    return config["lr"] * 10
"""

# The fields each moment writes: prepared (`start_record`), started (`mark_started`), ended (`mark_finished`).
PREPARED = {"schema_version", "name", "run_dir", "argv", "cwd", "host", "user", "python", "expyrun_version",
            "launcher", "config"}  # fmt: skip
STARTED = {"pid", "started_at"}
ENDED = {"status", "ended_at", "duration_s", "exit_code", "exception", "result"}


@pytest.fixture
def lr_project(project: Path) -> Path:
    write(project / "pkg" / "main.py", ENTRY)
    return project


def assert_ended_record(run_dir: Path, status: Status) -> dict:
    """The folder's record, read back through the owner, holds every moment's fields."""
    record = load_record(run_dir)
    assert record, f"no readable run.json in {run_dir}"
    assert record_problem(record) is None, record
    missing = (PREPARED | STARTED | ENDED) - set(record)
    assert not missing, f"{run_dir}: {sorted(missing)} missing from {sorted(record)}"
    assert schema_version(record) == SCHEMA_VERSION == record["schema_version"] == 2
    assert record["status"] == status and isinstance(record["pid"], int), record
    assert isinstance(record["duration_s"], (int, float)) and record["ended_at"] >= record["started_at"], record
    raw = (run_dir / "run.json").read_text(encoding="utf-8")
    assert f'"status": "{status.value}"' in raw, raw  # the same string as before the enum
    return record


def test_a_single_run_records_the_schema_version_and_its_three_moments(lr_project, expyrun):
    write(lr_project / "run.yml", RUN_SECTION + "lr: 0.5\n")
    result = expyrun("run.yml")
    assert result.returncode == 0, result.stderr
    record = assert_ended_record(lr_project / "outputs" / "demo" / "exp.0", Status.COMPLETED)
    assert record["result"] == 5.0 and record["exit_code"] == 0 and record["exception"] is None, record


def test_a_failed_run_records_failed_with_its_exception_and_exit_code_1(lr_project, expyrun):
    write(lr_project / "run.yml", RUN_SECTION + "lr: {a: 1}\n")
    result = expyrun("run.yml")
    assert result.returncode == 1, result.stderr
    record = assert_ended_record(lr_project / "outputs" / "demo" / "exp.0", Status.FAILED)
    assert record["exit_code"] == 1 and record["exception"]["type"] == "TypeError", record


def test_every_point_of_a_sweep_records_the_schema_version_and_its_sweep(lr_project, expyrun):
    write(lr_project / "grid.yml", RUN_SECTION.replace("demo", '"grid/lr{lr}"')
          + "lr: 0.1\n__sweep__:\n  grid:\n    lr: [0.1, 0.5]\n")  # fmt: skip
    result = expyrun("grid.yml")
    assert result.returncode == 0, result.stderr
    folders = sorted((lr_project / "outputs" / "grid").glob("lr*/exp.0"))
    assert len(folders) == 2, folders
    points = set()
    for folder in folders:
        record = assert_ended_record(folder, Status.COMPLETED)
        assert isinstance(record.get("sweep"), dict) and Path(record["sweep"]["dir"]).is_dir(), record
        points.add(record["sweep"]["point"])
    assert points == {0, 1}


@pytest.mark.parametrize("isolation", ["process", "inline"])
def test_every_trial_records_the_schema_version_and_its_study_in_both_isolations(lr_project, expyrun, isolation):
    write(lr_project / "tune.yml", RUN_SECTION.replace("demo", "tune") + f"""\
lr: 0.1
__optuna__:
  n_trials: 2
  isolation: {isolation}
  search_space:
    lr: {{type: float, low: 0.0, high: 1.0}}
""")  # fmt: skip
    result = expyrun("tune.yml")
    assert result.returncode == 0, result.stderr
    study_dir = lr_project / "outputs" / "tune" / "exp.0"
    assert load_record(study_dir)["schema_version"] == 2  # the study's own run
    trials = trial_records(study_dir)
    assert sorted(trials) == [0, 1], trials
    for number, record in trials.items():
        folder = Path(record["run_dir"])
        record = assert_ended_record(folder, Status.COMPLETED)
        assert record["trial"]["number"] == number and record["trial"]["state"] == "COMPLETE", record
        assert record["result"] == pytest.approx(record["trial"]["params"]["lr"] * 10), record


def test_a_record_written_before_schema_versions_is_read_as_version_1(lr_project, expyrun):
    write(lr_project / "run.yml", RUN_SECTION + "lr: 0.5\n")
    assert expyrun("run.yml").returncode == 0
    run_dir = lr_project / "outputs" / "demo" / "exp.0"
    record = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    del record["schema_version"]
    (run_dir / "run.json").write_text(json.dumps(record, indent=2), encoding="utf-8")
    old = load_record(run_dir)
    assert old is not None and schema_version(old) == 1 and record_problem(old) is None, old
    listed = expyrun("list", "outputs")
    assert listed.returncode == 0 and "completed" in listed.stdout + listed.stderr, listed
    shown = expyrun("show", str(run_dir))
    assert shown.returncode == 0 and "completed" in shown.stdout + shown.stderr, shown
