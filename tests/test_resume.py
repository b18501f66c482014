"""`expyrun resume RUN|SWEEP` (SPEC 14): a stopped run continues in its own folder, as a user sees it."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

from conftest import RUN_SECTION, start_expyrun, write

CHECKPOINTING = """\
import os
import pathlib
import time


def main(name, config):
    checkpoint = pathlib.Path("checkpoint.txt")  # the run's folder is its working directory
    step = int(checkpoint.read_text()) if checkpoint.exists() else 0
    print("attempt", os.environ.get("EXPYRUN_ATTEMPT"), "starts at step", step)
    if step == 0:
        checkpoint.write_text("5")
        if config["mode"] == "crash":
            raise RuntimeError("crashed after the checkpoint")
        time.sleep(600)  # stopped by a signal here
    return {"step": step}
"""


def _project(project: Path, mode: str) -> Path:
    write(project / "pkg" / "main.py", CHECKPOINTING)
    return write(project / "cfg.yml", RUN_SECTION + f"mode: {mode}\n")


def _record(run_dir: Path) -> dict:
    return json.loads((run_dir / "run.json").read_text())


def _wait_for(path: Path, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        if time.monotonic() > deadline:
            held = sorted(p.name for p in path.parent.glob("*")) if path.parent.exists() else "nothing"
            raise AssertionError(f"{path} did not appear within {seconds} s; its folder holds {held}")
        time.sleep(0.05)


def test_a_failed_run_that_wrote_a_checkpoint_resumes_from_it_as_attempt_2_in_the_same_folder(project, expyrun):
    _project(project, "crash")
    first = expyrun("cfg.yml")
    assert first.returncode == 1, first.stderr
    run_dir = project / "outputs" / "demo" / "exp.0"
    assert _record(run_dir)["status"] == "failed"

    resumed = expyrun("resume", str(run_dir))

    assert resumed.returncode == 0, resumed.stderr
    record = _record(run_dir)
    assert (record["status"], record["attempt"], record["result"]) == ("completed", 2, {"step": 5})
    assert sorted(p.name for p in (project / "outputs" / "demo").iterdir()) == ["exp.0"]
    log = (run_dir / "outputs.log").read_text()
    assert "crashed after the checkpoint" in log
    assert "attempt 2 follows" in log
    assert log.index("attempt 2 follows") < log.index("attempt 2 starts at step 5")


def test_an_interrupted_run_resumes_from_its_checkpoint_with_both_attempts_in_its_log(project, expyrun):
    _project(project, "wait")
    run_dir = project / "outputs" / "demo" / "exp.0"
    process = start_expyrun(["cfg.yml"], project)
    _wait_for(run_dir / "checkpoint.txt")
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=60) == 130
    assert _record(run_dir)["status"] == "interrupted"

    resumed = expyrun("resume", str(run_dir))

    assert resumed.returncode == 0, resumed.stderr
    record = _record(run_dir)
    assert (record["status"], record["attempt"], record["result"]) == ("completed", 2, {"step": 5})
    log = (run_dir / "outputs.log").read_text()
    assert "starts at step 0" in log and "attempt 2 starts at step 5" in log


def test_a_completed_run_is_refused_in_one_line_and_left_as_it_was(project, expyrun):
    write(project / "cfg.yml", RUN_SECTION)
    assert expyrun("cfg.yml").returncode == 0
    run_dir = project / "outputs" / "demo" / "exp.0"
    before = (run_dir / "run.json").read_text()

    refused = expyrun("resume", str(run_dir))

    assert refused.returncode == 2
    assert "is completed: not resumed" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    assert (run_dir / "run.json").read_text() == before


def test_a_running_run_is_refused(project, expyrun):
    _project(project, "wait")
    run_dir = project / "outputs" / "demo" / "exp.0"
    process = start_expyrun(["cfg.yml"], project)
    try:
        _wait_for(run_dir / "checkpoint.txt")
        refused = expyrun("resume", str(run_dir))
        assert refused.returncode == 2
        assert "is running: not resumed" in refused.stderr
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=60)


def test_a_folder_that_is_not_a_run_is_refused(project, expyrun):
    (project / "empty").mkdir()
    refused = expyrun("resume", "empty")
    assert refused.returncode == 2
    assert "not a run folder" in refused.stderr


def test_a_run_whose_process_died_resumes(project, expyrun):
    _project(project, "crash")
    assert expyrun("cfg.yml").returncode == 1
    run_dir = project / "outputs" / "demo" / "exp.0"
    record = _record(run_dir)
    record.update(status="running", pid=2**22 + 7, ended_at=None)  # as a machine's reboot leaves it
    (run_dir / "run.json").write_text(json.dumps(record))

    resumed = expyrun("resume", str(run_dir))

    assert resumed.returncode == 0, resumed.stderr
    assert _record(run_dir)["attempt"] == 2
    assert "resumed (died" in (run_dir / "outputs.log").read_text()


SWEEP_POINT = """\
import os
import pathlib
import time


