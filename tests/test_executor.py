"""The behaviours every executor of run folders must have: logs complete and in order, exit codes,
signals, process-group cleanup, records. Each test runs the real `expyrun` in a subprocess.

`MODES` lists the ways a run folder is executed, each as the config text that selects it: `single`
(a forked run child), `sweep` (a one-point sweep's local pool), `reused` (the same on reused
workers), `trial` (a one-trial Optuna study, `isolation: process`: a trial worker), `inline` (the
same, `isolation: inline`: in the study's own process), `slurm` (one job on the session's one-node
cluster, `tests/slurm_cluster.py`), `queue` (the run queued with `--queue`, then executed by
`expyrun worker --once`: `command`) and `ray` (one task on the module's one-node Ray head,
`tests/ray_cluster.py`); the Slurm and Ray launchers wait for their run (`wait: true`).

A new executor joins by adding a mode and must pass the same tests, with the same assertions; where
a mode keeps things elsewhere (a trial's folder is under its study's, its objective must be a
number, a trial stopped with its study is failed and queued again, its study prints lines of its
own), the small helpers `run_dirs`, `record`, `returned`, `ended`, `told_the_failure`,
`shown_by_the_run` and `command` say where, never a per-mode copy of a test. `CANNOT` says which
behaviour a mode cannot have, and why; a reason starting with "bug:" is one the mode should have
(SPEC) and does not.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import RUN_SECTION, clean_env, terminal_session, write
from test_ray import head  # noqa: F401 (fixture: the module's one-node Ray head)
from test_slurm import cluster, slurm  # noqa: F401 (fixtures: the one-node Slurm cluster of the session)

STUDY = """\
swept: 0
__optuna__:
  n_trials: 1
  isolation: ISOLATION
  sampler: {name: RandomSampler, seed: 0}
  search_space:
    swept: {type: int, low: 1, high: 1}
"""

MODES = {
    "single": "",
    "sweep": "swept: 0\n__sweep__:\n  grid:\n    swept: [1]\n",
    "reused": "swept: 0\n__launch__: {reuse_workers: true}\n__sweep__:\n  grid:\n    swept: [1]\n",
    "trial": STUDY.replace("ISOLATION", "process"),
    "inline": STUDY.replace("ISOLATION", "inline"),
    "slurm": "__launch__: {launcher: slurm, wait: true}\n",
    "queue": "",  # the single run's config, queued by `configure` (`--queue`): `command` is then a worker
    "ray": "__launch__: {launcher: ray, wait: true}\n",
}

# The modes where the run is an Optuna trial: the entry point is the objective and must return a number,
# so `OBJECTIVE` calls the behaviour's `main`, keeps what it returned in `result.json` next to the
# trial's `run.json`, and returns 0.
TRIALS = {"trial", "inline"}
OBJECTIVE = """\
import json
import pkg.main


def main(name, config):
    result = pkg.main.main(name, config)
    with open("result.json", "w") as f:
        json.dump(result, f)
    return 0.0
