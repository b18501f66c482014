"""`launcher: slurm` against a real one-node Slurm cluster (tests/slurm_cluster.py) started once for
the session: single runs, sweeps as job arrays, study workers as array tasks, preemption and
requeue, `list` and the errors that leave nothing behind.

Without the Slurm binaries (or not as root) every test here is skipped with the reason; `bash
.ci/install` installs them. The jobs are real: each test waits for them with a deadline and says
what it saw when one passes.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import RUN_SECTION, clean_env, run_expyrun, write
from slurm_cluster import SlurmCluster, unavailable

DEADLINE_S = 120.0  # a job on an idle one-node cluster starts within seconds; this is for busy CI machines


@pytest.fixture(scope="session")
def cluster() -> Iterator[SlurmCluster]:
    reason = unavailable()
    if reason is not None:
        pytest.skip(reason)
    started = SlurmCluster().start()
    try:
        yield started
    finally:
        started.stop()
        shutil.rmtree(started.folder, ignore_errors=True)


@pytest.fixture
def slurm(cluster: SlurmCluster, monkeypatch: pytest.MonkeyPatch) -> Iterator[SlurmCluster]:
    """The cluster, named by `SLURM_CONF` for expyrun and every Slurm command; no job outlives a test."""
    monkeypatch.setenv("SLURM_CONF", str(cluster.conf))
    yield cluster
    cluster.command("scancel", "--user=root", check=False)


def expyrun(project: Path, *args: str, timeout: float = DEADLINE_S, **env: str) -> subprocess.CompletedProcess[str]:
    return run_expyrun(list(args), project, env or None, timeout=timeout)


def record(run_dir: Path) -> dict:
    return json.loads((run_dir / "run.json").read_text())


def wait_until(predicate: Callable[[], object], what: str, seen: Callable[[], object] = lambda: None) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {DEADLINE_S:g} s waiting for {what}; saw {seen()!r}")


def slurm_section(**settings: object) -> str:
    return "__launch__:\n  launcher: slurm\n" + "".join(f"  {k}: {json.dumps(v)}\n" for k, v in settings.items())


def test_single_run_waits_and_records_job_node_and_host(project, slurm):
    write(project / "pkg" / "main.py", """\
        import os, socket
        def main(name, config):
            print("on the node", os.environ["SLURM_JOB_ID"], "attempt", os.environ["EXPYRUN_ATTEMPT"])
            return {"host": socket.gethostname(), "cwd": os.getcwd()}
        """)  # fmt: skip
    write(project / "c.yml", RUN_SECTION + "x: 1\n" + slurm_section(wait=True))
    result = expyrun(project, "c.yml")
    assert result.returncode == 0, result.stderr
    run_dir = project / "outputs" / "demo" / "exp.0"
    run = record(run_dir)
    job = run["slurm"]["job_id"]
    assert run["status"] == "completed" and run["launcher"] == "slurm" and run["attempt"] == 1
    assert isinstance(job, int) and run["slurm"]["node"] == slurm.node and run["slurm"]["array_job_id"] is None
    assert run["host"] == run["result"]["host"] and run["result"]["cwd"] == str(run_dir)
    assert f"submitted Slurm job {job}" in result.stderr and f"completed: {run_dir}" in result.stderr
    assert f"on the node {job} attempt 1" in result.stdout  # the run's output, shown as a local run shows it
    assert (run_dir / "frozen_requirements.txt").is_file() and (run_dir / "pkg" / "main.py").is_file()
    assert "--signal=B:USR2@120" in (run_dir / "slurm.sh").read_text()
    assert (run_dir / f"slurm-{job}.out").is_file()


def test_a_failing_run_exits_1_after_waiting(project, slurm):
    write(project / "pkg" / "main.py", "def main(name, config):\n    raise ValueError('bad data')\n")
    write(project / "c.yml", RUN_SECTION + slurm_section(wait=True))
    result = expyrun(project, "c.yml")
    assert result.returncode == 1, result.stderr
    run = record(project / "outputs" / "demo" / "exp.0")
    assert run["status"] == "failed" and run["exception"] == {"type": "ValueError", "message": "bad data"}
    assert "ValueError: bad data" in result.stderr


SWEEP_ENTRY = """\
import os, time
from pathlib import Path
def main(name, config):
    go = Path(os.environ["EXPYRUN_CWD"]) / "go"
    while not go.exists():
        time.sleep(0.05)
    return config["x"] * 10
