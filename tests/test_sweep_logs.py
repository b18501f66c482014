"""The logs of a sweep's points, whose output one tee process copies for every point of the launch
(`run/capture.py`): each point's `outputs.log` holds its own writes in order while points execute side
by side, a SIGKILLed launcher loses no line of its running points and stops them, and a daemon one
point leaves holding its output neither delays the next points nor loses what it writes later."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import yaml
from conftest import clean_env, run_expyrun, write


def write_sweep(project: Path, values: list[object], jobs: int, **keys: object) -> None:
    """A sweep config over `x` (one point per value), `jobs` at a time, the entry point `pkg.main:main`."""
    config = {
        "__run__": {"__main__": "pkg.main:main", "__name__": "s/{x}", "__output_dir__": "outputs"},
        "x": values[0],
        **keys,
        "__launch__": {"jobs": jobs},
        "__sweep__": {"grid": {"x": values}},
    }
    (project / "c.yml").write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")


def points(project: Path) -> list[dict]:
    return json.loads((project / "outputs" / "c" / "sweep.0" / "sweep.json").read_text())["points"]


def log_of(project: Path, x: object) -> Path:
    (run_dir,) = (project / "outputs" / "s" / str(x)).glob("exp.*")
    return run_dir / "outputs.log"


def wait_for(predicate: Callable[[], object], timeout: float, what: Callable[[], str]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting: {what()}")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split(")")[-1].split()[0] == "Z")


def test_points_side_by_side_each_log_their_own_writes_in_order(project, tmp_path):
    write(
        project / "pkg" / "main.py",
        """\
        import os
        def main(name, config):
            x = config["x"]
            for i in range(3000):
                os.write(1, b"%d out %d\\n" % (x, i))
                os.write(2, b"%d err %d\\n" % (x, i))
            print(x, "printed", flush=True)
        """,
    )
    write_sweep(project, list(range(6)), jobs=3)
    with open(tmp_path / "shown.txt", "w") as shown:
        result = subprocess.run(
            [sys.executable, "-m", "expyrun", "c.yml"], cwd=project, env=clean_env(), stdout=shown,
            stderr=subprocess.STDOUT, timeout=120, check=False,
        )  # fmt: skip
    assert result.returncode == 0
    terminal = (tmp_path / "shown.txt").read_text().splitlines()
    for x in range(6):
        expected = [f"{x} {stream} {i}" for i in range(3000) for stream in ("out", "err")] + [f"{x} printed"]
        assert log_of(project, x).read_text().splitlines() == expected
        assert [line for line in terminal if line.startswith(f"{x} ")] == expected  # each point's order kept


def test_a_sigkilled_launcher_loses_no_line_of_its_running_points_and_stops_them(project):
    write(
        project / "pkg" / "main.py",
        """\
        import subprocess, sys, time
        def main(name, config):
            helper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
            with open(f"helper-{config['x']}.pid", "w") as f:
                f.write(str(helper.pid))
            for i in range(100000):
                print("line", i, flush=True)
                time.sleep(0.01)
        """,
    )
    write_sweep(project, ["a", "b", "c"], jobs=2)
    process = subprocess.Popen(
        [sys.executable, "-m", "expyrun", "c.yml"], cwd=project, env=clean_env(), stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:

        def printed(x: str) -> list[str]:
            try:
                return [line for line in log_of(project, x).read_text().splitlines() if line.startswith("line ")]
            except (ValueError, FileNotFoundError):
                return []

        wait_for(lambda: len(printed("a")) > 20 and len(printed("b")) > 20, 60, lambda: "both points printing")
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
        helpers = [int((log_of(project, x).parent / f"helper-{x}.pid").read_text()) for x in "ab"]
        wait_for(lambda: not any(alive(pid) for pid in helpers), 10, lambda: "the points' groups to be stopped")
        for x in "ab":
            lines = printed(x)
            assert lines == [f"line {i}" for i in range(len(lines))] and len(lines) > 20, lines[-3:]
        assert not (project / "outputs" / "s" / "c").exists()  # no point started after the launcher died
    finally:
        if process.poll() is None:
            process.kill()


def test_a_daemon_holding_a_points_output_delays_no_other_point_and_keeps_logging(project):
    write(
        project / "pkg" / "main.py",
        """\
        import subprocess, sys
        def main(name, config):
            if config["x"] == 0:
                code = "import time; print('daemon up', flush=True); time.sleep(3); print('daemon later', flush=True)"
                subprocess.Popen([sys.executable, "-c", code], start_new_session=True)
            print("point", config["x"], flush=True)
        """,
    )
    write_sweep(project, [0, 1, 2, 3], jobs=1)
    result = run_expyrun(["c.yml"], project, timeout=60)
    assert result.returncode == 0, result.stderr
    rows = points(project)
    assert [row["status"] for row in rows] == ["completed"] * 4
    records = [json.loads((Path(row["run_dir"]) / "run.json").read_text()) for row in rows]
    # the next points took the slot while point 0's log was given its grace (2 s, then given up on)
    assert all(record["ended_at"] < records[0]["ended_at"] for record in records[1:]), records
    for x in (1, 2, 3):
        assert log_of(project, x).read_text() == f"point {x}\n"
    wait_for(lambda: "daemon later" in log_of(project, 0).read_text(), 10, lambda: log_of(project, 0).read_text())
    lines = log_of(project, 0).read_text().splitlines()  # the tee went on copying after expyrun exited
    assert sorted(lines[:2]) == ["daemon up", "point 0"] and lines[2:] == ["daemon later"]


def test_a_killed_tee_fails_the_points_it_served_and_the_sweep_goes_on(project):
    write(
        project / "pkg" / "main.py",
        """\
        import time
        def main(name, config):
            for i in range(5):
                print("point", config["x"], "line", i, flush=True)
                time.sleep(0.1)
        """,
    )
    write_sweep(project, list(range(6)), jobs=2)
    process = subprocess.Popen(
        [sys.executable, "-m", "expyrun", "c.yml"], cwd=project, env=clean_env(), stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:

        def printing() -> bool:
            log = project / "outputs" / "s" / "0" / "exp.0" / "outputs.log"
            return log.exists() and "line 1" in log.read_text()

        wait_for(printing, 60, lambda: "point 0 printing")
        children = Path(f"/proc/{process.pid}/task/{process.pid}/children").read_text().split()
        (tee,) = [int(pid) for pid in children if os.getsid(int(pid)) == int(pid)]  # the one in its own session
        os.kill(tee, signal.SIGKILL)
        _, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    rows = points(project)
    assert process.returncode == 1, err
    assert {row["status"] for row in rows} == {"completed", "failed"}, rows
    for row in rows:
        record = json.loads((Path(row["run_dir"]) / "run.json").read_text())
        if row["status"] == "failed":  # it ran when the tee was killed: its output had nowhere to go
            assert "tee process ended" in record["log_error"], record
    assert rows[-1]["status"] == "completed"  # a new tee served the points after
    assert log_of(project, 5).read_text().splitlines() == [f"point 5 line {i}" for i in range(5)]


def test_a_point_holds_no_descriptor_of_another_point_or_of_the_tee(project):
    """A point's process has its three streams and expyrun's result pipe: not the other points' pipes
    and logs, nor the shared tee's socket and report pipe (which would outlive the tee in a point's
    helpers). Each point lists its descriptors while the other point runs beside it."""
    write(
        project / "pkg" / "main.py",
        """\
        import os, time
        def main(name, config):
            time.sleep(0.5)  # the other point is running now
            held = {}
            for fd in os.listdir("/proc/self/fd"):
                try:
                    held[fd] = os.readlink(f"/proc/self/fd/{fd}")
                except OSError:
                    pass
            return held
        """,
    )
    write_sweep(project, [1, 2, 3, 4], jobs=2)
    result = run_expyrun(["c.yml"], project, timeout=120)
    assert result.returncode == 0, result.stderr
    for x in (1, 2, 3, 4):
        (run_dir,) = (project / "outputs" / "s" / str(x)).glob("exp.*")
        held = json.loads((run_dir / "run.json").read_text())["result"]
        others = {
            fd: target
            for fd, target in held.items()
            if int(fd) > 2 and (target.startswith("socket:") or "outputs.log" in target or target.startswith("pipe:"))
        }
        assert len(others) <= 1, (x, held)  # at most expyrun's own result pipe
