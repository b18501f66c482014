"""What runs and sweeps record (SPEC 3.1, 9, 10) and how expyrun reads records it did not write."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from conftest import RUN_SECTION, trial_records, write

ENTRY = """\
def main(name, config):
    return config["lr"] * 10
"""

GRID = """\
__run__:
  __main__: pkg.main:main
  __name__: "grid/lr{lr}"
  __output_dir__: outputs
lr: 0.1
__sweep__:
  grid:
    lr: [0.1, 0.5]
"""

VARIANTS = """\
__run__:
  __main__: pkg.main:main
  __name__: "size/{__sweep__.variant}/p{__sweep__.point}"
  __output_dir__: outputs
lr: 0.1
width: 8
tag: "{__sweep__.variant}"
seed: "{__sweep__.point}"
label: "{__sweep__.variant}-w{width}"
__sweep__:
  variants:
    small: {width: 8}
    large: {width: 64}
  grid:
    lr: [0.1, 0.5]
"""

STUDY = (
    RUN_SECTION.replace("demo", "tune")
    + """\
lr: 0.1
__optuna__:
  n_trials: 2
  search_space:
    lr: {type: float, low: 0.0, high: 1.0}
"""
)


@pytest.fixture
def records_project(project: Path) -> Path:
    write(project / "pkg" / "main.py", ENTRY)
    return project


def run_record(run_dir: Path) -> dict:
    return json.loads((run_dir / "run.json").read_text())


def sweep_data(project: Path, name: str, index: int) -> dict:
    return json.loads((project / "outputs" / name / f"sweep.{index}" / "sweep.json").read_text())


# --needed: a sweep whose points are reused shows their results


def test_a_sweep_rerun_with_needed_lists_the_result_of_every_reused_run(records_project, expyrun):
    write(records_project / "grid.yml", GRID)
    assert expyrun("grid.yml").returncode == 0
    again = expyrun("grid.yml", "--needed")
    assert again.returncode == 0, again.stderr
    data = sweep_data(records_project, "grid", 1)
    assert (data["status"], data["counts"]) == ("completed", {"skipped": 2})
    points = data["points"]
    assert [(p["status"], p["result"]) for p in points] == [("skipped", pytest.approx(1.0)), ("skipped", 5.0)]
    assert points[0]["reused"] == str(records_project / "outputs" / "grid" / "lr0.1" / "exp.0")
    shown = expyrun("show", "outputs/grid/sweep.1")
    assert shown.returncode == 0, shown.stderr
    rows = [line.split() for line in shown.stderr.splitlines()[2:]]
    assert [(row[1], float(row[2])) for row in rows] == [("skipped", 1.0), ("skipped", 5.0)], shown.stderr


# launcher and attempt of local runs (SPEC 3.1)


def test_a_local_single_run_records_the_local_launcher_and_its_first_attempt(records_project, expyrun):
    write(records_project / "c.yml", RUN_SECTION + "lr: 0.1\n")
    assert expyrun("c.yml").returncode == 0
    record = run_record(records_project / "outputs" / "demo" / "exp.0")
    assert (record["launcher"], record["attempt"]) == ("local", 1)


def test_every_point_of_a_local_sweep_records_the_local_launcher_and_its_first_attempt(records_project, expyrun):
    write(records_project / "grid.yml", GRID)
    assert expyrun("grid.yml").returncode == 0
    for point in sweep_data(records_project, "grid", 0)["points"]:
        record = run_record(Path(point["run_dir"]))
        assert (record["launcher"], record["attempt"]) == ("local", 1)


def test_every_trial_of_a_local_study_records_the_local_launcher_and_its_first_attempt(records_project, expyrun):
    write(records_project / "tune.yml", STUDY)
    result = expyrun("tune.yml")
    assert result.returncode == 0, result.stderr
    study_dir = records_project / "outputs" / "tune" / "exp.0"
    assert (run_record(study_dir)["launcher"], run_record(study_dir)["attempt"]) == ("local", 1)
    trials = trial_records(study_dir)
    assert sorted(trials) == [0, 1]
    assert {(record["launcher"], record["attempt"]) for record in trials.values()} == {("local", 1)}


# --debug command runs (SPEC 10)

TRAIN = """\
#!/bin/bash
echo "trained with $1" > trained.txt
"""

COMMAND = """\
__run__:
  __command__: bash {__run__.__code__}/train.sh {lr}
  __code__: scripts
  __name__: cmd
  __output_dir__: outputs