"""


def test_sweep_is_one_array_submitted_without_waiting(project, slurm):
    write(project / "pkg" / "main.py", SWEEP_ENTRY)
    sweep = "__sweep__:\n  grid:\n    x: [1, 2, 3, 4]\n"
    write(project / "c.yml", RUN_SECTION.replace("demo", "grid/x{x}") + "x: 0\n" + sweep + slurm_section())
    started = time.monotonic()
    result = expyrun(project, "c.yml")
    assert result.returncode == 0, result.stderr
    assert time.monotonic() - started < 30  # it does not wait for the runs (which wait for `go`)
    run_dirs = [project / "outputs" / "grid" / f"x{x}" / "exp.0" for x in (1, 2, 3, 4)]
    runs = [record(run_dir) for run_dir in run_dirs]
    array = runs[0]["slurm"]["array_job_id"]
    assert [r["slurm"]["array_task_id"] for r in runs] == [0, 1, 2, 3]
    assert all(r["slurm"]["array_job_id"] == array and r["status"] in ("queued", "running") for r in runs)
    assert f"submitted Slurm job {array} (an array of 4 tasks)" in result.stderr
    listed = expyrun(project, "list", "outputs")
    assert listed.returncode == 0 and "host" in listed.stderr.splitlines()[0]
    assert all(line.split()[1] in ("queued", "running") for line in listed.stderr.splitlines()[1:5]), listed.stderr

    (project / "go").touch()
    wait_until(lambda: all(record(d)["status"] == "completed" for d in run_dirs), "every point to complete",
               lambda: [record(d)["status"] for d in run_dirs])  # fmt: skip
    assert [record(d)["result"] for d in run_dirs] == [10, 20, 30, 40]
    assert all(record(d)["slurm"]["node"] == slurm.node for d in run_dirs)
    sweep_json = json.loads((project / "outputs" / "c" / "sweep.0" / "sweep.json").read_text())
    assert sweep_json["status"] == "completed" and sweep_json["counts"] == {"completed": 4}
    listed = expyrun(project, "list", "outputs")
    assert listed.stderr.count("completed") == 4 and slurm.node in listed.stderr


STUDY = """\
x: 0.0
__optuna__:
  n_trials: 6
  search_space:
    x: {type: float, low: -1.0, high: 1.0}
"""


def test_study_workers_are_array_tasks_sharing_the_study(project, slurm):
    write(project / "pkg" / "main.py", "import time\ndef main(name, config):\n    time.sleep(0.3)\n"
                                       "    return config['x'] ** 2\n")  # fmt: skip
    write(project / "c.yml", RUN_SECTION + STUDY + slurm_section(workers=2, wait=True))
    result = expyrun(project, "c.yml")
    assert result.returncode == 0, result.stderr
    study_dirs = sorted((project / "outputs" / "demo").glob("exp.*"))
    assert [record(d)["slurm"]["array_task_id"] for d in study_dirs] == [0, 1]
    assert all(record(d)["status"] == "completed" for d in study_dirs)
    import optuna

    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(project / "outputs" / "demo" / "study.journal"))
    )
    trials = optuna.load_study(study_name="demo", storage=storage).get_trials()
    assert len(trials) == 6 and all(t.state.name == "COMPLETE" for t in trials)


CHECKPOINTING = """\
import os, time
from pathlib import Path
def main(name, config):
    attempt = int(os.environ["EXPYRUN_ATTEMPT"])
    checkpoint = Path("checkpoint.txt")  # in the run folder: a requeued attempt finds it
    start = int(checkpoint.read_text()) if checkpoint.exists() else 0
    print(f"attempt {attempt} resumes from {start}", flush=True)
    step = start
    try:
        while attempt == 1 or step < start + 5:
            step += 1
            if step == 3:
                Path("ready").touch()
            time.sleep(0.05)
    finally:
        checkpoint.write_text(str(step))   # SIGTERM unwinds to here
        print(f"checkpoint at {step}", flush=True)
    return {"attempt": attempt, "resumed_from": start}
