"""The engine under a sweep's points, through the real `expyrun`: a point that cannot be prepared
fails alone, Ctrl-C on a terminal stops the whole sweep, points executing side by side read no
terminal, and many quick points never lose the race with their tee."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest
from conftest import run_expyrun, start_expyrun, terminal_session, write

SLOW_THEN_RECORD = """\
import os, time
def main(name, config):
    time.sleep(config["sleep"])
    return config["x"]
"""


def sweep_config(values: str, extra: str = "", name: str = "s/{x}") -> str:
    return f"""\
__run__:
  __main__: pkg.main:main
  __name__: "{name}"
  __output_dir__: outputs
x: a
sleep: 0
{extra}
__sweep__:
  grid:
    x: {values}
"""


def sweep_json(project: Path, name: str = "c") -> dict:
    return json.loads((project / "outputs" / name / "sweep.0" / "sweep.json").read_text())


def run_json(run_dir: str | Path) -> dict:
    return json.loads((Path(run_dir) / "run.json").read_text())


def test_a_point_whose_folder_cannot_be_made_fails_alone_and_running_points_finish(project):
    write(project / "pkg" / "main.py", SLOW_THEN_RECORD)
    write(project / "c.yml", sweep_config("[a, b, c]", "sleep: 1\n__launch__: {jobs: 2}"))
    write(project / "outputs" / "s" / "b", "a file where point 1's name folder would go")
    result = run_expyrun(["c.yml"], project)
    assert result.returncode == 1, result.stderr
    points = {p["index"]: p for p in sweep_json(project)["points"]}
    assert [points[i]["status"] for i in range(3)] == ["completed", "failed", "completed"], result.stderr
    assert "point 1 failed (not prepared: " in result.stderr
    assert run_json(points[0]["run_dir"])["status"] == "completed"  # running beside it: not killed
    assert run_json(points[2]["run_dir"])["result"] == "c"
    assert sweep_json(project)["status"] == "failed"


def test_a_deleted_first_point_folder_does_not_stop_later_points(project):
    write(
        project / "pkg" / "main.py",
        """\
        import os, shutil
        def main(name, config):
            if config["x"] == "b":  # point 0's folder, which later points clone their snapshot from
                shutil.rmtree(os.path.join(os.environ["EXPYRUN_RUN_DIR"], "..", "..", "a", "exp.0"))
            return config["x"]
        """,
    )
    write(project / "c.yml", sweep_config("[a, b, c, d]"))
    result = run_expyrun(["c.yml"], project)
    assert result.returncode == 0, result.stderr
    points = {p["index"]: p for p in sweep_json(project)["points"]}
    assert [points[i]["status"] for i in range(4)] == ["completed"] * 4, result.stderr
    for index in (2, 3):
        run_dir = Path(points[index]["run_dir"])
        assert (run_dir / "pkg" / "main.py").is_file() and run_json(run_dir)["result"] == "abcd"[index]


def test_ctrl_c_on_a_terminal_stops_a_sweep_of_one_job_at_a_time(project):
    write(
        project / "pkg" / "main.py",
        """\
        import time
        def main(name, config):
            print("point", config["x"], "working", flush=True)
            time.sleep(60)
        """,
    )
    write(project / "c.yml", sweep_config("[a, b, c]"))
    started = time.monotonic()
    session = terminal_session(["c.yml"], project, answers={b"point a working": b"\x03"}, timeout=60)
    shown = session.shown.decode(errors="replace")
    assert session.code == 130, shown
    assert b"point b working" not in session.shown, shown
    assert session.ended_at - started < 30, shown
    data = sweep_json(project)
    assert data["status"] == "interrupted" and data["counts"] == {"interrupted": 1, "pending": 2}, data


def test_points_executing_side_by_side_on_a_terminal_read_end_of_file_not_the_terminal(project):
    write(
        project / "pkg" / "main.py",
        """\
        def main(name, config):
            try:
                return input("answer? ")
            except EOFError:
                return "end of file"
        """,
    )
    write(project / "c.yml", sweep_config("[a, b]", "__launch__: {jobs: 2}"))
    session = terminal_session(["c.yml"], project, timeout=60)
    shown = session.shown.decode(errors="replace")
    assert session.code == 0 and session.stops == 0, shown
    points = sweep_json(project)["points"]
    assert [run_json(p["run_dir"])["result"] for p in points] == ["end of file", "end of file"]


def test_a_hundred_quick_command_points_two_at_a_time_all_complete(tmp_path):
    write(tmp_path / "scripts" / "quick.sh", "echo point $1\n")
    write(
        tmp_path / "c.yml",
        f"""\
        __run__:
          __command__: ["bash", "{{__run__.__code__}}/quick.sh", "{{i}}"]
          __code__: scripts
          __name__: "q/{{i}}"
          __output_dir__: outputs
        i: 0
        __launch__: {{jobs: 2}}
        __sweep__:
          grid:
            i: {list(range(100))}
        """,
    )
    result = run_expyrun(["c.yml"], tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "internal error" not in result.stderr
    data = sweep_json(tmp_path)
    assert data["counts"] == {"completed": 100}, data["counts"]
    for point in data["points"]:
        assert (Path(point["run_dir"]) / "outputs.log").read_text() == f"point {point['index']}\n"


COUNTING = """\
import os, time
IMPORTS = []
IMPORTS.append(time.time())
CALLS = 0
def main(name, config):
    global CALLS
    CALLS += 1
    print("point", config["x"], "call", CALLS, flush=True)
    if config["x"] == "c":
        raise ValueError("c fails")
    return {"calls": CALLS, "imports": len(IMPORTS), "pid": os.getpid(), "point": os.environ["EXPYRUN_SWEEP_POINT"]}
