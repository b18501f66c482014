"""Sweeps (SPEC 9) from the command line: points, names, records, parallel points, --needed, errors."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest
import yaml
from conftest import RUN_SECTION, files_under, start_expyrun, write

ENTRY = """\
import json, os, time
def main(name, config):
    if config.get("fail") and config["lr"] == 0.01:
        raise RuntimeError("diverged")
    start = time.time()
    time.sleep(config.get("sleep", 0))
    with open(os.path.join(os.environ["EXPYRUN_CWD"], "calls.jsonl"), "a") as log:
        log.write(json.dumps({"name": name, "gpu": os.environ.get("CUDA_VISIBLE_DEVICES"),
                              "start": start, "end": time.time()}) + "\\n")
    return config["lr"] * config["data"]["batch"]
"""

SWEEP = """\
__run__:
  __main__: pkg.main:main
  __name__: "grid/lr{lr}-b{data.batch}-{model}"
  __output_dir__: outputs
lr: 0.1
model: mlp
data: {batch: 8, name: mnist}
__sweep__:
  variants:
    small: {model: mlp}
    large: {model: cnn}
  grid:
    lr: [0.1, 0.01]
  zip:
    data.batch: [8, 16]
    data.name: [mnist, cifar]
"""


@pytest.fixture
def sweep_project(project: Path) -> Path:
    write(project / "pkg" / "main.py", ENTRY)
    write(project / "grid.yml", SWEEP)
    return project


def sweep_json(project: Path, index: int = 0) -> dict:
    return json.loads((project / "outputs" / "grid" / f"sweep.{index}" / "sweep.json").read_text())


def test_points_in_order_with_names_records_and_rerunnable_configs(sweep_project, expyrun):
    result = expyrun("grid.yml")
    assert result.returncode == 0, result.stderr
    data = sweep_json(sweep_project)
    expected = [
        (variant, lr, batch, name)
        for variant, model in (("small", "mlp"), ("large", "cnn"))
        for lr in (0.1, 0.01)
        for batch, name in ((8, "mnist"), (16, "cifar"))
    ]
    points = data["points"]
    assert [(p["variant"], p["values"]["lr"], p["values"]["data.batch"], p["values"]["data.name"]) for p in points] == [
        (v, lr, b, n) for v, lr, b, n in expected
    ]
    assert data["status"] == "completed" and data["counts"] == {"completed": 8}
    first = points[0]
    assert first["name"] == "grid/lr0.1-b8-mlp" and first["result"] == pytest.approx(0.8)
    run_dir = Path(first["run_dir"])
    assert run_dir == sweep_project / "outputs" / "grid" / "lr0.1-b8-mlp" / "exp.0"
    record = json.loads((run_dir / "run.json").read_text())
    assert record["sweep"]["point"] == 0 and record["sweep"]["dir"].endswith("grid/sweep.0")
    assert record["snapshot"]["files"] == 2 and (run_dir / "pkg" / "main.py").exists()
    assert (run_dir / "frozen_requirements.txt").exists()
    config = yaml.safe_load((run_dir / "config.yml").read_text())
    assert "__sweep__" not in config and config["data"] == {"batch": 8, "name": "mnist"}
    log = (sweep_project / "outputs" / "grid" / "sweep.0" / "outputs.log").read_text().splitlines()
    assert len(log) == 8 and log[0].startswith("point 0 completed")
    rerun = expyrun(str(run_dir / "config.yml"))
    assert rerun.returncode == 0 and (run_dir.parent / "exp.1").is_dir()
    assert not (sweep_project / "outputs" / "grid" / "sweep.1").exists()


def test_show_sweep_prints_the_points(sweep_project, expyrun):
    assert expyrun("grid.yml").returncode == 0
    shown = expyrun("show", "outputs/grid/sweep.0")
    assert shown.returncode == 0
    lines = shown.stderr.splitlines()
    assert lines[0] == "sweep grid (completed): 8 completed"
    assert lines[1].split() == ["point", "status", "result", "values", "run"]
    assert len(lines) == 10 and "lr=0.01" in lines[4]


def test_parallel_points_overlap_with_distinct_gpus(sweep_project, expyrun):
    write(sweep_project / "grid.yml", SWEEP + "sleep: 0.6\n__launch__: {jobs: 2, gpus: [3, 7]}\n")
    result = expyrun("grid.yml")
    assert result.returncode == 0, result.stderr
    calls = [json.loads(line) for line in (sweep_project / "calls.jsonl").read_text().splitlines()]
    assert len(calls) == 8 and {c["gpu"] for c in calls} == {"3", "7"}
    overlapping = 0
    for i, a in enumerate(calls):
        for b in calls[i + 1 :]:
            if a["start"] < b["end"] and b["start"] < a["end"]:
                overlapping += 1
                assert a["gpu"] != b["gpu"], (a, b)
    assert overlapping >= 3
    gpus = {
        json.loads((Path(p["run_dir"]) / "run.json").read_text())["gpu"] for p in sweep_json(sweep_project)["points"]
    }
    assert gpus == {"3", "7"}


def test_needed_skips_what_is_done_and_reruns_changed_code(sweep_project, expyrun):
    assert expyrun("grid.yml").returncode == 0
    again = expyrun("grid.yml", "--needed")
    assert again.returncode == 0, again.stderr
    data = sweep_json(sweep_project, 1)
    assert data["counts"] == {"skipped": 8}
    assert all(p["reused"] and p["reused"].endswith("exp.0") for p in data["points"])
    assert len((sweep_project / "calls.jsonl").read_text().splitlines()) == 8
    write(sweep_project / "pkg" / "main.py", ENTRY + "\n# changed\n")
    changed = expyrun("grid.yml", "--needed")
    assert changed.returncode == 0
    assert sweep_json(sweep_project, 2)["counts"] == {"completed": 8}
    single = expyrun("grid.yml", "--needed", "--__sweep__.grid.lr", "[0.1, 0.5]")
    assert single.returncode == 0 and sweep_json(sweep_project, 3)["counts"] == {"completed": 4, "skipped": 4}


def test_needed_for_a_single_run(project, expyrun):
    write(project / "c.yml", RUN_SECTION + "a: 1\n")
    assert expyrun("c.yml").returncode == 0
    again = expyrun("c.yml", "--needed")
    assert again.returncode == 0 and "already done" in again.stderr
    assert sorted(p.name for p in (project / "outputs" / "demo").iterdir()) == ["exp.0"]
    assert expyrun("c.yml", "--needed", "--a", "2").returncode == 0
    assert sorted(p.name for p in (project / "outputs" / "demo").iterdir()) == ["exp.0", "exp.1"]


def test_a_failed_point_fails_the_sweep_with_exit_1(sweep_project, expyrun):
    write(sweep_project / "grid.yml", SWEEP + "fail: true\n")
    result = expyrun("grid.yml")
    assert result.returncode == 1
    data = sweep_json(sweep_project)
    assert data["status"] == "failed" and data["counts"] == {"completed": 4, "failed": 4}
    assert "point 2 failed (RuntimeError: diverged)" in result.stderr


def test_interrupting_a_sweep_stops_running_points_and_starts_none(sweep_project):
    write(sweep_project / "grid.yml", SWEEP + "sleep: 30\n")
    process = start_expyrun(["grid.yml"], sweep_project)
    deadline = time.monotonic() + 30
    folder = sweep_project / "outputs" / "grid" / "sweep.0" / "sweep.json"
    while time.monotonic() < deadline:
        if folder.exists() and json.loads(folder.read_text())["counts"].get("running"):
            break
        time.sleep(0.05)
    else:
        process.kill()
        raise AssertionError("no point started")
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=30) == 130
    data = sweep_json(sweep_project)
    assert data["status"] == "interrupted" and data["counts"] == {"interrupted": 1, "pending": 7}


def test_dry_run_lists_points_and_creates_nothing(sweep_project, expyrun):
    before = files_under(sweep_project)
    result = expyrun("grid.yml", "--dry-run")
    assert result.returncode == 0, result.stderr
    listed = yaml.safe_load(result.stdout)
    assert len(listed["points"]) == 8 and listed["points"][7]["name"] == "grid/lr0.01-b16-cnn"
    assert files_under(sweep_project) == before
    explained = expyrun("grid.yml", "--explain")
    assert explained.returncode == 0
    assert any(line.startswith("lr ") and line.endswith("sweep") for line in explained.stderr.splitlines())


@pytest.mark.parametrize(
    ("sweep", "fragment"),
    [
        ("  gird: {lr: [1]}\n", "`__sweep__.gird`: unknown part (did you mean `grid`?)"),
        ("  zip: {lr: [1, 2], model: [a]}\n", "`__sweep__.zip`: lists of different lengths (lr: 2, model: 1)"),
        ("  grid: {lr: []}\n", "`__sweep__.grid.lr`: empty list"),
        ("  grid: {lrr: [1]}\n", "unknown key `lrr` (did you mean `lr`?)"),
        ("  variants: {small: 3}\n", "`__sweep__.variants.small`: expected a mapping"),
        ("  grid: {lr: [1]}\n  variants: {a: {lr: 2}}\n", "`lr` is also set by `__sweep__.grid`"),
    ],
)
def test_bad_sweeps_exit_2_and_create_nothing(project, expyrun, sweep, fragment):
    write(project / "c.yml", RUN_SECTION + "lr: 0.1\nmodel: a\n__sweep__:\n" + sweep)
    before = files_under(project)
    result = expyrun("c.yml")
    assert result.returncode == 2 and fragment in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and files_under(project) == before


def test_sweep_with_a_study_is_refused(project, expyrun):
    write(
        project / "c.yml",
        RUN_SECTION
        + "lr: 0.1\n__sweep__: {grid: {lr: [1]}}\n__optuna__: {search_space: {lr: {type: float, low: 0, high: 1}}}\n",
    )
    result = expyrun("c.yml")
    assert result.returncode == 2 and "`__sweep__` and `__optuna__` cannot be used together" in result.stderr


def test_a_point_whose_config_does_not_resolve_stops_the_sweep_before_anything(project, expyrun):
    write(
        project / "c.yml",
        RUN_SECTION.replace("demo", "p/{name}") + "name: a\n__sweep__:\n  grid:\n    name: [a, ../up]\n",
    )
    before = files_under(project)
    result = expyrun("c.yml")
    assert result.returncode == 2 and "must stay inside the output folder" in result.stderr, result.stderr
    assert files_under(project) == before