"""

# What a mode cannot do, and why (skipped there; every other behaviour holds in every mode).
CANNOT = {
    ("reused", "test_a_fork_in_the_entry_point_reports_nothing"):
        "a helper a point forks inherits the worker's own stdout/stderr (expyrun's): a pipe reading them waits for it",
    ("reused", "test_processes_left_in_the_group_are_stopped_those_that_left_it_survive"):
        "a reused worker is no process group of its own per point: what a point leaves behind lives on",
    ("slurm", "test_each_stream_keeps_its_order_when_they_go_apart"):
        "a job's stdout and stderr are one file (slurm-JOB.out), which the waiting launcher shows on its stdout",
    ("slurm", "test_on_a_terminal_input_works_and_child_output_is_live"):
        "a job has no terminal: its stdin on the node is not the launching terminal (input() reads end of file)",
    ("slurm", "test_ctrl_z_stops_the_run_and_fg_resumes_it"):
        "a job has no terminal: input() reads end of file, and Ctrl-Z would stop the waiting launcher, not the job",
    ("queue", "test_sigterm_ignored_by_the_run_is_followed_by_sigkill"):
        "a stopped worker puts its run back in the queue (status queued, SPEC 13) for the next worker to execute",
    ("queue", "test_sighup_is_handled_like_sigterm"):
        "a stopped worker puts its run back in the queue (status queued, SPEC 13) for the next worker to execute",
    ("ray", "test_order_of_both_streams_is_kept_when_they_share_a_destination"):
        "a Ray worker's stdout and stderr are two files: the run's streams go apart (outputs.log interleaves them as "
        "they arrived), and Ray's log monitor shows them on the driver in its own order",
    ("ray", "test_each_stream_keeps_its_order_when_they_go_apart"):
        "Ray's log monitor shows a task's stdout and stderr both on the driver's stdout",
    ("ray", "test_on_a_terminal_input_works_and_child_output_is_live"):
        "a Ray task has no terminal: its stdin is not the launching terminal (input() reads end of file)",
    ("ray", "test_ctrl_z_stops_the_run_and_fg_resumes_it"):
        "a Ray task has no terminal: input() reads end of file, and Ctrl-Z would stop the driver, not the task",
}  # fmt: skip


# How long a run that ignores SIGTERM has before SIGKILL: 10 s (SPEC 4), but a study's trial workers get
# 8 s (tune/driver.py `STOP_GRACE_S`), so that the study records them before the launcher's 10 s are up.
# (An inline trial that ignores SIGTERM makes its study ignore it: the launcher's 10 s apply.) A Slurm
# job cancelled by the waiting launcher is killed `KillWait` after Slurm's SIGTERM (5 s on the test
# cluster, slurm_cluster.py): its node ends the run's grace 2 s before (slurm_node.KILL_WAIT_MARGIN_S).
GRACE_S = {"trial": 8.0, "slurm": 3.0}


@pytest.fixture(params=sorted(MODES))
def mode(request) -> str:
    why = CANNOT.get((request.param, request.node.originalname))
    if why is not None:
        pytest.skip(f"{request.param}: {why}")
    if request.param == "slurm":
        request.getfixturevalue("slurm")  # the cluster, named by SLURM_CONF for expyrun; no job outlives the test
    if request.param == "ray":
        monkeypatch = request.getfixturevalue("monkeypatch")
        for name, value in request.getfixturevalue("head").env.items():  # RAY_ADDRESS, its HOME: loopback only
            monkeypatch.setenv(name, value)
    return request.param


def configure(project: Path, body: str, mode: str) -> None:
    write(project / "pkg" / "main.py", body)
    run_section = RUN_SECTION
    if mode in TRIALS:
        write(project / "pkg" / "objective.py", OBJECTIVE)
        run_section = RUN_SECTION.replace("pkg.main:main", "pkg.objective:main")
    write(project / "c.yml", run_section + MODES[mode])
    if mode == "queue":
        queued = subprocess.run([sys.executable, "-m", "expyrun", "c.yml", "--queue"], cwd=project, env=clean_env(),
                                capture_output=True, text=True, timeout=60)  # fmt: skip
        assert queued.returncode == 0, queued.stderr


def command(project: Path) -> list[str]:
    """What the user runs to execute the configured run: `expyrun c.yml`, or, once it is queued (the
    queue mode), `expyrun worker --once`, which executes the queue's runs and exits (SPEC 13)."""
    records = [json.loads((run_dir / "run.json").read_text()) for run_dir in run_dirs(project)]
    return ["worker", "--once"] if any(run["status"] == "queued" for run in records) else ["c.yml"]


def run_dirs(project: Path) -> list[Path]:
    """The folders of the runs the behaviour ran: a trial's is under its study's folder."""
    runs = sorted((project / "outputs" / "demo").glob("exp.*"))
    trials = sorted(folder for run in runs for folder in run.glob("trials/trial.*"))
    return trials or runs


def record(project: Path) -> dict:
    (run_dir,) = run_dirs(project)
    return json.loads((run_dir / "run.json").read_text())


def returned(project: Path) -> Any:
    """What the behaviour's `main` returned: `run.json`'s `result`, or a trial's `result.json` (`OBJECTIVE`)."""
    (run_dir,) = run_dirs(project)
    kept = run_dir / "result.json"
    return json.loads(kept.read_text()) if kept.exists() else record(project)["result"]


def ended(project: Path) -> tuple[str, int | None]:
    """How the launched run ended and its exit code, as its `run.json` says. In the trial modes the
    launched run is the study: a trial that ended with it is `failed` saying so (SPEC 6: it is queued
    again) — stopped with the study, or, inline, in the study's process when that ended (`Died`) —
    and the study's own record says how the study ended. A study that stopped (rather than died)
    first told its storage: `study.json` counts no trial still RUNNING."""
    run = record(project)
    error = run["exception"] or {}
    stopped = error.get("message", "").startswith("the study was stopped")
    if "trial" in run and run["status"] == "failed" and (stopped or error.get("type") == "Died"):
        (run_dir,) = run_dirs(project)
        study = run_dir.parents[1]
        if stopped and "RUNNING" in json.loads((study / "study.json").read_text())["counts"]:
            return "stopped, but RUNNING in the study's storage", None
        run = json.loads((study / "run.json").read_text())
    return run["status"], run["exit_code"]