lr: 0.5
"""


def test_a_debug_command_run_names_its_scripts_folder_by_its_absolute_path(tmp_path, expyrun):
    write(tmp_path / "scripts" / "train.sh", TRAIN)
    write(tmp_path / "c.yml", COMMAND)
    result = expyrun("c.yml", "--debug", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    run_dir = tmp_path / "outputs" / "DEBUG" / "cmd" / "exp.0"
    assert (run_dir / "trained.txt").read_text() == "trained with 0.5\n"
    stored = yaml.safe_load((run_dir / "config.yml").read_text())
    assert stored["__run__"]["__command__"] == f"bash {tmp_path / 'scripts'}/train.sh 0.5"
    assert not (run_dir / "code").exists()  # --debug runs the original scripts, not a copy


# {__sweep__.variant} and {__sweep__.point} (SPEC 9)


def test_a_sweep_point_names_its_run_and_values_with_its_variant_and_index(records_project, expyrun):
    write(records_project / "size.yml", VARIANTS)
    result = expyrun("size.yml")
    assert result.returncode == 0, result.stderr
    assert "__sweep__" not in result.stderr  # the sweep's own config does not warn about them
    points = sweep_data(records_project, "size", 0)["points"]
    assert [p["name"] for p in points] == ["size/small/p0", "size/small/p1", "size/large/p2", "size/large/p3"]
    run_dir = Path(points[2]["run_dir"])
    assert run_dir == records_project / "outputs" / "size" / "large" / "p2" / "exp.0"
    stored = yaml.safe_load((run_dir / "config.yml").read_text())
    assert (stored["tag"], stored["seed"], stored["label"]) == ("large", 2, "large-w64")
    assert run_record(run_dir)["sweep"]["variant"] == "large"
    raw = yaml.safe_load((run_dir / "raw_config.yml").read_text())
    assert raw["__run__"]["__name__"] == "size/large/p2" and raw["seed"] == 2
    rerun = expyrun(str(run_dir / "raw_config.yml"))  # the point alone, without its sweep
    assert rerun.returncode == 0, rerun.stderr
    assert run_record(run_dir.parent / "exp.1")["config"]["tag"] == "large"


def test_the_dry_run_of_a_sweep_lists_run_names_made_from_variants(records_project, expyrun):
    write(records_project / "size.yml", VARIANTS)
    result = expyrun("size.yml", "--dry-run")
    assert result.returncode == 0, result.stderr
    names = [point["name"] for point in yaml.safe_load(result.stdout)["points"]]
    assert names == ["size/small/p0", "size/small/p1", "size/large/p2", "size/large/p3"]
    assert not (records_project / "outputs").exists()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("{__sweep__.variant}/p", "{__sweep__.varient}/p"), "is not a value of a sweep point (did you mean `variant`"),
        (("  variants:\n    small: {width: 8}\n    large: {width: 64}\n", ""), "this sweep has no variants"),
        (("    large: {width: 64}", "    large$x: {width: 64}"), "the variant name 'large$x' holds `$`"),
    ],
)
def test_a_sweep_reference_a_point_cannot_resolve_is_one_line_naming_the_key(records_project, expyrun, change, message):
    old, new = change
    assert old in VARIANTS
    write(records_project / "size.yml", VARIANTS.replace(old, new))
    result = expyrun("size.yml")
    assert result.returncode == 2
    assert message in result.stderr and "size.yml:" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not (records_project / "outputs").exists()


# run.json files expyrun did not write

DEEP = "[" * 100_000 + "]" * 100_000


def craft_name_folder(folder: Path) -> None:
    """Foreign `run.json` files where `--needed` and `list` look for runs."""
    for index, text in enumerate(['["a", "list"]', '"a string"', DEEP, '{"status": "completed", "snapshot": 3}']):
        write(folder / f"exp.{index}" / "run.json", text)


def test_needed_passes_over_foreign_run_records_with_a_warning_and_runs(records_project, expyrun):
    write(records_project / "c.yml", RUN_SECTION + "lr: 0.1\n")
    craft_name_folder(records_project / "outputs" / "demo")
    result = expyrun("c.yml", "--needed")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr and "Error" not in result.stderr, result.stderr
    for index in range(3):
        assert f"demo/exp.{index}/run.json is not a run record (not a JSON object)" in result.stderr
    assert "demo/exp.3/run.json is not a run record (`snapshot` is a int)" in result.stderr
    assert run_record(records_project / "outputs" / "demo" / "exp.4")["status"] == "completed"
    again = expyrun("c.yml", "--needed")  # the real run is found among the foreign ones
    assert again.returncode == 0 and "already done" in again.stderr, again.stderr
    assert not (records_project / "outputs" / "demo" / "exp.5").exists()


def test_a_sweep_with_needed_passes_over_foreign_run_records(records_project, expyrun):
    write(records_project / "grid.yml", GRID)
    craft_name_folder(records_project / "outputs" / "grid" / "lr0.1")
    result = expyrun("grid.yml", "--needed")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr and "is not a run record" in result.stderr, result.stderr
    assert sweep_data(records_project, "grid", 0)["counts"] == {"completed": 2}


def test_list_and_show_read_foreign_run_records_without_a_traceback(records_project, expyrun):
    craft_name_folder(records_project / "outputs" / "demo")
    listed = expyrun("list", "outputs")
    assert listed.returncode == 0, listed.stderr
    assert "Traceback" not in listed.stderr and listed.stderr.count("not a run record") == 4, listed.stderr
    for index in range(4):
        shown = expyrun("show", f"outputs/demo/exp.{index}")
        assert shown.returncode == 0 and "Traceback" not in shown.stderr, shown.stderr
        assert "run.json is not a run record" in shown.stderr


def test_diff_against_a_foreign_run_record_compares_what_it_can(records_project, expyrun):
    write(records_project / "c.yml", RUN_SECTION + "lr: 0.1\n")
    assert expyrun("c.yml").returncode == 0
    for index, text in ((1, '{"git": 3, "status": "completed"}'), (2, DEEP)):
        write(records_project / "outputs" / "demo" / f"exp.{index}" / "run.json", text)
        result = expyrun("diff", "outputs/demo/exp.0", f"outputs/demo/exp.{index}")
        assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
        assert "# commit" in result.stderr and "internal error" not in result.stderr, result.stderr


@pytest.mark.parametrize(
    ("text", "why"),
    [(DEEP, "nested too deeply"), ('{"points": 3', "not JSON"), ('["points"]', "no list of points")],
)
def test_show_of_a_sweep_record_that_cannot_be_read_is_one_line(records_project, expyrun, text, why):
    write(records_project / "outputs" / "grid" / "sweep.0" / "sweep.json", text)
    result = expyrun("show", "outputs/grid/sweep.0")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"expyrun: error: outputs/grid/sweep.0/sweep.json: not a sweep record ({why})"
    ]
