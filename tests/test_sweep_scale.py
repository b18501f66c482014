"""Sweeps at scale and a sweep record that tells the truth: `sweep.json` is a small header and
`points.jsonl` grows by appending; a sweep past 10,000 points starts at once and checks each point
as it prepares it; `show SWEEP` says `died` when the launcher was killed; each point's record
describes the code and interpreter it ran."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import yaml
from conftest import RUN_SECTION, files_under, start_expyrun, write

DEADLINE_S = 60.0

GATED = """\
import os, time
def main(name, config):
    cwd = os.environ["EXPYRUN_CWD"]
    open(os.path.join(cwd, f"started-{config['x']}"), "w").close()
    while not os.path.exists(os.path.join(cwd, "go")):
        time.sleep(0.02)
    return config["x"]
"""


def wait_until(predicate: Callable[[], object], what: str, seen: Callable[[], object] = lambda: None) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {DEADLINE_S:g} s waiting for {what}; saw {seen()!r}")


def lines(folder: Path) -> list[dict]:
    path = folder / "points.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def header(folder: Path) -> dict:
    path = folder / "sweep.json"
    return json.loads(path.read_text()) if path.exists() else {}


def gated_sweep(project: Path, values: str, extra: str = "") -> Path:
    write(project / "pkg" / "main.py", GATED)
    write(
        project / "c.yml",
        RUN_SECTION.replace("demo", "p/x{x}") + f"x: 0\n__sweep__:\n  grid:\n    x: {values}\n{extra}",
    )
    return project / "outputs" / "c" / "sweep.0"


def test_a_running_sweeps_record_is_a_header_and_appended_point_lines_that_show_folds(project, expyrun):
    folder = gated_sweep(project, "[1, 2, 3]")
    process = start_expyrun(["c.yml"], project)
    try:
        wait_until(lambda: header(folder).get("counts", {}).get("running") == 1, "point 0 to run in sweep.json",
                   lambda: header(folder))  # fmt: skip
        data = header(folder)
        assert "points" not in data and data["size"] == 3 and data["counts"] == {"running": 1, "pending": 2}
        assert data["pid"] == process.pid and data["status"] == "running"
        statuses = [line["status"] for line in lines(folder) if line["index"] == 0 and "status" in line]
        assert statuses == ["pending", "queued", "running"]
        shown = expyrun("show", str(folder))
        assert shown.returncode == 0, shown.stderr
        rows = [line.split()[:2] for line in shown.stderr.splitlines()[2:]]
        assert rows[:3] == [["0", "running"], ["1", "pending"], ["2", "pending"]], shown.stderr
        (project / "go").touch()
        assert process.wait(timeout=DEADLINE_S) == 0
    finally:
        process.kill()
        process.wait()
    data = header(folder)  # a small sweep's rows are folded into sweep.json at its end, as before
    assert data["status"] == "completed" and [p["result"] for p in data["points"]] == [1, 2, 3]
    assert [p["status"] for p in data["points"]] == ["completed"] * 3


def test_show_reads_a_sweep_record_written_by_an_earlier_version(project, expyrun):
    point = {"index": 0, "values": {"x": 1}, "status": "completed", "result": 0.5, "run_dir": "r"}
    old = {"name": "c", "status": "completed", "counts": {"completed": 1}, "points": [point]}
    write(project / "outputs" / "c" / "sweep.0" / "sweep.json", json.dumps(old))
    shown = expyrun("show", "outputs/c/sweep.0")
    assert shown.returncode == 0, shown.stderr
    assert shown.stderr.splitlines()[0] == "sweep c (completed): 1 completed"
    assert shown.stderr.splitlines()[2].split() == ["0", "completed", "0.5", "x=1", "r"]


def test_show_says_died_for_a_sweep_whose_launcher_was_killed(project, expyrun):
    folder = gated_sweep(project, "[1, 2, 3, 4]", "__launch__: {jobs: 3}\n")
    process = start_expyrun(["c.yml"], project)
    try:
        wait_until(lambda: all((project / f"started-{x}").exists() for x in (1, 2, 3)), "3 points to run",
                   lambda: header(folder).get("counts"))  # fmt: skip
        wait_until(lambda: header(folder).get("counts", {}).get("running") == 3, "3 running points in sweep.json",
                   lambda: header(folder).get("counts"))  # fmt: skip
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    assert header(folder)["status"] == "running"  # what the killed launcher left
    shown = expyrun("show", str(folder))
    assert shown.returncode == 0, shown.stderr
    assert shown.stderr.splitlines()[0] == "sweep c (died): 3 died, 1 pending", shown.stderr
    assert "completed" not in shown.stderr


def test_a_sweep_past_10000_points_starts_at_once_and_a_point_that_fails_fails_alone(project):
    ten_thousand = "[" + ", ".join(str(i) for i in range(5001)) + "]"
    write(project / "c.yml",
          RUN_SECTION.replace("demo", "p/{name}-{k}") + "name: a\nk: 0\n__sweep__:\n  grid:\n"
          f"    k: {ten_thousand}\n    name: [a, ../up]\n")  # fmt: skip
    folder = project / "outputs" / "c" / "sweep.0"
    started = time.monotonic()
    process = start_expyrun(["c.yml"], project)
    try:
        wait_until(lambda: any(line.get("status") == "completed" for line in lines(folder) if line["index"] == 2),
                   "point 2 to complete", lambda: lines(folder)[-3:])  # fmt: skip
        first = min(time.monotonic() - started, 999)
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=DEADLINE_S) == 130
    finally:
        process.kill()
        process.wait()
    assert first < 30, first  # checking every one of the 10,002 configs first took about as long again
    rows = {line["index"]: line for line in lines(folder) if "status" in line and line["status"] != "pending"}
    assert rows[1]["status"] == "failed" and "must stay inside the output folder" in rows[1]["exception"]["message"]
    data = header(folder)
    assert data["size"] == 10002 and "points" not in data and (folder / "sweep.json").stat().st_size < 2000
    assert data["status"] == "interrupted" and data["counts"]["completed"] >= 2
    failed = {index for index, row in rows.items() if row["status"] == "failed"}
    assert failed and all(index % 2 for index in failed) and data["counts"]["failed"] == len(failed)  # `../up` only
    assert not (project / "up").exists()


def test_dry_run_of_a_huge_sweep_lists_the_first_points_and_how_many_more(project, expyrun):
    values = "[" + ", ".join(str(i) for i in range(1000)) + "]"
    sweep = f"a: 0\nb: 0\n__sweep__:\n  grid:\n    a: {values}\n    b: {values}\n"
    write(project / "c.yml", RUN_SECTION.replace("demo", "p/{a}-{b}") + sweep)
    before = files_under(project)
    result = expyrun("c.yml", "--dry-run")
    assert result.returncode == 0, result.stderr
    listed = yaml.safe_load(result.stdout)
    assert listed["size"] == 10**6 and listed["not_listed"] == 10**6 - 100 and len(listed["points"]) == 100
    assert listed["points"][99] == {"point": 99, "variant": None, "values": {"a": 0, "b": 99}, "name": "p/0-99"}
    assert files_under(project) == before


def test_point_lookup_matches_the_order_of_the_points() -> None:
    from expyrun.sweep.spec import SweepSpec

    spec = SweepSpec("s", {"a": [1, 2, 3], "b": [4, 5]}, {"c": [7, 8], "d": [9, 10]}, {"x": {"e": 1}, "y": {"e": 2}})
    assert [spec.point(p.index) for p in spec.points()] == list(spec.points())
    assert os.sep  # (pure: no process, no folder)


def code_version(project: Path, folder: str, result: int) -> None:
    write(project / folder / "pkg" / "__init__.py", "")
    write(project / folder / "pkg" / "main.py", f"def main(name, config):\n    return {result}\n")


def test_a_sweep_over_the_code_runs_and_records_each_points_own_code(project, expyrun):
    code_version(project, "v1", 1)
    code_version(project, "v2", 2)
    run = RUN_SECTION.replace("demo", "p/{__run__.__code__}") + "  __code__: v1\n"
    write(project / "c.yml", run + "__sweep__:\n  grid:\n    __run__.__code__: [v1, v2]\n")
    result = expyrun("c.yml")
    assert result.returncode == 0, result.stderr
    folder = project / "outputs" / "c" / "sweep.0"
    points = header(folder)["points"]
    assert [p["result"] for p in points] == [1, 2], points
    runs = [json.loads((Path(p["run_dir"]) / "run.json").read_text()) for p in points]
    assert runs[0]["snapshot"]["sha256"] != runs[1]["snapshot"]["sha256"]
    assert "return 2" in (Path(points[1]["run_dir"]) / "pkg" / "main.py").read_text()

    code_version(project, "v2", 3)  # --needed: the point whose code changed runs again, the other is done
    again = expyrun("c.yml", "--needed")
    assert again.returncode == 0, again.stderr
    points = header(project / "outputs" / "c" / "sweep.1")["points"]
    assert [p["status"] for p in points] == ["skipped", "completed"] and points[1]["result"] == 3, points


def test_a_sweep_over_the_interpreter_records_each_interpreters_requirements(project, expyrun, tmp_path_factory):
    import subprocess
    import sys

    bare = tmp_path_factory.mktemp("tools") / "bare"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(bare)], check=True)
    run = RUN_SECTION.replace("demo", "p/{x}") + f"  __python__: {bare}\nx: 0\n"
    write(
        project / "c.yml",
        run + f"__sweep__:\n  zip:\n    x: [0, 1]\n    __run__.__python__: [{bare}, {sys.executable}]\n",
    )
    result = expyrun("c.yml")
    assert result.returncode == 0, result.stderr
    points = header(project / "outputs" / "c" / "sweep.0")["points"]
    frozen = [(Path(p["run_dir"]) / "frozen_requirements.txt").read_text().lower() for p in points]
    assert "pyyaml" not in frozen[0] and "pyyaml" in frozen[1], frozen
    pythons = [json.loads((Path(p["run_dir"]) / "run.json").read_text())["python"] for p in points]
    assert pythons[0] != pythons[1]


def test_reused_workers_for_a_sweep_over_the_code_are_refused_before_anything(project, expyrun):
    code_version(project, "v1", 1)
    code_version(project, "v2", 2)
    run = RUN_SECTION + "  __code__: v1\n__launch__: {reuse_workers: true}\n"
    write(project / "c.yml", run + "__sweep__:\n  grid:\n    __run__.__code__: [v1, v2]\n")
    before = files_under(project)
    result = expyrun("c.yml")
    assert result.returncode == 2, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "sweeps `__run__.__code__`" in result.stderr
    assert files_under(project) == before