"""


@pytest.mark.parametrize("target", ["--full", "--batch"])
def test_usr2_checkpoints_requeues_and_resumes_in_the_same_folder(project, slurm, target):
    write(project / "pkg" / "main.py", CHECKPOINTING)
    write(project / "c.yml", RUN_SECTION + slurm_section())
    result = expyrun(project, "c.yml")
    assert result.returncode == 0, result.stderr
    run_dir = project / "outputs" / "demo" / "exp.0"
    job = str(record(run_dir)["slurm"]["job_id"])
    wait_until(lambda: (run_dir / "ready").exists(), "the first attempt to run", lambda: record(run_dir)["status"])
    slurm.command("scancel", "--signal=USR2", target, job)
    wait_until(lambda: record(run_dir)["status"] == "completed", "the second attempt to complete",
               lambda: (record(run_dir)["status"], (run_dir / "outputs.log").read_text()))  # fmt: skip
    run = record(run_dir)
    assert run["attempt"] == 2 and run["slurm"]["job_id"] == int(job)
    assert run["result"]["attempt"] == 2 and run["result"]["resumed_from"] >= 3
    assert sorted(p.name for p in run_dir.parent.iterdir()) == ["exp.0"]
    log = (run_dir / "outputs.log").read_text().splitlines()
    first, second = (
        log.index("attempt 1 resumes from 0"),
        log.index(f"attempt 2 resumes from {run['result']['resumed_from']}"),
    )
    assert first < log.index("expyrun: attempt 1 stopped (USR2); requeued: attempt 2 of 3 follows") < second
    assert any(line.startswith(f"expyrun: attempt 2 of 3 (Slurm job {job}, node {slurm.node}") for line in log[:second])


def test_without_requeue_a_warned_run_ends_interrupted(project, slurm):
    write(project / "pkg" / "main.py", CHECKPOINTING)
    write(project / "c.yml", RUN_SECTION + slurm_section(slurm={"requeue": False}))
    assert expyrun(project, "c.yml").returncode == 0
    run_dir = project / "outputs" / "demo" / "exp.0"
    wait_until(lambda: (run_dir / "ready").exists(), "the run to start", lambda: record(run_dir)["status"])
    slurm.command("scancel", "--signal=USR2", "--batch", str(record(run_dir)["slurm"]["job_id"]))
    wait_until(lambda: record(run_dir)["status"] == "interrupted", "the run to be interrupted",
               lambda: record(run_dir)["status"])  # fmt: skip
    assert record(run_dir)["exit_code"] == 143 and (run_dir / "checkpoint.txt").exists()


def test_a_study_trial_stopped_by_usr2_is_failed_and_retried(project, slurm):
    write(project / "pkg" / "main.py", """\
        import os, time
        from pathlib import Path
        def main(name, config):
            if os.environ["EXPYRUN_ATTEMPT"] == "1":
                (Path(os.environ["EXPYRUN_CWD"]) / "trial-running").touch()
                time.sleep(300)
            return config["x"] ** 2
        """)  # fmt: skip
    write(project / "c.yml", RUN_SECTION + STUDY.replace("n_trials: 6", "n_trials: 2") + slurm_section())
    assert expyrun(project, "c.yml").returncode == 0
    study_dir = project / "outputs" / "demo" / "exp.0"
    wait_until(lambda: (project / "trial-running").exists(), "the first trial to run",
               lambda: record(study_dir)["status"])  # fmt: skip
    slurm.command("scancel", "--signal=USR2", "--full", str(record(study_dir)["slurm"]["job_id"]))
    wait_until(lambda: record(study_dir)["status"] == "completed", "the study to complete on its second attempt",
               lambda: (record(study_dir)["status"], (study_dir / "outputs.log").read_text()[-2000:]))  # fmt: skip
    assert record(study_dir)["attempt"] == 2
    import optuna

    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(project / "outputs" / "demo" / "study.journal"))
    )
    trials = optuna.load_study(study_name="demo", storage=storage).get_trials()
    states = [t.state.name for t in trials]
    assert states.count("COMPLETE") == 2 and states.count("FAIL") == 1, states
    failed = next(t for t in trials if t.state.name == "FAIL")
    assert any(t.params == failed.params and t.state.name == "COMPLETE" for t in trials)  # retried, same values


def test_a_trial_that_ends_an_inline_study_on_a_node_is_failed_saying_why_and_retried(project, slurm):
    """As a local launch settles them: an inline trial's `os._exit` ends the study's process on the node;
    the trial is recorded failed (not `running` for good) and failed and retried in the storage."""
    write(project / "pkg" / "main.py", """\
        import os
        from pathlib import Path
        def main(name, config):
            marker = Path(os.environ["EXPYRUN_CWD"]) / "exited-once"
            if not marker.exists():
                marker.touch()
                os._exit(3)
            return config["x"] ** 2
        """)  # fmt: skip
    study = STUDY.replace("n_trials: 6", "n_trials: 2\n  isolation: inline")
    write(project / "c.yml", RUN_SECTION + study + slurm_section(wait=True))
    result = expyrun(project, "c.yml")
    assert result.returncode == 1, result.stderr
    study_dir = project / "outputs" / "demo" / "exp.0"
    assert record(study_dir)["status"] == "failed"
    (trial_dir,) = (study_dir / "trials").iterdir()
    trial = record(trial_dir)
    assert trial["status"] == "failed" and trial["exception"]["type"] == "Died", trial
    assert "an inline trial (isolation: inline) shares the study's process" in trial["exception"]["message"]
    import optuna

    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(project / "outputs" / "demo" / "study.journal"))
    )
    trials = optuna.load_study(study_name="demo", storage=storage).get_trials()
    assert [t.state.name for t in trials] == ["FAIL", "WAITING"], trials  # the next launch runs the retry
    assert trials[1].params == trials[0].params
    again = expyrun(project, "c.yml")
    assert again.returncode == 0, again.stderr
    trials = optuna.load_study(study_name="demo", storage=storage).get_trials()
    assert [t.state.name for t in trials] == ["FAIL", "COMPLETE", "COMPLETE"], trials


COUNTING = """\
import os, signal, sys, time
from pathlib import Path
def main(name, config):
    attempt = int(os.environ["EXPYRUN_ATTEMPT"])
    if attempt > 1:
        return {"attempt": attempt, "checkpoint": Path("checkpoint.txt").read_text()}
    received = []
    def on_sigterm(signum, frame):
        received.append(signum)
        if len(received) == 1:
            time.sleep(1.0)  # saving a checkpoint takes a while: a second SIGTERM would land here
            Path("checkpoint.txt").write_text(f"saved after {len(received)} SIGTERM")
            sys.exit(143)
    signal.signal(signal.SIGTERM, on_sigterm)
    Path("ready").touch()
    while True:
        time.sleep(0.1)
