"""`expyrun verify RUN` (SPEC 14): does a run's result reproduce, as a user asks it and reads the answer."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import RUN_SECTION, clean_env, run_expyrun, write

READING = """\
import os
import pathlib

import expyrun


def main(name, config):
    data = pathlib.Path(os.environ["EXPYRUN_CWD"], "data.txt").read_text().split()
    for step in range(5):
        expyrun.log(step=step, loss=float(data[1]) if step == 3 else 1.0 / (step + 1))
    return {"answer": int(data[0]), "constant": [1, 2.5, "three"]}
"""


@pytest.fixture(scope="module")
def env_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One environment cache for this module: the first verify builds it, the others reuse it."""
    return tmp_path_factory.mktemp("envs")


@pytest.fixture
def verify(project: Path, env_cache: Path):
    def call(*args: str):
        return run_expyrun(["verify", *args], project, env={"EXPYRUN_ENV_CACHE": str(env_cache)}, timeout=600)

    return call


@pytest.fixture
def run_dir(project: Path, expyrun) -> Path:
    write(project / "pkg" / "main.py", READING)
    write(project / "data.txt", "42 0.25\n")
    write(project / "cfg.yml", RUN_SECTION)
    launched = expyrun("cfg.yml")
    assert launched.returncode == 0, launched.stderr
    return project / "outputs" / "demo" / "exp.0"


def _verdict(folder: Path) -> dict:
    return json.loads((folder / "verdict.json").read_text())


def test_a_deterministic_run_is_identical_and_a_second_verify_reuses_its_environment(run_dir, verify, expyrun):
    first = verify(str(run_dir))

    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith("identical: ") and first.stdout.strip().endswith("verify.0")
    verdict = _verdict(run_dir / "verify.0")
    assert verdict["verdict"] == "identical" and verdict["difference"] is None
    rerun = json.loads((run_dir / "verify.0" / "run.json").read_text())
    assert (rerun["status"], rerun["result"], rerun["rerun_of"]) == (
        "completed",
        {"answer": 42, "constant": [1, 2.5, "three"]},
        str(run_dir),
    )
    assert rerun["attempt"] == 1

    started = time.monotonic()
    second = verify(str(run_dir))
    took = time.monotonic() - started

    assert second.returncode == 0, second.stderr
    assert _verdict(run_dir / "verify.1")["environment"]["cached"] is True
    assert "building an environment" not in second.stderr
    assert took < 30, f"a second verify took {took:.1f} s"
    shown = expyrun("show", str(run_dir))
    assert "verified" in shown.stderr and "identical (verify.1" in shown.stderr
    listed = expyrun("list", "--json")
    assert json.loads(listed.stdout.splitlines()[0])["verified"] == "identical"
    table = expyrun("list")
    assert "verified" in table.stderr and "identical" in table.stderr


def test_a_run_reading_something_that_changed_differs_naming_the_key(run_dir, verify, project):
    write(project / "data.txt", "43 0.25\n")

    answer = verify(str(run_dir))

    assert answer.returncode == 1, answer.stderr
    assert answer.stdout.startswith("differs: result.answer (run 42, rerun 43)")
    assert _verdict(run_dir / "verify.0")["difference"] == {"key": "result.answer", "run": 42, "rerun": 43}


def test_a_metric_curve_that_differs_at_one_step_names_the_metric_and_the_step(run_dir, verify, project):
    write(project / "data.txt", "42 0.5\n")

    answer = verify(str(run_dir))

    assert answer.returncode == 1, answer.stderr
    assert answer.stdout.startswith("differs: metric loss at step 3 (run 0.25, rerun 0.5)")
    assert _verdict(run_dir / "verify.0")["difference"] == {"metric": "loss", "step": 3, "run": 0.25, "rerun": 0.5}


def test_tolerances_accept_a_small_difference_and_refuse_a_larger_one(run_dir, verify, project):
    write(project / "data.txt", "42 0.2501\n")

    exact = verify(str(run_dir))
    loose = verify(str(run_dir), "--atol", "0.001")
    relative = verify(str(run_dir), "--rtol", "0.01")
    too_tight = verify(str(run_dir), "--rtol", "0.0001")

    assert exact.returncode == 1 and exact.stdout.startswith("differs: metric loss at step 3")
    assert loose.returncode == 0 and loose.stdout.startswith("within tolerance: ")
    assert relative.returncode == 0 and _verdict(run_dir / "verify.2")["verdict"] == "within tolerance"
    assert too_tight.returncode == 1


