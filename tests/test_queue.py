"""The queue (SPEC 13): `expyrun CONFIG --queue`, `expyrun worker`, `expyrun queue list|cancel|clear`,
run as a user would, against a real queue folder, with real workers stopped and killed by pid."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import clean_env, write

ENTRY = """\
import json, os, time
def main(name, config):
    start = time.time()
    gate = config.get("gate")
    if gate:
        while not os.path.exists(gate):
            time.sleep(0.02)
    with open(os.path.join(os.environ["EXPYRUN_CWD"], "calls.jsonl"), "a") as log:
        log.write(json.dumps({"name": name, "i": config.get("i"), "attempt": os.environ.get("EXPYRUN_ATTEMPT"),
                              "gpu": os.environ.get("CUDA_VISIBLE_DEVICES"), "pid": os.getpid(),
                              "start": start, "end": time.time()}) + "\\n")
    return config.get("i")
"""

ONE = """\
__run__:
  __main__: pkg.main:main
  __name__: one
  __output_dir__: outputs
i: 0
gate: ""
"""

MANY = """\
__run__:
  __main__: pkg.main:main
  __name__: "many/i{i}"
  __output_dir__: outputs
i: 0
gate: ""
__sweep__:
  grid:
    i: [%s]
"""


@pytest.fixture
def env(project: Path) -> dict[str, str]:
    write(project / "pkg" / "main.py", ENTRY)
    write(project / "one.yml", ONE)
    environment = clean_env()
    environment["EXPYRUN_QUEUE"] = str(project / "queue")
    environment["EXPYRUN_GPU_LEASES"] = str(project / "leases")
    return environment


def expyrun(project: Path, env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "expyrun", *args], cwd=project, env=env, capture_output=True,
                          text=True, timeout=timeout, check=False)  # fmt: skip


def start(project: Path, env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "expyrun", *args], cwd=project, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip


def wait_for(predicate: Callable[[], object], timeout: float, what: Callable[[], str]) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what()}")
        time.sleep(0.02)


def record(run_dir: Path) -> dict:
    return json.loads((run_dir / "run.json").read_text())


def calls(project: Path) -> list[dict]:
    path = project / "calls.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def queued(project: Path, env: dict[str, str], *args: str) -> list[Path]:
    """Queue a launch; the run folders it printed."""
    result = expyrun(project, env, *args, "--queue")
    assert result.returncode == 0, result.stderr
    return [Path(line) for line in result.stdout.splitlines()]


def entries(project: Path) -> list[str]:
    folder = project / "queue"
    return sorted(name for name in os.listdir(folder) if name.endswith(".json")) if folder.exists() else []


def test_a_queued_run_is_prepared_listed_and_executed_once_by_a_worker(project, env):
    (run_dir,) = queued(project, env, "one.yml")
    assert record(run_dir)["status"] == "queued" and (run_dir / "config.yml").exists()
    assert (run_dir / "pkg" / "main.py").exists()  # a complete record of what will run: its snapshot
    listed = expyrun(project, env, "queue")
    assert listed.returncode == 0 and str(run_dir) in listed.stdout and "queued" in listed.stdout
    runs = expyrun(project, env, "list", "--json")
    assert [json.loads(line)["status"] for line in runs.stdout.splitlines()] == ["queued"], runs.stderr
    worker = expyrun(project, env, "worker", "--once")
    assert worker.returncode == 0, worker.stderr
    done = record(run_dir)
    assert done["status"] == "completed" and done["attempt"] == 1 and done["result"] == 0
    assert [call["attempt"] for call in calls(project)] == ["1"] and entries(project) == []
    assert expyrun(project, env, "worker", "--once").returncode == 0 and len(calls(project)) == 1


def test_priority_first_then_first_in_first_out(project, env):
    first = queued(project, env, "one.yml", "--i", "1")
    urgent = queued(project, env, "one.yml", "--i", "2", "--priority", "5")
    second = queued(project, env, "one.yml", "--i", "3")
    low = queued(project, env, "one.yml", "--i", "4", "--priority=-1")
    assert all(len(folders) == 1 for folders in (first, urgent, second, low))
    worker = expyrun(project, env, "worker", "--once")
    assert worker.returncode == 0, worker.stderr
    assert [call["i"] for call in calls(project)] == [2, 1, 3, 4]


def test_a_worker_once_exits_1_naming_the_runs_that_failed_after_executing_every_run(project, env):
    write(project / "pkg" / "bad.py", "def main(name, config):\n    raise ValueError('broken on purpose')\n")
    (good,) = queued(project, env, "one.yml", "--i", "1")
    (bad,) = queued(project, env, "one.yml", "--i", "2", "--__run__.__main__", "pkg.bad:main")
    (after,) = queued(project, env, "one.yml", "--i", "3")
    worker = expyrun(project, env, "worker", "--once")
    assert worker.returncode == 1, worker.stderr
    assert [record(folder)["status"] for folder in (good, bad, after)] == ["completed", "failed", "completed"]
    assert "1 run executed by this worker did not complete" in worker.stderr and str(bad) in worker.stderr
    assert str(good) not in worker.stderr.split("did not complete")[-1] and entries(project) == []
    assert expyrun(project, env, "worker", "--once").returncode == 0  # nothing executed: nothing failed


def test_two_workers_drain_forty_queued_runs_each_executed_exactly_once(project, env):
    write(project / "many.yml", MANY % ", ".join(str(i) for i in range(40)))
    folders = queued(project, env, "many.yml")
    assert len(folders) == 40 and len(entries(project)) == 40
    workers = [start(project, env, "worker", "--once") for _ in range(2)]
    outputs = [worker.communicate(timeout=240) for worker in workers]
    assert [worker.returncode for worker in workers] == [0, 0], outputs
    executed = calls(project)
    assert sorted(call["i"] for call in executed) == list(range(40))
    assert all(record(folder)["status"] == "completed" and record(folder)["attempt"] == 1 for folder in folders)
    assert all("executing" in err for _, err in outputs), "one worker executed nothing"
    assert entries(project) == []
    sweep = json.loads(next((project / "outputs" / "many").glob("sweep.*/sweep.json")).read_text())
    assert sweep["counts"] == {"completed": 40}


def gated(project: Path, env: dict[str, str]) -> Path:
    (run_dir,) = queued(project, env, "one.yml", "--gate", str(project / "gate"))
    return run_dir


def wait_running(run_dir: Path, worker: subprocess.Popen[str]) -> None:
    wait_for(lambda: record(run_dir)["status"] == "running", 60,
             lambda: f"not running: {record(run_dir)['status']} (worker exit {worker.poll()})")  # fmt: skip


def test_a_sigkilled_workers_run_completes_under_another_worker_as_attempt_two(project, env):
    run_dir = gated(project, env)
    first = start(project, env, "worker")
    wait_running(run_dir, first)
    os.kill(first.pid, signal.SIGKILL)
    first.communicate(timeout=30)
    (project / "gate").touch()
    second = expyrun(project, env, "worker", "--once")
    assert second.returncode == 0, second.stderr
    done = record(run_dir)
    assert done["status"] == "completed" and done["attempt"] == 2 and done["run_dir"] == str(run_dir)
    assert [call["attempt"] for call in calls(project)] == ["2"]  # the first attempt never ended
    assert "attempt 2 of 3" in (run_dir / "outputs.log").read_text()
    assert entries(project) == []


def test_ctrl_c_of_a_worker_returns_its_run_to_the_queue(project, env):
    run_dir = gated(project, env)
    worker = start(project, env, "worker")
    wait_running(run_dir, worker)
    worker.send_signal(signal.SIGINT)
    _, err = worker.communicate(timeout=60)
    assert worker.returncode == 130, err
    assert record(run_dir)["status"] == "queued" and len(entries(project)) == 1
    assert "back in the queue" in (run_dir / "outputs.log").read_text()
    listed = expyrun(project, env, "queue")
    assert "attempt 2" in listed.stdout, listed.stdout
    (project / "gate").touch()
    again = expyrun(project, env, "worker", "--once")
    assert again.returncode == 0, again.stderr
    assert record(run_dir)["status"] == "completed" and record(run_dir)["attempt"] == 2


def test_cancel_and_clear_remove_queued_runs_recorded_interrupted(project, env):
    folders = [queued(project, env, "one.yml", "--i", str(i))[0] for i in range(3)]
    cancelled = expyrun(project, env, "queue", "cancel", str(folders[1]))
    assert cancelled.returncode == 0, cancelled.stderr
    gone = record(folders[1])
    assert gone["status"] == "interrupted" and gone["exception"]["message"] == "cancelled from the queue"
    listed = expyrun(project, env, "queue").stdout
    assert str(folders[0]) in listed and str(folders[1]) not in listed and str(folders[2]) in listed
    unknown = expyrun(project, env, "queue", "cancel", str(folders[1]))
    assert unknown.returncode == 2 and "is not in the queue" in unknown.stderr
    cleared = expyrun(project, env, "queue", "clear")
    assert cleared.returncode == 0, cleared.stderr
    assert [record(folder)["status"] for folder in folders] == ["interrupted"] * 3 and entries(project) == []
    assert expyrun(project, env, "worker", "--once").returncode == 0 and calls(project) == []


def test_bad_queue_input_is_one_line_exit_2_and_changes_nothing(project, env):
    typo = expyrun(project, env, "queue", "lst")
    assert typo.returncode == 2 and "did you mean `expyrun queue list`" in typo.stderr
    assert len(typo.stderr.strip().splitlines()) == 1
    debug = expyrun(project, env, "one.yml", "--queue", "--debug")
    assert debug.returncode == 2 and "--debug" in debug.stderr
    write(project / "not-a-folder", "")
    blocked = dict(env, EXPYRUN_QUEUE=str(project / "not-a-folder" / "queue"))
    unwritable = expyrun(project, blocked, "one.yml", "--queue")
    assert unwritable.returncode == 2 and "queue folder" in unwritable.stderr
    priority = expyrun(project, env, "one.yml", "--priority", "3")
    assert priority.returncode == 2 and "--priority without --queue" in priority.stderr
    assert not (project / "outputs").exists() and entries(project) == []


def test_priority_without_queue_overrides_a_config_key_named_priority_else_is_refused(project, env):
    write(project / "keyed.yml", ONE + "priority: 1\n")
    run = expyrun(project, env, "keyed.yml", "--priority", "5")
    assert run.returncode == 0, run.stderr
    (run_dir,) = (project / "outputs" / "one").glob("exp.*")
    assert record(run_dir)["status"] == "completed" and "priority: 5" in (run_dir / "config.yml").read_text()
    assert entries(project) == []  # a plain launch: nothing queued
    for args in (("--priority", "5"), ("--priority=5",)):
        refused = expyrun(project, env, "one.yml", *args)
        assert refused.returncode == 2 and len(refused.stderr.strip().splitlines()) == 1, refused.stderr
        assert "--priority without --queue, and one.yml has no key `priority`" in refused.stderr
        assert "expyrun CONFIG --queue --priority N" in refused.stderr and "Traceback" not in refused.stderr
    assert len(list((project / "outputs" / "one").glob("exp.*"))) == 1
    (queued_dir,) = queued(project, env, "keyed.yml", "--priority", "7")
    assert "priority: 1" in (queued_dir / "config.yml").read_text()  # with --queue, the queue's priority
    assert json.loads((project / "queue" / entries(project)[0]).read_text())["priority"] == 7


def test_a_worker_gives_each_run_a_leased_gpu(project, env):
    write(project / "many.yml", MANY % "0, 1, 2, 3")
    queued(project, env, "many.yml")
    worker = expyrun(project, env, "worker", "--once", "--jobs", "2", "--gpus", "0,1")
    assert worker.returncode == 0, worker.stderr
    executed = calls(project)
    assert len(executed) == 4 and {call["gpu"] for call in executed} <= {"0", "1"}
    for i, a in enumerate(executed):
        for b in executed[i + 1 :]:
            if a["start"] < b["end"] and b["start"] < a["end"]:
                assert a["gpu"] != b["gpu"], (a, b)
    with contextlib.suppress(FileNotFoundError):
        assert sorted(os.listdir(project / "leases")) == ["gpu-0.lock", "gpu-1.lock"]


STUDY = """\
__run__:
  __main__: pkg.main:main
  __name__: study
  __output_dir__: outputs
