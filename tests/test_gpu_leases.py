"""GPU leases across launches (SPEC 13): concurrent launches never give one GPU id to two runs at once,
a launch whose ids are all held waits saying who holds them, and a lease ends with its holder's processes."""

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
    time.sleep(config.get("sleep", 0))
    with open(os.path.join(os.environ["EXPYRUN_CWD"], "calls.jsonl"), "a") as log:
        log.write(json.dumps({"name": name, "gpu": os.environ.get("CUDA_VISIBLE_DEVICES"),
                              "start": start, "end": time.time()}) + "\\n")
    return 1
"""

SWEEP = """\
__run__:
  __main__: pkg.main:main
  __name__: "grid/{tag}-lr{lr}"
  __output_dir__: outputs
tag: a
lr: 0.1
sleep: 0.4
__sweep__:
  grid:
    lr: [0.1, 0.2, 0.3, 0.4]
__launch__: {jobs: 2, gpus: [0, 1]}
"""

SINGLE = """\
__run__:
  __main__: pkg.main:main
  __name__: single
  __output_dir__: outputs
gate: ""
__launch__: {gpus: [0]}
"""


@pytest.fixture
def leases_env(project: Path) -> dict[str, str]:
    write(project / "pkg" / "main.py", ENTRY)
    env = clean_env()
    env["EXPYRUN_GPU_LEASES"] = str(project / "leases")
    return env


def launch(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "expyrun", *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip


def wait_for(predicate: Callable[[], object], timeout: float, what: Callable[[], str]) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what()}")
        time.sleep(0.02)


def calls(project: Path) -> list[dict]:
    path = project / "calls.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_two_concurrent_sweeps_never_give_one_gpu_to_two_runs_at_once(project, leases_env):
    write(project / "a.yml", SWEEP)
    write(project / "b.yml", SWEEP.replace("tag: a", "tag: b"))
    first = launch(["a.yml"], project, leases_env)
    second = launch(["b.yml"], project, leases_env)
    outputs = [process.communicate(timeout=120) for process in (first, second)]
    assert first.returncode == 0 and second.returncode == 0, outputs
    runs = calls(project)
    assert len(runs) == 8 and {run["gpu"] for run in runs} == {"0", "1"}
    for i, a in enumerate(runs):
        for b in runs[i + 1 :]:
            if a["start"] < b["end"] and b["start"] < a["end"]:
                assert a["gpu"] != b["gpu"], (a, b)
    records = [json.loads(path.read_text()) for path in (project / "outputs" / "grid").glob("*/exp.0/run.json")]
    assert len(records) == 8 and all(record["gpu"] in ("0", "1") for record in records)
    waited = [err for _, err in outputs if "waiting for a GPU lease" in err]
    assert waited, "neither launch waited for the other's GPUs"


def read_until(process: subprocess.Popen[str], text: str, timeout: float) -> str:
    """What `process` wrote on stderr until `text` appeared (fails with what it saw)."""
    os.set_blocking(process.stderr.fileno(), False)  # type: ignore[union-attr]
    seen = ""

    def found() -> bool:
        nonlocal seen
        with contextlib.suppress(BlockingIOError):
            seen += os.read(process.stderr.fileno(), 65536).decode()  # type: ignore[union-attr]
        return text in seen

    wait_for(found, timeout, lambda: f"never wrote {text!r} on stderr: {seen!r} (exit {process.poll()})")
    return seen


def start_holder(project: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    """A launch whose run holds GPU 0 until the file `gate` exists."""
    write(project / "single.yml", SINGLE.replace('gate: ""', f"gate: {project / 'gate'}"))
    holder = launch(["single.yml"], project, env)
    record_path = project / "outputs" / "single" / "exp.0" / "run.json"
    wait_for(lambda: record_path.exists() and json.loads(record_path.read_text()).get("status") == "running", 30,
             lambda: f"the first run did not start (exit {holder.poll()})")  # fmt: skip
    return holder


def test_a_launch_whose_gpus_are_held_waits_naming_the_holder_then_runs_when_it_ends(project, leases_env):
    holder = start_holder(project, leases_env)
    waiting = launch(["single.yml", "--gate", ""], project, leases_env)
    seen = read_until(waiting, "waiting for a GPU lease", 30)
    assert str(project / "outputs" / "single" / "exp.0") in seen  # who holds GPU 0
    assert not calls(project), "the second run started while GPU 0 was held"
    (project / "gate").touch()
    assert holder.wait(timeout=30) == 0
    assert waiting.wait(timeout=30) == 0
    first, second = calls(project)
    assert first["gpu"] == second["gpu"] == "0" and second["start"] >= first["end"]


def test_a_sigkilled_launch_leaves_its_gpu_to_the_next_launch(project, leases_env):
    holder = start_holder(project, leases_env)
    os.kill(holder.pid, signal.SIGKILL)  # its run ends with it (the tee sees the launcher gone): so does the lease
    holder.communicate(timeout=30)
    after = launch(["single.yml", "--gate", ""], project, leases_env)
    _, err = after.communicate(timeout=60)
    assert after.returncode == 0, err
    assert [run["gpu"] for run in calls(project)] == ["0"]  # the second run's; the first never ended


STUDY = """\
__run__:
  __main__: pkg.main:main
  __name__: study
  __output_dir__: outputs
