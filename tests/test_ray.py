"""`launcher: ray` against a real one-node Ray head (tests/ray_cluster.py) started once for this
module on 127.0.0.1 (2 CPUs, 2 declared GPUs, no dashboard) and stopped by pid.

Every expyrun here gets the head's `env` (RAY_ADDRESS, a HOME of the cluster's own, usage stats
off and reported to a closed local port): no connection leaves loopback.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import RUN_SECTION, clean_env, run_expyrun, write
from ray_cluster import RayHead, free_port, unavailable

DEADLINE_S = 120.0


@pytest.fixture(scope="module")
def head() -> Iterator[RayHead]:
    reason = unavailable()
    if reason is not None:
        pytest.fail(reason)
    started = RayHead(num_cpus=2, num_gpus=2).start()
    try:
        yield started
    finally:
        started.stop()


def expyrun(project: Path, head: RayHead, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return run_expyrun(list(args), project, {**head.env, **env}, timeout=DEADLINE_S)


def start(project: Path, head: RayHead, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "expyrun", *args], cwd=project, env={**clean_env(), **head.env},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip


def record(run_dir: Path) -> dict:
    return json.loads((run_dir / "run.json").read_text())


def wait_until(predicate: Callable[[], object], what: str, seen: Callable[[], object] = lambda: None) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {DEADLINE_S:g} s waiting for {what}; saw {seen()!r}")


def ray_section(wait: bool = True, **settings: object) -> str:
    text = f"__launch__:\n  launcher: ray\n  wait: {json.dumps(wait)}\n"
    if settings:
        text += "  ray:\n" + "".join(f"    {k}: {json.dumps(v)}\n" for k, v in settings.items())
    return text


def test_a_run_is_a_ray_task_recording_its_ids_host_and_gpu(project, head):
    write(project / "pkg" / "main.py", """\
        import os, socket
        def main(name, config):
            print("on ray, attempt", os.environ["EXPYRUN_ATTEMPT"], "gpus", os.environ["CUDA_VISIBLE_DEVICES"])
            return {"host": socket.gethostname(), "cwd": os.getcwd()}
        """)  # fmt: skip
    write(project / "c.yml", RUN_SECTION + "x: 1\n" + ray_section(num_gpus=1))
    result = expyrun(project, head, "c.yml")
    assert result.returncode == 0, result.stderr
    run_dir = project / "outputs" / "demo" / "exp.0"
    run = record(run_dir)
    assert run["status"] == "completed" and run["launcher"] == "ray" and run["attempt"] == 1
    assert set(run["ray"]) >= {"job_id", "task_id", "node_id"} and all(run["ray"][k] for k in ("job_id", "task_id"))
    assert run["host"] == run["result"]["host"] and run["result"]["cwd"] == str(run_dir)
    assert run["gpu"] in ("0", "1")  # one of the head's two (declared) GPUs, given by Ray
    assert f"on ray, attempt 1 gpus {run['gpu']}" in result.stdout  # its output, shown as a local run shows it
    assert f"completed: {run_dir}" in result.stderr
    assert (run_dir / "frozen_requirements.txt").is_file() and (run_dir / "pkg" / "main.py").is_file()


def test_a_failing_run_exits_1(project, head):
    write(project / "pkg" / "main.py", "def main(name, config):\n    raise ValueError('bad data')\n")
    write(project / "c.yml", RUN_SECTION + ray_section())
    result = expyrun(project, head, "c.yml")
    assert result.returncode == 1, result.stderr
    run = record(project / "outputs" / "demo" / "exp.0")
    assert run["status"] == "failed" and run["exception"] == {"type": "ValueError", "message": "bad data"}


def test_a_six_point_sweep_runs_each_point_as_a_task(project, head):
    entry = "import os\ndef main(name, config):\n    return [config['x'] * 10, os.environ['EXPYRUN_SWEEP_POINT']]\n"
    write(project / "pkg" / "main.py", entry)
    sweep = "__sweep__:\n  grid:\n    x: [1, 2, 3, 4, 5, 6]\n"
    write(project / "c.yml", RUN_SECTION.replace("demo", "x{x}") + "x: 0\n" + sweep + ray_section())
    result = expyrun(project, head, "c.yml")
    assert result.returncode == 0, result.stderr
    run_dirs = [project / "outputs" / f"x{x}" / "exp.0" for x in range(1, 7)]
    assert [record(d)["result"] for d in run_dirs] == [[x * 10, str(x - 1)] for x in range(1, 7)]
    assert all(record(d)["launcher"] == "ray" and record(d)["ray"]["task_id"] for d in run_dirs)
    sweep_json = json.loads((project / "outputs" / "c" / "sweep.0" / "sweep.json").read_text())
    assert sweep_json["status"] == "completed" and sweep_json["counts"] == {"completed": 6}
    assert "sweep completed: 6 completed" in result.stderr


STUDY = """\
x: 0.0
__optuna__:
  n_trials: 6
  search_space:
    x: {type: float, low: -1.0, high: 1.0}