"""


def test_time_limit_sigterm_reaches_the_run_once_then_requeues(project, slurm):
    write(project / "pkg" / "main.py", COUNTING)
    write(project / "c.yml", RUN_SECTION + slurm_section(slurm={"time": "1", "signal_grace_s": 0}))
    assert expyrun(project, "c.yml").returncode == 0
    run_dir = project / "outputs" / "demo" / "exp.0"
    wait_until(lambda: (run_dir / "ready").exists(), "the run to start", lambda: record(run_dir)["status"])
    deadline = time.monotonic() + 200  # Slurm enforces a 1-minute limit within its 30 s check period
    while record(run_dir)["status"] != "completed" and time.monotonic() < deadline:
        time.sleep(0.5)
    run = record(run_dir)
    assert run["status"] == "completed", (run["status"], (run_dir / "outputs.log").read_text())
    assert run["attempt"] == 2 and run["result"]["checkpoint"] == "saved after 1 SIGTERM"
    assert (
        "expyrun: attempt 1 stopped (SIGTERM); requeued: attempt 2 of 3 follows"
        in (run_dir / "outputs.log").read_text()
    )


def test_a_cancelled_job_is_not_requeued_and_a_pending_one_is_listed_died(project, slurm):
    write(project / "pkg" / "main.py", COUNTING)
    write(project / "c.yml", RUN_SECTION + slurm_section())
    assert expyrun(project, "c.yml").returncode == 0
    running = project / "outputs" / "demo" / "exp.0"
    wait_until(lambda: (running / "ready").exists(), "the run to start", lambda: record(running)["status"])
    write(project / "later.yml", RUN_SECTION + slurm_section(slurm={"options": {"begin": "now+3600"}}))
    assert expyrun(project, "later.yml").returncode == 0
    pending = project / "outputs" / "demo" / "exp.1"
    assert slurm.job_state(str(record(pending)["slurm"]["job_id"])) == "PENDING"
    listed = expyrun(project, "list", "outputs")
    assert [line.split()[1] for line in listed.stderr.splitlines()[1:3]] == ["running", "queued"], listed.stderr

    for run_dir in (running, pending):
        slurm.command("scancel", str(record(run_dir)["slurm"]["job_id"]))
    wait_until(lambda: record(running)["status"] == "interrupted", "the cancelled run to end",
               lambda: record(running)["status"])  # fmt: skip
    time.sleep(7)  # a requeued job would be pending again by now (cred_expire is 5 s)
    assert record(running)["status"] == "interrupted" and record(running)["attempt"] == 1
    assert (running / "checkpoint.txt").read_text() == "saved after 1 SIGTERM"  # Slurm's SIGTERM, not a second
    assert record(pending)["status"] == "queued"  # nothing ever ran it
    listed = expyrun(project, "list", "outputs")
    assert [line.split()[1] for line in listed.stderr.splitlines()[1:3]] == ["interrupted", "died"], listed.stderr
    show = expyrun(project, "show", str(pending))
    assert "status       died" in show.stderr


def test_dry_run_prints_the_job_script_and_creates_nothing(project, slurm):
    sweep = "__sweep__:\n  grid:\n    x: [1, 2, 3]\n"
    settings = {
        "partition": "debug", "time": "00:10:00", "array_parallelism": 2, "mem": "1G",
        "options": {"account": "lab", "exclusive": True}, "setup": ["module load python", "echo hi"],
    }  # fmt: skip
    write(project / "c.yml", RUN_SECTION + "x: 0\n" + sweep + slurm_section(slurm=settings))
    result = expyrun(project, "c.yml", "--dry-run")
    assert result.returncode == 0, result.stderr
    script = result.stdout
    for line in ("#SBATCH --partition=debug", "#SBATCH --time=00:10:00", "#SBATCH --array=0-2%2",
                 "#SBATCH --signal=B:USR2@120", "#SBATCH --requeue", "#SBATCH --mem=1G", "#SBATCH --account=lab",
                 "#SBATCH --exclusive", "module load python\necho hi\n", "-m expyrun.node"):  # fmt: skip
        assert line in script, script
    assert str(project / "outputs" / "demo" / "exp.2") in script
    assert not (project / "outputs").exists()
    assert subprocess.run(["bash", "-n"], input=script, text=True, check=False).returncode == 0


@pytest.mark.parametrize(
    ("section", "fragment"),
    [
        (
            slurm_section(slurm={"cpus_per_tsk": 2}),
            "`__launch__.slurm.cpus_per_tsk`: unknown setting (did you mean `cpus_per_task`?)",
        ),
        (
            slurm_section(slurm={"options": {"time": 5}}),
            "`__launch__.slurm.options.time`: --time is written by expyrun",
        ),
        (slurm_section(slurm={"max_attempts": 0}), "`__launch__.slurm.max_attempts`: expected a positive integer"),
        (slurm_section(slurm={"time": "an hour"}), "`__launch__.slurm.time`"),
        (slurm_section(slurm={"partition": "nosuch"}), "sbatch refused the job: Invalid partition name specified"),
        (
            STUDY.replace("n_trials", "storage: 'sqlite:///:memory:'\n  n_trials") + slurm_section(),
            "an in-memory SQLite database lives in one process",
        ),
    ],
    ids=["unknown-key", "own-option", "max-attempts", "time", "sbatch-refuses", "in-memory-storage"],
)
def test_errors_are_one_line_exit_2_and_leave_nothing(project, slurm, section, fragment):
    for config in ("c.yml", "sweep.yml"):
        sweep = "__sweep__:\n  grid:\n    x: [1, 2]\n" if config == "sweep.yml" and "__optuna__" not in section else ""
        write(project / config, RUN_SECTION + ("x: 0\n" if "x: 0.0" not in section else "") + sweep + section)
        result = expyrun(project, config)
        assert result.returncode == 2, result.stderr
        assert fragment in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert not (project / "outputs").exists(), sorted(p.name for p in (project / "outputs").rglob("*"))
    assert slurm.command("squeue", "-h").stdout.strip() == ""


def test_no_sbatch_on_path_is_one_line_exit_2(project, slurm):
    write(project / "c.yml", RUN_SECTION + slurm_section())
    result = subprocess.run([sys.executable, "-m", "expyrun", "c.yml"], cwd=project, capture_output=True, text=True,
                            env={**clean_env(), "PATH": "/nonexistent"}, timeout=60, check=False)  # fmt: skip
    assert result.returncode == 2 and "sbatch is not on PATH" in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not (project / "outputs").exists()


def test_ctrl_c_while_waiting_cancels_the_jobs_and_exits_130(project, slurm):
    write(project / "pkg" / "main.py", CHECKPOINTING)
    sweep = "__sweep__:\n  grid:\n    x: [1, 2]\n"  # one point runs, one waits for the CPU... or both run
    write(project / "c.yml", RUN_SECTION.replace("demo", "p{x}") + "x: 0\n" + sweep + slurm_section(wait=True))
    process = subprocess.Popen([sys.executable, "-m", "expyrun", "c.yml"], cwd=project, env=clean_env(),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    run_dirs = [project / "outputs" / f"p{x}" / "exp.0" for x in (1, 2)]
    wait_until(lambda: any((d / "ready").exists() for d in run_dirs), "a point to run",
               lambda: [record(d)["status"] for d in run_dirs if (d / "run.json").exists()])  # fmt: skip
    stopped = time.monotonic()
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=DEADLINE_S)
    assert process.returncode == 130, stderr
    assert "cancelling Slurm job" in stderr
    assert time.monotonic() - stopped < 10  # the runs got SIGINT and ended, none waited for a cancel
    runs = [record(d) for d in run_dirs]
    assert {(run["status"], run["exit_code"]) for run in runs} == {("interrupted", 130)}, runs  # as locally
    sweep_json = json.loads((project / "outputs" / "c" / "sweep.0" / "sweep.json").read_text())
    assert sweep_json["counts"] == {"interrupted": 2} and sweep_json["status"] == "failed"


IGNORING_SIGTERM = """\
import signal, time
def main(name, config):
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    print("ready", flush=True)
    time.sleep(120)