gate: ""
x: 0.0
__launch__: {gpus: [0, 1], jobs: 2}
__optuna__:
  n_trials: 4
  sampler: {name: RandomSampler, seed: 0}
  search_space:
    x: {type: float, low: -4, high: 4}
"""


def test_a_studys_trial_workers_take_only_gpus_no_other_launch_holds(project, leases_env):
    holder = start_holder(project, leases_env)  # GPU 0 held by another launch's run
    write(project / "study.yml", STUDY)
    study = launch(["study.yml"], project, leases_env)
    _, err = study.communicate(timeout=120)
    assert study.returncode == 0, err
    assert "waiting for a GPU lease" in err and "GPU 0 held by" in err
    trials = [call for call in calls(project) if call["name"] != "single"]
    assert len(trials) == 4 and {call["gpu"] for call in trials} == {"1"}
    (project / "gate").touch()
    assert holder.wait(timeout=30) == 0


def test_a_sweeps_last_running_point_keeps_no_second_gpu_from_another_launch(project, leases_env):
    gate = project / "gate"
    write(project / "tail.yml", f"""\
__run__:
  __main__: pkg.main:main
  __name__: "tail/p{{lr}}"
  __output_dir__: outputs
lr: 0
gate: ""
__sweep__:
  zip:
    lr: [1, 2, 3]
    gate: ["", "", "{gate}"]
__launch__: {{jobs: 2, gpus: [0, 1]}}
""")  # fmt: skip
    sweep = launch(["tail.yml"], project, leases_env)

    def status(lr: int) -> str | None:
        path = project / "outputs" / "tail" / f"p{lr}" / "exp.0" / "run.json"
        return json.loads(path.read_text()).get("status") if path.exists() else None

    wait_for(lambda: [status(lr) for lr in (1, 2, 3)] == ["completed", "completed", "running"], 60,
             lambda: f"the first two points did not end: {[status(lr) for lr in (1, 2, 3)]}")  # fmt: skip
    write(project / "single.yml", SINGLE.replace("gpus: [0]", "gpus: [0, 1]"))
    other = launch(["single.yml"], project, leases_env)  # one GPU is free while the last point runs
    _, err = other.communicate(timeout=60)
    assert other.returncode == 0 and "waiting for a GPU lease" not in err, err
    assert sweep.poll() is None, "the sweep ended before its gated point was released"
    gate.touch()
    assert sweep.wait(timeout=60) == 0
    last, single = calls(project)[-1], calls(project)[2]
    assert single["name"] == "single" and single["gpu"] != last["gpu"]


def test_gpus_auto_in_two_concurrent_launches_on_a_two_gpu_machine_gives_each_its_own_id(project, leases_env):
    env = dict(leases_env, CUDA_VISIBLE_DEVICES="0,1")  # what `gpus: auto` finds (no nvidia-smi here)
    write(
        project / "single.yml",
        SINGLE.replace("gpus: [0]", "gpus: auto").replace('gate: ""', f"gate: {project / 'gate'}"),
    )
    first = launch(["single.yml"], project, env)
    record_path = project / "outputs" / "single" / "exp.0" / "run.json"
    wait_for(lambda: record_path.exists() and json.loads(record_path.read_text()).get("status") == "running", 30,
             lambda: f"the first run did not start (exit {first.poll()})")  # fmt: skip
    second = launch(["single.yml", "--gate", ""], project, env)
    _, err = second.communicate(timeout=60)
    assert second.returncode == 0 and "waiting for a GPU lease" not in err, err
    (project / "gate").touch()
    assert first.wait(timeout=30) == 0
    assert sorted(call["gpu"] for call in calls(project)) == ["0", "1"]