def told_the_failure(launched: subprocess.CompletedProcess[str], run: dict[str, Any]) -> bool:
    """The launch named the failure in one line: `failed (Type: message)` on stderr for a run or a
    sweep point; for a trial, its study's line `trial N: FAIL message`, on stdout with the others
    (or the study's own failure, when an inline trial's death ended the study)."""
    error = run["exception"]
    if "trial" not in run:
        return f"failed ({error['type']}: " in launched.stderr
    if error["type"] == "Died":  # an inline trial whose death ended its study: the study's line says how
        return "run failed (" in launched.stderr
    return f"trial {run['trial']['number']}: FAIL {error['message']}" in launched.stdout


def launch(project: Path, *args: str, timeout: float = 60, **kwargs) -> subprocess.CompletedProcess[str]:
    kwargs.setdefault("capture_output", "stdout" not in kwargs)
    return subprocess.run(
        [sys.executable, "-m", "expyrun", *command(project), *args], cwd=project, env=clean_env(), text=True,
        timeout=timeout, **kwargs,
    )  # fmt: skip


def start(project: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "expyrun", *command(project)], cwd=project, env=clean_env(), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip


def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def logged(project: Path, text: str) -> bool:
    logs = [run_dir / "outputs.log" for run_dir in run_dirs(project)]
    return any(log.exists() and text in log.read_text() for log in logs)


def shown_by_the_run(text: str, mode: str) -> list[str]:
    """The lines expyrun showed that the run wrote: not expyrun's own (`expyrun: ...`) nor, in the trial
    modes, its study's (Optuna's log `[I ...]`, the line of each trial, the best trial's)."""
    own = ("expyrun:", "[I ", "trial ", "best trial ") if mode in TRIALS else ("expyrun:",)
    return [line for line in text.splitlines() if not line.startswith(own)]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/stat")
    return not (status.exists() and status.read_text().split(")")[-1].split()[0] == "Z")


def test_a_fork_in_the_entry_point_reports_nothing(project, mode):
    configure(
        project,
        """\
        import os, sys, time
        def main(name, config):
            if os.fork() == 0:
                sys.exit(0)          # the forked copy ends the way a helper would
            if os.fork() == 0:
                time.sleep(30)       # a helper that lives on, holding what it inherited
                os._exit(0)
            return 7
        """,
        mode,
    )
    started = time.monotonic()
    result = launch(project)
    assert result.returncode == 0, result.stderr
    assert time.monotonic() - started < 15
    assert record(project)["status"] == "completed" and returned(project) == 7


def test_processes_left_in_the_group_are_stopped_those_that_left_it_survive(project, mode):
    configure(
        project,
        """\
        import subprocess, sys
        def main(name, config):
            stays = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
            leaves = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"],
                                      start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            return [stays.pid, leaves.pid]
        """,
        mode,
    )
    started = time.monotonic()
    result = launch(project)
    assert result.returncode == 0, result.stderr
    assert time.monotonic() - started < 15
    stays, leaves = returned(project)
    wait_for(lambda: not alive(stays), 10, "the process left in the run's group to be stopped")
    assert alive(leaves)
    os.kill(leaves, signal.SIGKILL)


def test_a_daemon_holding_stdout_does_not_keep_expyrun_waiting(project, mode):
    configure(
        project,
        """\
        import subprocess, sys
        def main(name, config):
            daemon = subprocess.Popen(
                [sys.executable, "-c", "import time; print('daemon up', flush=True); time.sleep(60)"],
                start_new_session=True,
            )
            return daemon.pid
        """,
        mode,
    )
    started = time.monotonic()
    process = start(project)
    assert process.wait(timeout=20) == 0
    assert time.monotonic() - started < 20
    assert record(project)["status"] == "completed"
    os.kill(returned(project), signal.SIGKILL)


def test_sigterm_ignored_by_the_run_is_followed_by_sigkill(project, mode):
    configure(
        project,
        """\
        import signal, time
        def main(name, config):
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            print("ready", flush=True)
            time.sleep(120)
        """,
        mode,
    )
    process = start(project)
    wait_for(lambda: logged(project, "ready"), 30, "ready")
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 143
    assert GRACE_S.get(mode, 10.0) - 1 <= time.monotonic() - started < 25
    assert ended(project) == ("interrupted", 143)