def main(name, config):
    checkpoint = pathlib.Path("checkpoint.txt")
    resumed = checkpoint.exists()
    checkpoint.write_text("started")
    if config["lr"] == 2 and not resumed:
        time.sleep(600)  # the sweep is stopped while this point runs
    return {"lr": config["lr"], "attempt": os.environ.get("EXPYRUN_ATTEMPT"), "resumed": resumed}
"""


def test_a_sweep_stopped_by_ctrl_c_resumes_to_completion_in_the_same_sweep_folder(project, expyrun):
    write(project / "pkg" / "main.py", SWEEP_POINT)
    write(project / "cfg.yml", RUN_SECTION + "lr: 0\n__sweep__:\n  grid:\n    lr: [1, 2, 3, 4]\n")
    sweep_dir = project / "outputs" / "cfg" / "sweep.0"
    process = start_expyrun(["cfg.yml"], project)
    _wait_for(project / "outputs" / "demo" / "exp.1" / "checkpoint.txt")
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=60) == 130
    stopped = json.loads((sweep_dir / "sweep.json").read_text())
    assert stopped["status"] == "interrupted" and stopped["counts"] == {"completed": 1, "interrupted": 1, "pending": 2}

    resumed = expyrun("resume", str(sweep_dir))

    assert resumed.returncode == 0, resumed.stderr
    data = json.loads((sweep_dir / "sweep.json").read_text())
    assert data["status"] == "completed" and data["counts"] == {"completed": 4}
    assert sorted(p.name for p in (project / "outputs" / "cfg").iterdir()) == ["sweep.0"]
    results = {row["index"]: row["result"] for row in data["points"]}
    assert results[0] == {"lr": 1, "attempt": None, "resumed": False}  # completed before: not run again
    assert results[1] == {"lr": 2, "attempt": "2", "resumed": True}  # its own folder, attempt 2
    assert results[2]["resumed"] is False and results[3]["resumed"] is False
    assert _record(project / "outputs" / "demo" / "exp.1")["attempt"] == 2
    assert sorted(p.name for p in (project / "outputs" / "demo").iterdir()) == ["exp.0", "exp.1", "exp.2", "exp.3"]


def test_a_completed_sweep_is_refused(project, expyrun):
    write(project / "cfg.yml", RUN_SECTION + "lr: 0\n__sweep__:\n  grid:\n    lr: [1, 2]\n")
    assert expyrun("cfg.yml").returncode == 0
    refused = expyrun("resume", "outputs/cfg/sweep.0")
    assert refused.returncode == 2 and "every point of the sweep is completed" in refused.stderr


RETRIED_TRIAL = """\
import json
import os
import time

import expyrun


def main(name, config):
    trial = expyrun.trial()
    with open(os.path.join(os.environ["EXPYRUN_CWD"], "events.txt"), "a") as events:
        events.write(json.dumps({"n": trial.number, "retry_of": os.environ.get("EXPYRUN_RETRY_OF")}) + "\\n")
    if trial.number == 1 and config["die"] in (True, "stopped"):
        with open("checkpoint.txt", "w") as checkpoint:
            checkpoint.write("half way")
        if config["die"] == "stopped":
            time.sleep(600)  # the study is stopped (Ctrl-C) while this trial runs
        os._exit(5)  # the study process dies with its inline trial
    return config["x"] ** 2