i: 0
gate: ""
x: 0.0
__launch__: {workers: 2}
__optuna__:
  n_trials: 4
  sampler: {name: RandomSampler, seed: 0}
  search_space:
    x: {type: float, low: -4, high: 4}
"""


def test_a_queued_study_queues_its_workers_which_share_the_study(project, env):
    write(project / "study.yml", STUDY)
    folders = queued(project, env, "study.yml")
    assert len(folders) == 2 and all(record(folder)["study"] for folder in folders)
    worker = expyrun(project, env, "worker", "--once", "--jobs", "2")
    assert worker.returncode == 0, worker.stderr
    assert [record(folder)["status"] for folder in folders] == ["completed", "completed"]
    assert len(calls(project)) == 4  # n_trials is the study's total, shared by its two workers


def test_a_run_whose_worker_is_killed_three_times_ends_and_leaves_the_queue(project, env):
    run_dir = gated(project, env)
    for attempt in (1, 2, 3):
        worker = start(project, env, "worker")

        def running(attempt: int = attempt) -> bool:
            return record(run_dir)["status"] == "running" and record(run_dir)["attempt"] == attempt

        wait_for(running, 60, lambda attempt=attempt: f"attempt {attempt} not running: {record(run_dir)}")
        os.kill(worker.pid, signal.SIGKILL)
        worker.communicate(timeout=30)
    wait_for(lambda: record(run_dir)["status"] == "interrupted", 60, lambda: f"not ended: {record(run_dir)}")
    (project / "gate").touch()
    last = expyrun(project, env, "worker", "--once")
    assert last.returncode == 0, last.stderr
    assert record(run_dir)["attempt"] == 3 and calls(project) == [] and entries(project) == []


def test_a_foreign_file_in_the_queue_folder_runs_nothing_and_stops_no_worker(project, env):
    (run_dir,) = queued(project, env, "one.yml")
    write(project / "queue" / "zzz.json", '["not", "an entry"]')
    listed = expyrun(project, env, "queue")
    assert listed.returncode == 0 and len(listed.stdout.splitlines()) == 2  # the header and the run
    worker = expyrun(project, env, "worker", "--once", timeout=60)
    assert worker.returncode == 0, worker.stderr
    assert record(run_dir)["status"] == "completed" and (project / "queue" / "zzz.json").exists()


def test_a_queued_config_edited_while_it_waits_is_not_executed_and_says_why(project, env):
    (run_dir,) = queued(project, env, "one.yml")
    config = run_dir / "config.yml"
    config.write_text(config.read_text().replace("i: 0", "i: 7"))
    worker = expyrun(project, env, "worker", "--once")
    assert worker.returncode == 1, worker.stderr  # the run it executed failed
    failed = record(run_dir)
    assert failed["status"] == "failed" and "changed after the run was queued" in failed["exception"]["message"]
    assert calls(project) == [] and entries(project) == []


def test_a_third_ctrl_c_of_a_worker_kills_a_run_that_ignores_stops_at_once(project, env):
    write(project / "pkg" / "stubborn.py", """\