"""


def test_a_two_worker_study_runs_exactly_n_trials(project, head):
    write(project / "pkg" / "main.py", "import time\ndef main(name, config):\n    time.sleep(0.2)\n"
                                       "    return config['x'] ** 2\n")  # fmt: skip
    section = ray_section().replace("  wait: true\n", "  wait: true\n  workers: 2\n")
    write(project / "c.yml", RUN_SECTION + STUDY + section)
    result = expyrun(project, head, "c.yml")
    assert result.returncode == 0, result.stderr
    study_dirs = sorted((project / "outputs" / "demo").glob("exp.*"))
    assert len(study_dirs) == 2 and all(record(d)["status"] == "completed" for d in study_dirs)
    assert len({record(d)["ray"]["task_id"] for d in study_dirs}) == 2
    import optuna

    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(project / "outputs" / "demo" / "study.journal"))
    )
    trials = optuna.load_study(study_name="demo", storage=storage).get_trials()
    assert len(trials) == 6 and all(t.state.name == "COMPLETE" for t in trials)


WAITING = """\
import os, time
from pathlib import Path
def main(name, config):
    Path("ready").touch()
    while True:
        time.sleep(0.05)
"""


def start_two_running_one_waiting(project, head, body: str) -> tuple[subprocess.Popen[str], list[Path]]:
    """A 3-point sweep of `body` (which touches `ready` once running) on the 2-CPU head: two points
    run, the third waits for a CPU. Returns once the two are running."""
    write(project / "pkg" / "main.py", body)
    sweep = "__sweep__:\n  grid:\n    x: [1, 2, 3]\n"
    write(project / "c.yml", RUN_SECTION.replace("demo", "p{x}") + "x: 0\n" + sweep + ray_section())
    process = start(project, head, "c.yml")
    run_dirs = [project / "outputs" / f"p{x}" / "exp.0" for x in (1, 2, 3)]
    wait_until(lambda: sum((d / "ready").exists() for d in run_dirs) == 2, "two points to run",
               lambda: [record(d)["status"] for d in run_dirs if (d / "run.json").exists()])  # fmt: skip
    return process, run_dirs


def test_ctrl_c_cancels_the_tasks_and_every_run_ends_interrupted(project, head):
    process, run_dirs = start_two_running_one_waiting(project, head, WAITING)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=DEADLINE_S)
    assert process.returncode == 130, stderr
    assert "SIGINT to 3 Ray task(s)" in stderr
    assert [record(d)["status"] for d in run_dirs] == ["interrupted"] * 3, [record(d) for d in run_dirs]
    assert sorted(record(d)["exit_code"] for d in run_dirs) == [130, 130, 130]
    sweep_json = json.loads((project / "outputs" / "c" / "sweep.0" / "sweep.json").read_text())
    assert sweep_json["counts"] == {"interrupted": 3}


SAVING = """\
import signal, sys, time
from pathlib import Path
def on_sigterm(signum, frame):
    time.sleep(1)                       # a checkpoint being saved: the grace lets it finish
    Path("saved").write_text(signal.Signals(signum).name)
    sys.exit(0)