def test_an_environment_that_cannot_be_matched_is_said_so(run_dir, verify):
    frozen = run_dir / "frozen_requirements.txt"
    frozen.write_text(frozen.read_text() + "-e file:///no/such/folder  # editable gone==1.0\n")

    answer = verify(str(run_dir))

    assert answer.returncode == 1
    assert answer.stdout.startswith("environment differs: ") and "/no/such/folder" in answer.stdout
    assert _verdict(run_dir / "verify.0")["verdict"] == "environment differs"


def test_a_debug_run_and_a_folder_that_is_not_a_run_are_refused_in_one_line(project, expyrun, verify):
    write(project / "cfg.yml", RUN_SECTION)
    assert expyrun("cfg.yml", "--debug").returncode == 0
    debug_run = project / "outputs" / "DEBUG" / "demo" / "exp.0"
    (project / "empty").mkdir()

    refused = verify(str(debug_run))
    not_a_run = verify("empty")
    bad_tolerance = verify(str(debug_run), "--rtol", "-1")

    assert refused.returncode == 2 and "has no code snapshot" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    assert not list(debug_run.glob("verify.*"))
    assert not_a_run.returncode == 2 and "not a run folder" in not_a_run.stderr
    assert bad_tolerance.returncode == 2


def test_an_environment_without_expyrun_cannot_rerun_the_run_and_is_said_so(run_dir, verify):
    (run_dir / "frozen_requirements.txt").write_text("pyyaml\n")  # as a `__python__` tool's interpreter freezes

    answer = verify(str(run_dir))

    assert answer.returncode == 1
    assert answer.stdout.startswith("environment differs: ") and "could not execute the run" in answer.stdout
    assert json.loads((run_dir / "verify.0" / "run.json").read_text())["status"] == "queued"


TOOL_READING = """\
import os
import pathlib


def main(name, config):
    return {"answer": int(pathlib.Path(os.environ["EXPYRUN_CWD"], "data.txt").read_text().split()[0])}
"""


def tool_run(project: Path, expyrun, *venv_options: str) -> tuple[Path, Path]:
    """A run of `TOOL_READING` under `__run__.__python__`: a venv in which expyrun is not installed;
    the venv and the run folder."""
    venv = project.parent / "tool-venv"
    subprocess.run([sys.executable, "-m", "venv", *venv_options, "--without-pip", str(venv)],
                   check=True, env=clean_env())  # fmt: skip
    write(project / "pkg" / "main.py", TOOL_READING)
    write(project / "data.txt", "42 0.25\n")
    write(project / "cfg.yml", RUN_SECTION + f"  __python__: {venv}\n")
    launched = expyrun("cfg.yml")
    assert launched.returncode == 0, launched.stderr
    return venv, project / "outputs" / "demo" / "exp.0"


def test_a_tool_interpreter_run_reruns_in_its_own_interpreter_when_it_still_matches(project, expyrun, verify):
    venv, run_dir = tool_run(project, expyrun, "--system-site-packages")  # as a tool's environment often is

    answer = verify(str(run_dir))

    assert answer.returncode == 0, answer.stdout + answer.stderr
    assert answer.stdout.startswith("identical: "), answer.stdout
    verdict = _verdict(run_dir / "verify.0")
    assert verdict["environment"] == {"python": str(venv / "bin" / "python"), "cached": True, "run_interpreter": True}
    assert "building an environment" not in answer.stderr
    rerun = json.loads((run_dir / "verify.0" / "run.json").read_text())
    assert rerun["python"]["executable"] == str(venv / "bin" / "python") and rerun["result"]["answer"] == 42


def test_a_tool_interpreter_that_changed_since_is_replaced_by_an_environment_matching_the_run(project, expyrun, verify):
    venv, run_dir = tool_run(project, expyrun)  # (no system packages: the environment builds offline, at once)
    site = next((venv / "lib").glob("python*/site-packages"))
    write(site / "extra-1.0.dist-info" / "METADATA", "Metadata-Version: 2.1\nName: extra\nVersion: 1.0\n\n")

    answer = verify(str(run_dir))

    assert answer.returncode == 0, answer.stdout + answer.stderr
    assert answer.stdout.startswith("identical: "), answer.stdout
    assert "no longer matches its requirements (1 differences)" in answer.stderr
    environment = _verdict(run_dir / "verify.0")["environment"]
    assert environment["run_interpreter"] is False and not environment["python"].startswith(str(venv))
    rerun = json.loads((run_dir / "verify.0" / "run.json").read_text())
    assert rerun["python"]["executable"] == environment["python"] and rerun["result"]["answer"] == 42
    assert "extra==1.0" not in (run_dir / "verify.0" / "frozen_requirements.txt").read_text()
