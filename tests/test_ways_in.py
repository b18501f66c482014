"""The ways in: the command line's table of commands, and the node entry `python -m expyrun.node FOLDER`
that executes a prepared run folder (Slurm's job script calls it; a queue and Ray will)."""

from __future__ import annotations

import contextlib
import gc
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import RUN_SECTION, clean_env, write

ATTEMPT_ENTRY_POINT = """\
import os


def main(name, config):
    print("attempt", os.environ.get("EXPYRUN_ATTEMPT"))
    return {"attempt": os.environ.get("EXPYRUN_ATTEMPT"), "x": config["x"]}
"""


def node(folder: Path | str, cwd: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """The real node entry, as a job script runs it."""
    return subprocess.run([sys.executable, "-m", "expyrun.node", str(folder), *extra], cwd=cwd, env=clean_env(),
                          capture_output=True, text=True, timeout=120, check=False)  # fmt: skip


def record(run_dir: Path) -> dict:
    return json.loads((run_dir / "run.json").read_text(encoding="utf-8"))


def ran_once(project: Path, expyrun) -> Path:
    """A completed local run of an entry point that returns the `EXPYRUN_ATTEMPT` it saw."""
    write(project / "pkg" / "main.py", ATTEMPT_ENTRY_POINT)
    write(project / "c.yml", RUN_SECTION + "x: 3\n")
    result = expyrun("c.yml")
    assert result.returncode == 0, result.stderr
    return project / "outputs" / "demo" / "exp.0"


def test_the_node_entry_executes_a_queued_folder_as_a_local_launch_would(project, expyrun):
    run_dir = ran_once(project, expyrun)
    data = record(run_dir)
    data.update(status="queued", result=None, ended_at=None)
    (run_dir / "run.json").write_text(json.dumps(data), encoding="utf-8")

    result = node(run_dir, project)

    assert result.returncode == 0, result.stderr
    after = record(run_dir)
    assert after["status"] == "completed", after
    assert after["attempt"] == 2, after  # the folder's second execution
    assert after["result"] == {"attempt": "2", "x": 3}, after
    assert "attempt 2" in (run_dir / "outputs.log").read_text(encoding="utf-8")
    assert "slurm" not in after and after.get("launcher") != "slurm", after  # no scheduler's hooks


def test_the_node_entry_does_not_execute_a_folder_that_already_ended(project, expyrun):
    run_dir = ran_once(project, expyrun)
    log = (run_dir / "outputs.log").read_text(encoding="utf-8")
    before = record(run_dir)

    result = node(run_dir, project)

    assert result.returncode == 0, result.stderr
    assert "already completed: not executed again" in result.stderr, result.stderr
    assert (run_dir / "outputs.log").read_text(encoding="utf-8") == log
    assert record(run_dir) == before


def test_the_node_entry_refuses_a_folder_that_is_not_a_prepared_run_in_one_line(project):
    (project / "empty").mkdir()

    result = node(project / "empty", project)

    assert result.returncode == 2
    assert result.stderr.count("\n") == 1, result.stderr
    assert "not a prepared run folder" in result.stderr, result.stderr
    assert list((project / "empty").iterdir()) == []


def test_the_node_entry_takes_exactly_one_folder(project):
    for args in ((), ("a", "b")):
        result = subprocess.run([sys.executable, "-m", "expyrun.node", *args], cwd=project, env=clean_env(),
                                capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
        assert result.returncode == 2
        assert "usage: python -m expyrun.node FOLDER" in result.stderr, result.stderr


def test_every_command_in_the_help_is_in_the_command_table_and_no_other(project, expyrun):
    from expyrun.cli import COMMANDS

    usage = expyrun("--help").stdout
    named = set(re.findall(r"^\s+expyrun ([a-z]+)", usage.split("\n\n")[0], re.MULTILINE))
    assert named - {"CONFIG"} == set(COMMANDS) - {"ls"}, usage
    assert "(alias: ls)" in usage


# Modules a plain launch must not import: each costs milliseconds (dataclasses: inspect, ast, dis) or
# belongs to another command (argparse, difflib) or feature (optuna, jinja2, plotly).
HEAVY = ("argparse", "optuna", "jinja2", "plotly", "difflib", "dataclasses", "inspect")
# Nor those only some launches need: a command written as one string (shlex), a GPU lease (fcntl),
# a command run or another interpreter (run.command), a snapshot file copied instead of linked or git
# (shutil, which loads bz2 and lzma); --debug freezes no requirements (run.freeze).
WHEN_NEEDED = ("shlex", "fcntl", "expyrun.execute.gpu_leases", "expyrun.run.command", "shutil")
# Nor those that find, query and show runs already made: browsing, not launching (nor the suggestions
# for a misspelt flag, when there is no option to check).
BROWSING = ("expyrun.browse", "expyrun.reading", "expyrun.commands.")


@pytest.mark.parametrize(
    ("flags", "unneeded"), [([], ()), (["--debug"], ("expyrun.run.freeze",))], ids=["run", "debug"]
)
def test_a_launch_imports_none_of_the_browsing_commands_argparse_optuna_or_templates(project, flags, unneeded):
    write(project / "c.yml", RUN_SECTION + "x: 3\n")
    result = subprocess.run([sys.executable, "-X", "importtime", "-m", "expyrun", "c.yml", *flags], cwd=project,
                            env=clean_env(), capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    assert result.returncode == 0, result.stderr
    imported = {line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines() if line.startswith("import ")}
    assert "expyrun.commands.launch" in imported, sorted(imported)  # (the table dispatched to it)
    heavy = {name for name in imported if name.split(".")[0] in HEAVY or name in (*WHEN_NEEDED, *unneeded)}
    browsing = {name for name in imported if name.startswith(BROWSING) and name != "expyrun.commands.launch"}
    assert not heavy and not browsing, sorted(heavy | browsing)


@pytest.mark.parametrize("args", [["c.yml", "--dry-run"], ["missing.yml"]], ids=["checked", "refused"])
def test_a_launch_collects_garbage_again_once_checked_and_leaves_a_callers_pause(project, monkeypatch, capsys, args):
    """The collector is paused while a launch imports and checks (what that made is then frozen), not
    for the run, sweep or study that follows; a caller that paused it finds it paused."""
    from expyrun.commands import launch
    from expyrun.errors import ExpyrunError

    write(project / "c.yml", RUN_SECTION + "x: 3\n")
    monkeypatch.chdir(project)
    during_check: list[bool] = []
    check = launch._check

    def watched_check(*arguments):
        during_check.append(gc.isenabled())
        return check(*arguments)

    monkeypatch.setattr(launch, "_check", watched_check)
    from expyrun.config import dump

    after_check: list[bool] = []
    dump_yaml = dump.dump_yaml  # what --dry-run does once the config is checked

    def watched_dump(*arguments):
        after_check.append(gc.isenabled())
        return dump_yaml(*arguments)

    monkeypatch.setattr(dump, "dump_yaml", watched_dump)
    try:
        for callers_pause in (False, True):
            if callers_pause:
                gc.disable()
            with contextlib.suppress(ExpyrunError):
                launch.main(args)
            assert gc.isenabled() is not callers_pause
            gc.enable()
    finally:
        gc.enable()
        gc.unfreeze()
    checked = args[0] == "c.yml"
    assert during_check == ([False, False] if checked else []) and after_check == ([True, False] if checked else [])
    capsys.readouterr()


def test_the_run_child_of_a_pure_python_entry_point_does_not_load_ctypes(project):
    """The run child asks libc to flush C stdio (through ctypes, ~2 ms) only when the run loaded native
    code: not for an extension module that the launcher loaded after the exit steps' module."""
    write(project / "pkg" / "main.py", "def main(name, config):\n    import colorsys  # (pure Python)\n")
    write(project / "c.yml", RUN_SECTION + "x: 3\n")
    result = subprocess.run([sys.executable, "-X", "importtime", "-m", "expyrun", "c.yml", "--debug"], cwd=project,
                            env=clean_env(), capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    assert result.returncode == 0, result.stderr
    log = (project / "outputs" / "DEBUG" / "demo" / "exp.0" / "outputs.log").read_text(encoding="utf-8")
    child_imported = {line.rsplit("|", 1)[-1].strip() for line in log.splitlines() if line.startswith("import ")}
    assert "colorsys" in child_imported, log  # (the child's own imports are in its log)
    assert "ctypes" not in child_imported, log


def test_a_file_named_like_a_command_is_launched_as_a_config(project, expyrun):
    write(project / "show", RUN_SECTION + "x: 3\n")

    result = expyrun("show", "--dry-run")

    assert result.returncode == 0, result.stderr
    assert "x: 3" in result.stdout


def test_each_sweep_point_records_where_its_own_values_came_from(project, expyrun):
    """A resolved config is not changed after resolution: a point's provenance is its own, so a key
    an earlier variant swept is read from the file in the next point (it was `sweep` for every later
    point while the points shared one provenance)."""
    write(project / "c.yml", RUN_SECTION + "x: 1\ny: 2\n__sweep__:\n  variants:\n    a: {x: 10}\n    b: {y: 20}\n")

    result = expyrun("c.yml")

    assert result.returncode == 0, result.stderr
    a, b = (record(project / "outputs" / "demo" / f"exp.{index}") for index in (0, 1))
    assert "provenance" in a, sorted(a)  # run.json says where each value came from (SPEC 12.3)
    assert a["sweep"]["variant"] == "a" and b["sweep"]["variant"] == "b"
    assert (a["provenance"]["x"], a["provenance"]["y"]) == ("sweep", "c.yml:6"), a["provenance"]
    assert (b["provenance"]["x"], b["provenance"]["y"]) == ("c.yml:5", "sweep"), b["provenance"]
    assert b["config"] == {"x": 1, "y": 20}, b["config"]


def test_a_python_run_folder_names_itself_as_the_code_and_still_runs_the_snapshot(project, expyrun):
    write(project / "c.yml", RUN_SECTION + "x: 3\n")

    result = expyrun("c.yml")

    assert result.returncode == 0, result.stderr
    run_dir = project / "outputs" / "demo" / "exp.0"
    assert f"__code__: {run_dir}" in (run_dir / "config.yml").read_text(encoding="utf-8")
    rerun = expyrun(str(run_dir / "config.yml"))
    assert rerun.returncode == 0, rerun.stderr
    assert record(project / "outputs" / "demo" / "exp.1")["status"] == "completed"


def test_a_study_submitted_to_slurm_is_checked_by_the_command_before_anything_exists(project, expyrun):
    """The study's checks on Slurm (the driver's own, a storage every node reaches) are the launch
    command's: the Slurm executor imports nothing of studies."""
    study = ("__optuna__:\n  storage: postgresql://u@localhost/db\n  n_trials: 2\n  direction: minimize\n"
             "  search_space:\n    x: {type: float, low: 0, high: 1}\n__launch__:\n  launcher: slurm\n")  # fmt: skip
    write(project / "c.yml", RUN_SECTION + "x: 1\n" + study)

    result = expyrun("c.yml", "--dry-run")

    assert result.returncode == 0, result.stderr
    assert "names localhost: each Slurm job reaches its own node's localhost" in result.stderr, result.stderr
    assert "-m expyrun.node" in result.stdout  # the job script calls the node entry
    assert not (project / "outputs").exists()
    bad = study.replace("  direction: minimize\n", "  direction: sideways\n")
    write(project / "c.yml", RUN_SECTION + "x: 1\n" + bad)
    refused = expyrun("c.yml", "--dry-run")
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1, refused.stderr
    assert not (project / "outputs").exists()