"""


def started(run_dir: Path) -> bool:
    """The run printed `ready` and its record says `running`."""
    log = run_dir / "outputs.log"
    return log.exists() and "ready" in log.read_text() and record(run_dir)["status"] == "running"


def test_a_cancelled_run_ignoring_sigterm_is_recorded_by_its_node_before_killwait(project, slurm):
    write(project / "pkg" / "main.py", IGNORING_SIGTERM)
    write(project / "c.yml", RUN_SECTION + slurm_section())
    assert expyrun(project, "c.yml").returncode == 0  # nobody waits: only the node can record the end
    run_dir = project / "outputs" / "demo" / "exp.0"
    wait_until(lambda: started(run_dir), "the run to start", lambda: record(run_dir)["status"])
    job = str(record(run_dir)["slurm"]["job_id"])
    cancelled = time.monotonic()
    slurm.command("scancel", job)
    wait_until(lambda: record(run_dir)["status"] != "running", "the record to end", lambda: record(run_dir))
    assert 2 <= time.monotonic() - cancelled < 5  # its grace: Slurm's KillWait (5 s) less KILL_WAIT_MARGIN_S
    wait_until(lambda: slurm.job_state(job) not in ("RUNNING", "COMPLETING"), "the job to end",
               lambda: slurm.job_state(job))  # fmt: skip
    run = record(run_dir)
    assert (run["status"], run["exit_code"], run["attempt"]) == ("interrupted", 143, 1), run
    assert (run["exception"] or {}).get("type") != "Cancelled"  # the node's own record, no launcher's


def start_waited_run(project: Path) -> tuple[subprocess.Popen[str], Path]:
    """`expyrun c.yml` waiting for its one Slurm job (the entry point already written); returns once
    the run started on the node."""
    write(project / "c.yml", RUN_SECTION + slurm_section(wait=True))
    process = subprocess.Popen([sys.executable, "-m", "expyrun", "c.yml"], cwd=project, env=clean_env(),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    run_dir = project / "outputs" / "demo" / "exp.0"
    wait_until(lambda: (run_dir / "run.json").exists() and started(run_dir), "the run to start")
    return process, run_dir


def test_a_run_whose_node_dies_after_a_waiting_launcher_cancelled_it_is_recorded_interrupted(project, slurm):
    write(project / "pkg" / "main.py", """\
        import os, signal, time
        def main(name, config):
            signal.signal(signal.SIGTERM, lambda *_: os.kill(os.getppid(), signal.SIGKILL))  # its node
            print("ready", flush=True)
            time.sleep(120)
        """)  # fmt: skip
    process, run_dir = start_waited_run(project)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=DEADLINE_S)
    assert process.returncode == 143, stderr
    run = record(run_dir)
    assert (run["status"], run["exit_code"]) == ("interrupted", 143), run
    assert run["exception"] == {
        "type": "Cancelled", "message": "the Slurm job was stopped and ended before the run recorded its end"
    }  # fmt: skip
    listed = expyrun(project, "list", "outputs")
    assert listed.stderr.splitlines()[1].split()[1] == "interrupted", listed.stderr


@pytest.mark.parametrize(("sent", "received", "code"), [("SIGHUP", "SIGTERM", 129), ("SIGINT", "SIGINT", 130)])
def test_sighup_and_sigint_while_waiting_reach_the_run_as_in_a_local_launch(project, slurm, sent, received, code):
    write(project / "pkg" / "main.py", """\
        import signal, sys, time
        from pathlib import Path
        def save(signum, frame):
            Path("saved").write_text(signal.Signals(signum).name)
            sys.exit(1)
        def main(name, config):
            signal.signal(signal.SIGTERM, save)
            signal.signal(signal.SIGINT, save)
            print("ready", flush=True)
            time.sleep(120)
        """)  # fmt: skip
    process, run_dir = start_waited_run(project)
    process.send_signal(getattr(signal, sent))
    _, stderr = process.communicate(timeout=DEADLINE_S)
    assert process.returncode == code, stderr
    run = record(run_dir)
    assert (run["status"], run["exit_code"]) == ("interrupted", code), run
    assert (run_dir / "saved").read_text() == received  # what a local launch passes on (SPEC 4)


def test_a_job_that_outlives_the_sighup_it_was_sent_is_cancelled_after_the_grace(project, slurm):
    write(project / "pkg" / "main.py", "def main(name, config):\n    return 1\n")
    holding = project / "holding"  # its setup lines ignore SIGHUP and hold the job before the run starts
    setup = ["trap '' HUP", f"touch {holding}", "sleep 60"]
    write(project / "c.yml", RUN_SECTION + slurm_section(wait=True, slurm={"setup": setup}))
    process = subprocess.Popen([sys.executable, "-m", "expyrun", "c.yml"], cwd=project, env=clean_env(),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    run_dir = project / "outputs" / "demo" / "exp.0"
    wait_until(holding.exists, "the job's setup lines to run")
    stopped = time.monotonic()
    process.send_signal(signal.SIGHUP)
    _, stderr = process.communicate(timeout=DEADLINE_S)
    assert process.returncode == 129, stderr
    assert 15 <= time.monotonic() - stopped < 15 + 10, stderr  # slurm_wait.CANCEL_AFTER_S, then the cancel
    run = record(run_dir)
    assert (run["status"], run["exit_code"]) == ("interrupted", 129), run
    assert run["exception"] == {"type": "Cancelled", "message": "the Slurm job was cancelled before it started"}
    job = str(run["slurm"]["job_id"])
    assert slurm.job_state(job) not in ("RUNNING", "COMPLETING", "PENDING"), slurm.job_state(job)


def test_needed_submits_nothing_when_the_run_is_done(project, slurm):
    write(project / "c.yml", RUN_SECTION + "x: 1\n" + slurm_section(wait=True))
    assert expyrun(project, "c.yml").returncode == 0
    result = expyrun(project, "c.yml", "--needed")
    assert result.returncode == 0 and "already done" in result.stderr and "submitted Slurm job" not in result.stderr
    assert sorted(p.name for p in (project / "outputs" / "demo").iterdir()) == ["exp.0"]


def test_show_of_a_cancelled_sweep_array_says_its_points_died_not_queued(project, slurm):
    sweep = "__sweep__:\n  grid:\n    x: [1, 2]\n"
    later = slurm_section(slurm={"options": {"begin": "now+3600"}})
    write(project / "c.yml", RUN_SECTION.replace("demo", "p{x}") + "x: 0\n" + sweep + later)
    assert expyrun(project, "c.yml").returncode == 0
    run_dirs = [project / "outputs" / f"p{x}" / "exp.0" for x in (1, 2)]
    array = str(record(run_dirs[0])["slurm"]["array_job_id"])
    slurm.command("scancel", array)
    wait_until(lambda: "PENDING" not in slurm.job_state(array), "the array to be cancelled",
               lambda: slurm.job_state(array))  # fmt: skip
    shown = expyrun(project, "show", "outputs/c/sweep.0")
    assert shown.returncode == 0, shown.stderr
    assert shown.stderr.splitlines()[0] == "sweep c (failed): 2 died", shown.stderr


def test_a_waited_sweep_whose_points_all_died_is_failed_not_completed(project, slurm):
    sweep = "__sweep__:\n  grid:\n    x: [1, 2, 3]\n"
    later = slurm_section(wait=True, slurm={"options": {"begin": "now+3600"}})
    write(project / "c.yml", RUN_SECTION.replace("demo", "p{x}") + "x: 0\n" + sweep + later)
    process = subprocess.Popen([sys.executable, "-m", "expyrun", "c.yml"], cwd=project, env=clean_env(),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    run_dirs = [project / "outputs" / f"p{x}" / "exp.0" for x in (1, 2, 3)]
    try:
        wait_until(lambda: all((d / "run.json").exists() and record(d).get("slurm") for d in run_dirs),
                   "the array to be submitted", lambda: process.poll())  # fmt: skip
        slurm.command("scancel", str(record(run_dirs[0])["slurm"]["array_job_id"]))  # by someone else
        _, stderr = process.communicate(timeout=DEADLINE_S)
    finally:
        process.kill()
        process.wait()
    assert process.returncode == 1, stderr
    sweep_json = json.loads((project / "outputs" / "c" / "sweep.0" / "sweep.json").read_text())
    assert sweep_json["counts"] == {"died": 3} and sweep_json["status"] == "failed", sweep_json
    assert "sweep failed: 3 died" in stderr


def test_a_sweep_over_the_code_runs_each_points_own_code_on_the_nodes(project, slurm):
    for folder, result in (("v1", 1), ("v2", 2)):
        write(project / folder / "pkg" / "__init__.py", "")
        write(project / folder / "pkg" / "main.py", f"def main(name, config):\n    return {result}\n")
    run = RUN_SECTION.replace("demo", "p/{__run__.__code__}") + "  __code__: v1\n"
    sweep = "__sweep__:\n  grid:\n    __run__.__code__: [v1, v2]\n"
    write(project / "c.yml", run + sweep + slurm_section(wait=True))
    result = expyrun(project, "c.yml")
    assert result.returncode == 0, result.stderr
    runs = [record(project / "outputs" / "p" / version / "exp.0") for version in ("v1", "v2")]
    assert [r["result"] for r in runs] == [1, 2], runs
    assert runs[0]["snapshot"]["sha256"] != runs[1]["snapshot"]["sha256"]