def main(name, config):
    signal.signal(signal.SIGTERM, on_sigterm)
    Path("ready").touch()
    while True:
        time.sleep(0.05)
"""


def test_sigterm_reaches_the_running_runs_as_sigterm_and_a_point_not_started_never_starts(project, head):
    process, run_dirs = start_two_running_one_waiting(project, head, SAVING)
    waiting = next(d for d in run_dirs if not (d / "ready").exists())
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=DEADLINE_S)
    assert process.returncode == 143, stderr
    assert time.monotonic() - started < 10, stderr  # the runs ended in their grace: nothing waited for a cancel
    running = [d for d in run_dirs if d != waiting]
    assert [(d / "saved").read_text() for d in running] == ["SIGTERM", "SIGTERM"]
    assert [(record(d)["status"], record(d)["exit_code"]) for d in run_dirs] == [("interrupted", 143)] * 3
    assert not (waiting / "ready").exists() and "before the run started" in record(waiting)["exception"]["message"]


KILLED_ONCE = """\
import os, time
from pathlib import Path
def _ray_worker():
    pid = os.getpid()
    while pid > 1:
        if Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"ray::"):
            return pid
        pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    raise RuntimeError("no Ray worker among the run's ancestors")
def main(name, config):
    attempt = int(os.environ["EXPYRUN_ATTEMPT"])
    if attempt == 1:
        Path("worker.pid").write_text(str(_ray_worker()))
        while True:
            time.sleep(0.05)
    return {"attempt": attempt}