"""


def test_a_retried_trial_sees_expyrun_retry_of_naming_the_folder_of_the_attempt_it_retries(project, expyrun):
    write(project / "pkg" / "main.py", RETRIED_TRIAL)
    write(
        project / "tune.yml",
        RUN_SECTION
        + """\
x: 0.0
die: true
__optuna__:
  n_trials: 3
  isolation: inline
  sampler: {name: RandomSampler, seed: 0}
  search_space:
    x: {type: float, low: -4, high: 4}
""",
    )
    assert expyrun("tune.yml").returncode != 0
    again = expyrun("tune.yml", "--die", "false")
    assert again.returncode == 0, again.stderr

    seen = [json.loads(line) for line in (project / "events.txt").read_text().splitlines()]
    first, second = project / "outputs" / "demo" / "exp.0", project / "outputs" / "demo" / "exp.1"
    retries = [event for event in seen if event["retry_of"] is not None]
    assert [event["retry_of"] for event in retries] == [str(first / "trials" / "trial.1")], seen
    assert (Path(retries[0]["retry_of"]) / "checkpoint.txt").read_text() == "half way"
    assert all(event["retry_of"] is None for event in seen if event not in retries)
    retried = json.loads((second / "trials" / f"trial.{retries[0]['n']}" / "run.json").read_text())
    assert retried["retry_of"] == str(first / "trials" / "trial.1")
    refused = expyrun("resume", str(first / "trials" / "trial.1"))
    assert refused.returncode == 2 and "is a study's trial: not resumed on its own" in refused.stderr


def _processes_in(folder: Path) -> list[int]:
    """The processes whose working directory is `folder` (a run child runs in its run folder)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if Path(os.readlink(entry / "cwd")) == folder:
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def test_a_sweep_whose_launcher_was_killed_resumes_its_points_in_their_own_folders(project, expyrun):
    write(project / "pkg" / "main.py", SWEEP_POINT)
    write(project / "cfg.yml", RUN_SECTION + "lr: 0\n__sweep__:\n  grid:\n    lr: [1, 2, 3]\n")
    sweep_dir = project / "outputs" / "cfg" / "sweep.0"
    point_1 = project / "outputs" / "demo" / "exp.1"
    process = start_expyrun(["cfg.yml"], project)
    _wait_for(point_1 / "checkpoint.txt")
    process.kill()  # SIGKILL: sweep.json is left as it was last written
    process.wait(timeout=30)
    deadline = time.monotonic() + 30
    while _processes_in(point_1):
        assert time.monotonic() < deadline, f"{point_1}: its run child outlived the launcher: {_processes_in(point_1)}"
        time.sleep(0.05)

    resumed = expyrun("resume", str(sweep_dir))

    assert resumed.returncode == 0, resumed.stderr
    data = json.loads((sweep_dir / "sweep.json").read_text())
    assert data["status"] == "completed" and data["counts"] == {"completed": 3}
    rows = {row["index"]: row for row in data["points"]}
    assert rows[1]["run_dir"] == str(point_1) and rows[1]["result"]["resumed"] is True
    assert rows[0]["result"]["resumed"] is False and rows[2]["result"]["resumed"] is False
    assert sorted(p.name for p in (project / "outputs" / "demo").iterdir()) == ["exp.0", "exp.1", "exp.2"]


def test_a_trial_stopped_with_its_study_is_retried_by_the_next_launch_with_expyrun_retry_of(project, expyrun):
    write(project / "pkg" / "main.py", RETRIED_TRIAL)
    write(
        project / "tune.yml",
        RUN_SECTION
        + """\
x: 0.0
die: stopped
__optuna__:
  n_trials: 3
  sampler: {name: RandomSampler, seed: 0}
  search_space:
    x: {type: float, low: -4, high: 4}
""",
    )
    first = project / "outputs" / "demo" / "exp.0"
    process = start_expyrun(["tune.yml"], project)
    _wait_for(first / "trials" / "trial.1" / "checkpoint.txt")
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=60) == 130

    again = expyrun("tune.yml", "--die", "no")

    assert again.returncode == 0, again.stderr
    seen = [json.loads(line) for line in (project / "events.txt").read_text().splitlines()]
    retries = [event for event in seen if event["retry_of"] is not None]
    assert [event["retry_of"] for event in retries] == [str(first / "trials" / "trial.1")], seen