def test_sighup_is_handled_like_sigterm(project, mode):
    configure(
        project, "import time\ndef main(name, config):\n    print('ready', flush=True)\n    time.sleep(60)\n", mode
    )
    process = start(project)
    wait_for(lambda: logged(project, "ready"), 30, "ready")
    process.send_signal(signal.SIGHUP)
    assert process.wait(timeout=30) == 129
    assert ended(project) == ("interrupted", 129)


@pytest.mark.parametrize(
    ("body", "exception", "logged"),
    [
        ("import os\ndef main(name, config):\n    os._exit(5)\n", "exited with (code|status) 5", None),
        (
            "import os\ndef main(name, config):\n    os.close(2)\n    raise ValueError('lost?')\n",
            r"lost\?",
            None,
        ),
        ("import sys\ndef main(name, config):\n    sys.exit('fatal: no data')\n", "fatal: no data", "fatal: no data"),
    ],
    ids=["os-exit", "closed-stderr", "sys-exit-message"],
)
def test_every_way_of_failing_is_recorded(project, mode, body, exception, logged):
    configure(project, body, mode)
    result = launch(project)
    assert result.returncode == 1
    run = record(project)
    assert run["status"] == "failed" and re.search(exception, run["exception"]["message"])
    assert told_the_failure(result, run) and "error: )" not in result.stderr
    if logged:
        assert logged in (run_dirs(project)[0] / "outputs.log").read_text()


def test_order_of_both_streams_is_kept_when_they_share_a_destination(project, mode, tmp_path):
    configure(
        project,
        """\
        import logging, os
        def main(name, config):
            for i in range(10000):
                os.write(1, b"out %d\\n" % i)
                os.write(2, b"err %d\\n" % i)
            for i in range(2000):
                print("print", i)
                logging.getLogger("x").warning("logging %d", i)
        """,
        mode,
    )
    with open(tmp_path / "both.txt", "w") as both:
        result = launch(project, stdout=both, stderr=subprocess.STDOUT)
    assert result.returncode == 0
    expected = [f"{stream} {i}" for i in range(10000) for stream in ("out", "err")]
    expected += [line for i in range(2000) for line in (f"print {i}", f"logging {i}")]
    log = (run_dirs(project)[0] / "outputs.log").read_text().splitlines()
    assert log == expected
    assert shown_by_the_run((tmp_path / "both.txt").read_text(), mode) == expected


def test_each_stream_keeps_its_order_when_they_go_apart(project, mode):
    configure(
        project,
        "import os\ndef main(name, config):\n    for i in range(5000):\n"
        "        os.write(1, b'out %d\\n' % i)\n        os.write(2, b'err %d\\n' % i)\n",
        mode,
    )
    result = launch(project)
    assert result.returncode == 0
    assert shown_by_the_run(result.stdout, mode) == [f"out {i}" for i in range(5000)]
    assert [line for line in result.stderr.splitlines() if line.startswith("err")] == [f"err {i}" for i in range(5000)]


def test_on_a_terminal_input_works_and_child_output_is_live(project, mode):
    configure(
        project,
        """\
        import subprocess, sys
        def main(name, config):
            answer = input("name? ")
            subprocess.run([sys.executable, "-c",
                            "import time; print('child line'); open('printed', 'w').close(); time.sleep(3)"])
            return answer
        """,
        mode,
    )
    session = terminal_session(command(project), project, answers={b"name? ": b"ada\n", b"child line": b""})
    assert session.code == 0, session.shown.decode(errors="replace")
    assert returned(project) == "ada"
    assert session.ended_at - session.seen_at[b"child line"] >= 2.0  # shown when printed, not at the child's exit


def test_ctrl_z_stops_the_run_and_fg_resumes_it(project, mode):
    configure(
        project,
        """\
        import time
        def main(name, config):
            input("go? ")
            start = time.monotonic()
            for i in range(30):
                print("tick", i, flush=True)
                time.sleep(0.1)
            return round(time.monotonic() - start, 1)
        """,
        mode,
    )
    session = terminal_session(command(project), project, answers={b"go? ": b"\n", b"tick 5": b"\x1a"}, on_stop=2.0)
    assert session.code == 0 and session.stops == 1, session.shown.decode(errors="replace")
    assert record(project)["status"] == "completed"
    assert returned(project) >= 4.5  # stopped about 2 s, then resumed to the end