"""


def _kill_the_worker(run_dir: Path) -> None:
    wait_until(lambda: (run_dir / "worker.pid").exists(), "the run to name its Ray worker",
               lambda: record(run_dir)["status"] if (run_dir / "run.json").exists() else None)  # fmt: skip
    os.kill(int((run_dir / "worker.pid").read_text()), signal.SIGKILL)


def test_a_run_whose_ray_worker_is_killed_executes_again_as_attempt_2(project, head):
    write(project / "pkg" / "main.py", KILLED_ONCE)
    write(project / "c.yml", RUN_SECTION + ray_section(max_retries=2))
    process = start(project, head, "c.yml")
    run_dir = project / "outputs" / "demo" / "exp.0"
    _kill_the_worker(run_dir)
    _, stderr = process.communicate(timeout=DEADLINE_S)
    assert process.returncode == 0, stderr
    run = record(run_dir)
    assert run["status"] == "completed" and run["attempt"] == 2 and run["result"] == {"attempt": 2}
    log = (run_dir / "outputs.log").read_text()
    assert "attempt 1 stopped: its Ray worker died" in log and "expyrun: attempt 2 of 3" in log


def test_a_killed_worker_with_no_retry_left_fails_the_run_saying_why(project, head):
    write(project / "pkg" / "main.py", KILLED_ONCE)
    write(project / "c.yml", RUN_SECTION + ray_section(max_retries=0))
    process = start(project, head, "c.yml")
    run_dir = project / "outputs" / "demo" / "exp.0"
    _kill_the_worker(run_dir)
    _, stderr = process.communicate(timeout=DEADLINE_S)
    assert process.returncode == 1, stderr
    run = record(run_dir)
    assert run["status"] == "failed" and run["exception"]["type"] == "WorkerDied", run
    assert "died in each of 1 attempt(s)" in stderr


def _refused(result: subprocess.CompletedProcess[str], project: Path, fragment: str) -> None:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and fragment in lines[0], result.stderr
    assert not (project / "outputs").exists()


@pytest.mark.parametrize(
    ("settings", "fragment"),
    [
        ({"num_cpu": 1}, "`__launch__.ray.num_cpu`: unknown setting (did you mean `num_cpus`?)"),
        ({"num_gpus": 8}, "no node of the Ray cluster offers CPU=1, GPU=8 for one run"),
        ({"resources": {"tpu": 1}}, "no node of the Ray cluster offers CPU=1, tpu=1 for one run"),
        ({"max_retries": -1}, "`__launch__.ray.max_retries`: expected an integer >= 0"),
    ],
)
def test_bad_ray_settings_are_one_line_exit_2_and_create_nothing(project, head, settings, fragment):
    write(project / "c.yml", RUN_SECTION + ray_section(**settings))
    _refused(expyrun(project, head, "c.yml"), project, fragment)


def test_no_cluster_at_the_address_is_one_line_exit_2_within_30_s(project, head):
    write(project / "c.yml", RUN_SECTION + ray_section(address=f"127.0.0.1:{free_port()}"))
    started = time.monotonic()
    result = expyrun(project, head, "c.yml")
    _refused(result, project, "`__launch__.ray.address`: no Ray cluster at 127.0.0.1:")
    assert time.monotonic() - started < 45


def test_ray_not_installed_names_the_extra(project, head, tmp_path):
    write(tmp_path / "hide" / "ray" / "__init__.py", "raise ImportError('No module named ray')\n")
    write(project / "c.yml", RUN_SECTION + ray_section())
    result = expyrun(project, head, "c.yml", PYTHONPATH=str(tmp_path / "hide"))
    _refused(result, project, "Ray is not installed (install the `ray` extra: pip install 'expyrun[ray]')")


def test_wait_false_on_a_cluster_without_job_server_is_one_line_exit_2(project, head):
    write(project / "c.yml", RUN_SECTION + ray_section(wait=False))
    _refused(expyrun(project, head, "c.yml"), project, "has no job server")


def test_wait_false_submits_a_ray_job_that_runs_the_points_and_exits_0_with_its_id(project):
    served = RayHead(num_cpus=2, dashboard=True).start()
    try:
        sweep = "__sweep__:\n  grid:\n    x: [1, 2]\n"
        write(project / "c.yml", RUN_SECTION.replace("demo", "x{x}") + "x: 0\n" + sweep + ray_section(wait=False))
        result = expyrun(project, served, "c.yml")
        assert result.returncode == 0, result.stderr
        job_id = result.stdout.strip()
        assert job_id.startswith("expyrun-") and f"submitted Ray job {job_id} (2 tasks)" in result.stderr
        run_dirs = [project / "outputs" / f"x{x}" / "exp.0" for x in (1, 2)]
        assert all(record(d)["ray"]["submission_id"] == job_id for d in run_dirs)
        wait_until(lambda: all(record(d)["status"] == "completed" for d in run_dirs), "the job to run both points",
                   lambda: [record(d)["status"] for d in run_dirs])  # fmt: skip
        sweep_json = json.loads((project / "outputs" / "c" / "sweep.0" / "sweep.json").read_text())
        wait_until(lambda: json.loads((project / "outputs" / "c" / "sweep.0" / "sweep.json").read_text())["status"]
                   == "completed", "the sweep to end", lambda: sweep_json)  # fmt: skip
    finally:
        served.stop()


def test_address_local_runs_the_launch_on_a_private_ray_that_ends_with_it(project, head):
    write(project / "pkg" / "main.py", "def main(name, config):\n    return config['x'] + 1\n")
    write(project / "c.yml", RUN_SECTION + "x: 1\n" + ray_section(address="local", num_cpus=1))
    result = expyrun(project, head, "c.yml")
    assert result.returncode == 0, result.stderr
    run = record(project / "outputs" / "demo" / "exp.0")
    assert run["status"] == "completed" and run["result"] == 2 and run["launcher"] == "ray"
    assert run["ray"]["node_id"] != head_node_id(head)  # not the fixture's head: a Ray of its own


def head_node_id(head: RayHead) -> str:
    probe = "import ray; ray.init(logging_level='ERROR'); print(ray.get_runtime_context().get_node_id())"
    answer = subprocess.run([sys.executable, "-c", probe], env={**clean_env(), **head.env}, capture_output=True,
                            text=True, timeout=DEADLINE_S, check=True)  # fmt: skip
    return answer.stdout.strip().splitlines()[-1]


KILLS_ITS_WORKER_ONCE = """\
import os, time
from pathlib import Path
def _ray_worker():
    pid = os.getpid()
    while pid > 1:
        if Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"ray::"):
            return pid
        pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    raise RuntimeError("no Ray worker among the trial's ancestors")