import signal, time
def main(name, config):
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    print("ignoring stops", flush=True)
    time.sleep(60)
""")  # fmt: skip
    write(project / "stubborn.yml", ONE.replace("pkg.main:main", "pkg.stubborn:main"))
    (run_dir,) = queued(project, env, "stubborn.yml")
    worker = start(project, env, "worker")
    wait_for(lambda: "ignoring stops" in (run_dir / "outputs.log").read_text() if (run_dir / "outputs.log").exists()
             else False, 60, lambda: f"the run did not start: {record(run_dir)['status']}")  # fmt: skip
    started = time.monotonic()
    for _ in range(3):
        worker.send_signal(signal.SIGINT)
        time.sleep(0.2)  # three presses, not one: a signal sent while the same one is pending merges with it
    _, err = worker.communicate(timeout=30)
    assert worker.returncode == 130, err
    assert time.monotonic() - started < 8, "the run was not killed at the third stop (grace is 10 s)"
    assert record(run_dir)["status"] == "queued" and len(entries(project)) == 1


TICKER = """\
import os, subprocess, sys, time
TICK = "import sys, time\\nfor _ in range(50):\\n    open(sys.argv[1], 'a').write('.')\\n    time.sleep(0.1)\\n"
def main(name, config):
    here = os.environ["EXPYRUN_CWD"]
    helper = None
    if config["i"] == 0:  # a process of the run in a process group of its own (same session)
        helper = subprocess.Popen([sys.executable, "-c", TICK, os.path.join(here, "helper")], process_group=0)
    start = time.monotonic()
    for _ in range(50):
        with open(os.path.join(here, f"ticks{config['i']}"), "a") as ticks:
            ticks.write(".")
        time.sleep(0.1)
    if helper is not None:
        helper.wait()
    return time.monotonic() - start