"""


def test_points_on_a_reused_worker_share_one_import_and_keep_their_own_records(project):
    write(project / "pkg" / "main.py", COUNTING)
    write(project / "c.yml", sweep_config("[a, b, c, d]", "__launch__: {reuse_workers: true}"))
    result = run_expyrun(["c.yml"], project)
    assert result.returncode == 1, result.stderr
    points = sweep_json(project)["points"]
    records = [run_json(p["run_dir"]) for p in points]
    assert [r["status"] for r in records] == ["completed", "completed", "failed", "completed"]
    results = [records[i]["result"] for i in (0, 1, 3)]
    assert [r["calls"] for r in results] == [1, 2, 4] and {r["imports"] for r in results} == {1}
    assert len({r["pid"] for r in results}) == 1 and [r["point"] for r in results] == ["0", "1", "3"]
    assert records[2]["exception"] == {"type": "ValueError", "message": "c fails"}
    logs = [(Path(p["run_dir"]) / "outputs.log").read_text() for p in points]
    assert logs[0] == "point a call 1\n" and logs[1] == "point b call 2\n" and logs[3] == "point d call 4\n"
    assert logs[2].startswith("point c call 3\n") and logs[2].rstrip().endswith("ValueError: c fails")


def test_a_stop_signal_interrupts_points_on_reused_workers(project):
    write(
        project / "pkg" / "main.py",
        """\
        import time
        def main(name, config):
            print("working", flush=True)
            time.sleep(60)
        """,
    )
    write(project / "c.yml", sweep_config("[a, b, c]", "__launch__: {reuse_workers: true, jobs: 2}"))
    process = start_expyrun(["c.yml"], project)
    deadline = time.monotonic() + 30
    logs = project / "outputs" / "s"

    def working() -> list[str]:
        return [log.parent.parent.name for log in logs.glob("*/exp.0/outputs.log") if "working" in log.read_text()]

    while len(working()) < 2:
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"two points working within 30 s; working: {working()}")
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    code = process.wait(timeout=30)
    assert code == 143, process.stderr.read() if process.stderr else code
    data = sweep_json(project)
    assert data["status"] == "interrupted" and data["counts"] == {"interrupted": 2, "pending": 1}, data


@pytest.mark.parametrize(
    ("run", "launch", "fragment"),
    [
        ('  __command__: ["true"]\n  __code__: pkg\n', "{reuse_workers: true}", "not `__command__`"),
        ("", "{reuse_workers: 1}", "`__launch__.reuse_workers`: expected true or false, got 1"),
    ],
)
def test_reuse_workers_is_refused_where_it_means_nothing(project, run, launch, fragment):
    config = sweep_config("[a, b]", f"__launch__: {launch}")
    if run:
        config = config.replace("  __main__: pkg.main:main\n", run)
    write(project / "c.yml", config)
    result = run_expyrun(["c.yml"], project)
    assert result.returncode == 2 and fragment in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) <= 2 and not (project / "outputs").exists()
