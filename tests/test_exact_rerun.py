"""Rerunning a stored `config.yml` is exact (SPEC 3.6): the values the run received, the code of its
snapshot and the git state of that code; and the record of what ran says what really ran (untracked
code, one set of frozen requirements whatever way expyrun was started)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml
from conftest import RUN_SECTION, run_expyrun, write

ECHO = """\
def main(name, config):
    return config
"""
SHOWS_TOKEN = """\
def main(name, config):
    return {**config, "token_reversed": config["token"][::-1]}  # (the record hides the secret itself)
"""
GIT = ["git", "-c", "user.email=a@b", "-c", "user.name=a"]


def run_json(run_dir: Path) -> dict:
    return json.loads((run_dir / "run.json").read_text())


def git(project: Path, *args: str) -> str:
    return subprocess.run([*GIT, *args], cwd=project, check=True, capture_output=True, text=True).stdout.strip()


def commit_all(project: Path, message: str) -> str:
    git(project, "add", "-A")
    git(project, "commit", "-qm", message)
    return git(project, "rev-parse", "HEAD")


def test_a_stored_config_is_read_back_as_the_values_the_run_received(project, expyrun):
    write(project / "pkg" / "main.py", SHOWS_TOKEN)
    values = 'model: m\nliteral_env: "!P$HOME/x"\nliteral_ref: "!P{model}"\nfrom_env: $BRACES\ntoken: $MY_TOKEN\n'
    write(project / "c.yml", RUN_SECTION + values)
    first = expyrun("c.yml", env={"BRACES": "{model}", "MY_TOKEN": "first-secret"})
    assert first.returncode == 0, first.stderr
    original = project / "outputs" / "demo" / "exp.0"
    received = run_json(original)["result"]
    assert received["literal_env"] == "$HOME/x" and received["literal_ref"] == "{model}"
    assert received["from_env"] == "{model}"

    again = expyrun(str(original / "config.yml"), env={"MY_TOKEN": "second-secret"})
    assert again.returncode == 0, again.stderr
    rerun = project / "outputs" / "demo" / "exp.1"
    assert run_json(rerun)["result"] == {**received, "token_reversed": "terces-dnoces"}  # a secret is read again
    stored = yaml.safe_load((rerun / "config.yml").read_text())
    assert stored["literal_env"] == "$HOME/x" and stored["literal_ref"] == "{model}" and stored["token"] == "$MY_TOKEN"
    assert "second-secret" not in (rerun / "config.yml").read_text() + (rerun / "raw_config.yml").read_text()

    third = expyrun(str(rerun / "config.yml"), env={"MY_TOKEN": "third-secret"})  # a rerun of a rerun
    assert third.returncode == 0, third.stderr
    assert run_json(project / "outputs" / "demo" / "exp.2")["result"] == {**received, "token_reversed": "terces-driht"}


def test_an_override_of_a_stored_config_is_interpolated_and_the_rest_is_not(project, expyrun):
    write(project / "pkg" / "main.py", ECHO)
    write(project / "c.yml", RUN_SECTION + "model: m\nliteral: '!P{model}'\nnote: x\n")
    assert expyrun("c.yml").returncode == 0
    original = project / "outputs" / "demo" / "exp.0"
    result = expyrun(str(original / "config.yml"), "--note", "{model}-$LABEL", env={"LABEL": "b"})
    assert result.returncode == 0, result.stderr
    rerun = project / "outputs" / "demo" / "exp.1"
    assert run_json(rerun)["result"] == {"model": "m", "literal": "{model}", "note": "m-b"}
    again = expyrun(str(rerun / "raw_config.yml"), env={"LABEL": "c"})  # the raw file keeps the override's text
    assert again.returncode == 0, again.stderr
    assert run_json(project / "outputs" / "demo" / "exp.2")["result"]["literal"] == "{model}"


def test_a_rerun_records_the_original_run_and_the_git_state_of_its_snapshot(project, expyrun):
    write(project / "pkg" / "main.py", ECHO)
    write(project / ".gitignore", "outputs/\n")
    write(project / "c.yml", RUN_SECTION + "x: 1\n")
    git(project, "init", "-q")
    commit = commit_all(project, "first")
    assert expyrun("c.yml").returncode == 0
    original = project / "outputs" / "demo" / "exp.0"
    write(project / "pkg" / "main.py", ECHO + "# changed later\n")
    commit_all(project, "second")
    write(project / "pkg" / "main.py", ECHO + "# and not committed\n")

    result = expyrun(str(original / "config.yml"))
    assert result.returncode == 0, result.stderr
    rerun = project / "outputs" / "demo" / "exp.1"
    record = run_json(rerun)
    assert record["rerun_of"] == str(original)
    assert record["git"] == run_json(original)["git"] and record["git"]["commit"] == commit
    assert record["git"]["dirty"] is False and not (rerun / "git.diff").exists()
    assert "rerun_of" not in run_json(original)
    diff = expyrun("diff", str(original), str(rerun))
    assert diff.returncode == 0 and diff.stderr.split("# commit")[1].split()[0] == "(same)", diff.stderr


def test_a_rerun_of_a_dirty_run_keeps_its_state_and_its_diff(project, expyrun):
    write(project / "pkg" / "main.py", ECHO)
    write(project / ".gitignore", "outputs/\n")
    write(project / "c.yml", RUN_SECTION)
    git(project, "init", "-q")
    commit_all(project, "first")
    write(project / "pkg" / "main.py", ECHO + "# edited\n")
    assert expyrun("c.yml").returncode == 0
    original = project / "outputs" / "demo" / "exp.0"
    git(project, "checkout", "--", "pkg/main.py")  # the work tree is clean again

    assert expyrun(str(original / "raw_config.yml")).returncode == 0  # raw_config.yml runs the snapshot too
    rerun = project / "outputs" / "demo" / "exp.1"
    assert run_json(rerun)["git"]["dirty"] is True and run_json(rerun)["rerun_of"] == str(original)
    assert (rerun / "git.diff").read_bytes() == (original / "git.diff").read_bytes()


def test_untracked_files_of_the_snapshotted_code_make_the_state_dirty_and_are_in_git_diff(project, expyrun):
    write(project / "pkg" / "main.py", ECHO)
    write(project / ".gitignore", "outputs/\n*.local\n")
    write(project / "c.yml", RUN_SECTION)
    git(project, "init", "-q")
    commit_all(project, "first")
    write(project / "pkg" / "helper.py", "VALUE = 'untracked'\n")
    write(project / "pkg" / "notes.local", "ignored by git: neither copied nor in the diff\n")
    write(project / "scratch.txt", "untracked, but not part of the code that runs\n")

    assert expyrun("c.yml").returncode == 0
    run_dir = project / "outputs" / "demo" / "exp.0"
    assert run_json(run_dir)["git"]["dirty"] is True
    diff = (run_dir / "git.diff").read_text()
    assert "+++ b/pkg/helper.py" in diff and "VALUE = 'untracked'" in diff
    assert "notes.local" not in diff and "scratch.txt" not in diff
    clone = project.parent / "clone"  # the diff recreates the code that ran on the recorded commit
    subprocess.run(["git", "clone", "-q", str(project), str(clone)], check=True)
    subprocess.run(["git", "apply", str(run_dir / "git.diff")], cwd=clone, check=True)
    assert (clone / "pkg" / "helper.py").read_text() == "VALUE = 'untracked'\n"


def test_code_never_committed_is_dirty(project, expyrun):
    write(project / "c.yml", RUN_SECTION)
    git(project, "init", "-q")
    assert expyrun("c.yml").returncode == 0
    run_dir = project / "outputs" / "demo" / "exp.0"
    assert run_json(run_dir)["git"]["dirty"] is True and "+++ b/pkg/main.py" in (run_dir / "git.diff").read_text()


def test_python_m_expyrun_and_the_expyrun_script_freeze_the_same_requirements(project):
    """A project's own `*.egg-info` in the launch folder is not an installed distribution."""
    write(project / "expyrun.egg-info" / "PKG-INFO", "Metadata-Version: 2.1\nName: expyrun\nVersion: 9.9.9\n")
    write(project / "c.yml", RUN_SECTION)
    assert run_expyrun(["c.yml"], project).returncode == 0  # python -m expyrun
    script = Path(sys.executable).parent / "expyrun"
    result = subprocess.run([str(script), "c.yml"], cwd=project, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    by_module, by_script = ((project / "outputs" / "demo" / f"exp.{i}" / "frozen_requirements.txt") for i in (0, 1))
    assert "9.9.9" not in by_module.read_text()
    assert by_module.read_text() == by_script.read_text()


def test_a_trial_config_reruns_with_the_values_the_trial_received(project, expyrun):
    write(project / "pkg" / "main.py", """\
        import expyrun
        def main(name, config):
            if expyrun.trial() is not None:
                return config["x"] ** 2
            return config
        """)  # fmt: skip
    study = "__optuna__:\n  n_trials: 1\n  search_space:\n    x: {type: float, low: 1, high: 2}\n"
    write(project / "c.yml", RUN_SECTION + "x: 0.0\nlabel: '!Px={x}'\nwhere: 'x={x}'\n" + study)
    assert expyrun("c.yml").returncode == 0
    trial_dir = project / "outputs" / "demo" / "exp.0" / "trials" / "trial.0"
    x = run_json(trial_dir)["trial"]["params"]["x"]
    result = expyrun(str(trial_dir / "config.yml"))
    assert result.returncode == 0, result.stderr
    received = run_json(project / "outputs" / "demo" / "exp.1")["result"]
    assert received["x"] == x and received["label"] == "x={x}" and received["where"] == f"x={x}"


def test_a_project_holding_its_own_run_json_is_not_taken_for_a_rerun(project, expyrun):
    write(project / "run.json", json.dumps({"git": {"commit": "not this one", "dirty": False}}))
    write(project / "config.yml", "mine: true\n")
    write(project / ".gitignore", "outputs/\n")
    write(project / "c.yml", RUN_SECTION)
    git(project, "init", "-q")
    commit = commit_all(project, "first")
    assert expyrun("c.yml").returncode == 0
    record = run_json(project / "outputs" / "demo" / "exp.0")
    assert "rerun_of" not in record and record["git"]["commit"] == commit