"""


def stopped(pid: int) -> bool:
    """Whether the process is stopped (state T in /proc), as a shell sees a job after Ctrl-Z."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat.rpartition(")")[2].split()[0] == "T"


def test_ctrl_z_of_a_worker_with_jobs_2_stops_both_runs_and_their_helpers_until_fg(project, env):
    write(project / "pkg" / "ticker.py", TICKER)
    write(project / "ticker.yml", MANY.replace("pkg.main:main", "pkg.ticker:main") % "0, 1")
    run_dirs = queued(project, env, "ticker.yml")
    assert len(run_dirs) == 2
    ticks = [project / "ticks0", project / "ticks1", project / "helper"]
    worker = start(project, env, "worker", "--once", "--jobs", "2")
    wait_for(lambda: all(path.exists() and path.stat().st_size > 0 for path in ticks), 60,
             lambda: f"not all ticking: {[path.name for path in ticks if path.exists()]}")  # fmt: skip
    worker.send_signal(signal.SIGTSTP)  # what the terminal sends the shell's foreground job on Ctrl-Z
    wait_for(lambda: stopped(worker.pid), 10, lambda: "the worker did not stop")
    sizes = [path.stat().st_size for path in ticks]
    time.sleep(1.5)  # (a stop is seen by nothing happening for a while)
    assert [path.stat().st_size for path in ticks] == sizes, "a run or its helper went on while the worker was stopped"
    assert [record(run_dir)["status"] for run_dir in run_dirs] == ["running", "running"]
    worker.send_signal(signal.SIGCONT)  # `fg`
    _, err = worker.communicate(timeout=60)
    assert worker.returncode == 0, err
    assert [path.stat().st_size for path in ticks] == [50, 50, 50]  # all resumed to their end
    assert all(record(run_dir)["status"] == "completed" for run_dir in run_dirs)
    results = [record(run_dir)["result"] for run_dir in run_dirs]  # 5 s of ticks, 1.5 s stopped (a sleep overlaps it)
    assert all(result >= 5.0 + 1.3 for result in results), results