def main(name, config):
    marker = Path(os.environ["EXPYRUN_CWD"]) / "worker.pid"
    try:
        fd = os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    except FileExistsError:
        time.sleep(0.1)
        return config["x"] ** 2
    os.write(fd, str(_ray_worker()).encode())
    os.close(fd)
    while True:
        time.sleep(0.05)
"""


def test_a_study_worker_whose_ray_worker_dies_executes_again_and_n_trials_stays_exact(project, head):
    write(project / "pkg" / "main.py", KILLS_ITS_WORKER_ONCE)
    section = ray_section().replace("  wait: true\n", "  wait: true\n  workers: 2\n")
    write(project / "c.yml", RUN_SECTION + STUDY + section)
    process = start(project, head, "c.yml")
    wait_until(lambda: (project / "worker.pid").exists() and (project / "worker.pid").read_text(),
               "a trial to name its Ray worker")  # fmt: skip
    os.kill(int((project / "worker.pid").read_text()), signal.SIGKILL)
    _, stderr = process.communicate(timeout=DEADLINE_S)
    assert process.returncode == 0, stderr
    study_dirs = sorted((project / "outputs" / "demo").glob("exp.*"))
    assert all(record(d)["status"] == "completed" for d in study_dirs), [record(d) for d in study_dirs]
    assert sorted(record(d)["attempt"] for d in study_dirs) == [1, 2]
    import optuna

    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(project / "outputs" / "demo" / "study.journal"))
    )
    trials = optuna.load_study(study_name="demo", storage=storage).get_trials()
    states = [t.state.name for t in trials]
    assert states.count("COMPLETE") == 6 and "RUNNING" not in states, states


def test_on_a_terminal_a_bar_shows_the_tasks_and_ctrl_c_cancels_them(project, head, monkeypatch):
    from conftest import terminal_session

    for name, value in head.env.items():  # (terminal_session passes this environment on)
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("TERM", "xterm-256color")  # a terminal that can draw a live bar (CI runs with TERM=dumb)
    write(project / "pkg" / "main.py", WAITING)
    sweep = "__sweep__:\n  grid:\n    x: [1, 2]\n"
    write(project / "c.yml", RUN_SECTION.replace("demo", "p{x}") + "x: 0\n" + sweep + ray_section())
    session = terminal_session(["c.yml"], project, answers={b"2 running": b"\x03"}, timeout=DEADLINE_S)
    assert b"2 running" in session.seen_at and b"ray" in session.shown, session.shown[-2000:]
    assert session.code == 130, session.shown[-2000:]
    run_dirs = [project / "outputs" / f"p{x}" / "exp.0" for x in (1, 2)]
    assert [record(d)["status"] for d in run_dirs] == ["interrupted"] * 2


def test_a_study_storage_the_ray_tasks_cannot_share_is_one_line_exit_2(project, head):
    study = STUDY.replace("  n_trials: 6\n", "  n_trials: 6\n  storage: 'sqlite:///:memory:'\n")
    write(project / "c.yml", RUN_SECTION + study + ray_section())
    _refused(expyrun(project, head, "c.yml"), project, "an in-memory SQLite database lives in one process")
