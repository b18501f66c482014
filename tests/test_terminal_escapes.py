"""Escape sequences in config values, names and a run's exception text never reach the user's
terminal through what expyrun prints: they are shown as text (`\\x1b]0;...`), on a real pty.

expyrun's own colours and progress bar use a few CSI sequences (colour, cursor, erase line); any
other ESC byte on the terminal, an OSC (`ESC ]0;` retitles the window), `ESC [2J` (clears the
screen), BEL or the one-byte C1 CSI came from data. The runs' own output (their prints and
tracebacks) is theirs to write, as when run without expyrun: the entry points here send their
tracebacks elsewhere so that only what expyrun prints is on the terminal."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator

import pytest
from conftest import RUN_SECTION, run_expyrun, run_in_terminal, write
from slurm_cluster import SlurmCluster, unavailable

HOSTILE_YAML = r'"\e]0;pwned-title\a \e[2J \x9b2J"'  # YAML double-quoted: ESC, BEL, the C1 CSI
SHOWN_AS = rb"\x1b]0;pwned-title\x07 \x1b[2J \x9b2J"  # what the user should read instead
OURS = re.compile(rb"\x1b\[\??[0-9;]*[mABCDGKhl]")  # colour, cursor moves and show/hide, erase line

FAILING = """
import io
import sys


def main(name, config):
    sys.stderr = io.StringIO()  # the traceback is the run's own output: kept off the terminal
    if config["fail"]:
        raise RuntimeError("boom: " + config["text"])
    return {"loss": 1.0}
"""

OBJECTIVE = """
def main(name, config):
    return (config["x"] - 1) ** 2
"""


def data_escapes(shown: bytes) -> list[bytes]:
    """ESC, BEL and C1 CSI bytes on the terminal that are not expyrun's own sequences, in context."""
    rest = OURS.sub(b"", shown)
    return [rest[max(0, m.start() - 30) : m.end() + 30] for m in re.finditer(rb"\x1b|\x07|\xc2\x9b", rest)]


def test_sweep_values_and_a_runs_exception_text_are_shown_escaped_on_a_terminal(project):
    write(project / "pkg" / "main.py", FAILING)
    write(
        project / "sweep.yml",
        RUN_SECTION
        + f"fail: false\ntext: {HOSTILE_YAML}\n__sweep__:\n  grid:\n    fail: [false, true]\n"
        + f"    text: [{HOSTILE_YAML}]\n",
    )
    code, shown = run_in_terminal(["sweep.yml"], project)
    assert code == 1, shown.decode(errors="replace")
    assert data_escapes(shown) == [], shown.decode(errors="replace")
    assert shown.count(SHOWN_AS) >= 3, shown.decode(errors="replace")  # both points' values, the exception
    assert b"point 1 failed (RuntimeError: boom: " + SHOWN_AS in shown
    log = project / "outputs" / "sweep" / "sweep.0" / "outputs.log"
    assert b"\x1b" not in log.read_bytes() and SHOWN_AS in log.read_bytes()  # `cat` shows the same lines


def test_a_single_runs_failure_and_dry_run_explain_show_escapes_as_text(project):
    write(project / "pkg" / "main.py", FAILING)
    write(project / "run.yml", RUN_SECTION + f"fail: true\ntext: {HOSTILE_YAML}\n")
    code, shown = run_in_terminal(["run.yml"], project)
    assert code == 1, shown.decode(errors="replace")
    assert data_escapes(shown) == [] and SHOWN_AS in shown, shown.decode(errors="replace")
    code, shown = run_in_terminal(["run.yml", "--explain"], project)
    assert code == 0, shown.decode(errors="replace")
    assert data_escapes(shown) == [], shown.decode(errors="replace")


def test_env_check_shows_a_runs_requirement_names_escaped(project):
    write(project / "run.yml", RUN_SECTION + "x: 1\n")
    assert run_expyrun(["run.yml"], project).returncode == 0
    frozen = project / "outputs" / "demo" / "exp.0" / "frozen_requirements.txt"
    with frozen.open("a", encoding="utf-8") as requirements:  # a run folder received from someone else
        requirements.write("evil\x1b]0;pwned-title\x07pkg==1.0\n")
    code, shown = run_in_terminal(["env", str(frozen.parent), "--check"], project)
    assert code == 1, shown.decode(errors="replace")
    assert data_escapes(shown) == [], shown.decode(errors="replace")
    assert rb"- evil\x1b]0;pwned-title\x07pkg==1.0" in shown, shown.decode(errors="replace")


def study_config(objective: str, study_name: str = HOSTILE_YAML) -> str:
    return (
        RUN_SECTION.replace("demo", "tune")
        + f"""\
x: 0.0
__optuna__:
  study_name: {study_name}
  n_trials: 3
  objectives: {{{objective}: minimize}}
  sampler: {{name: RandomSampler, seed: 0}}
  search_space:
    x: {{type: float, low: -2, high: 2}}
"""
    )


def test_a_study_whose_names_hold_escapes_and_markup_completes_on_a_terminal(project):
    write(project / "pkg" / "main.py", OBJECTIVE)
    write(project / "markup.yml", study_config('"[/]"', "plain-name"))
    code, shown = run_in_terminal(["markup.yml"], project)
    assert code == 0, shown.decode(errors="replace")
    assert b"3/3" in shown and b"best [/]" in shown, shown.decode(errors="replace")
    study = json.loads((project / "outputs" / "tune" / "exp.0" / "study.json").read_text())
    assert study["counts"] == {"COMPLETE": 3}, study

    write(project / "escapes.yml", study_config(HOSTILE_YAML))
    code, shown = run_in_terminal(["escapes.yml"], project)
    assert code == 0, shown.decode(errors="replace")
    assert data_escapes(shown) == [], shown.decode(errors="replace")
    assert SHOWN_AS in shown  # the study's name in the progress bar and Optuna's log, the objective's in trial lines
    study = json.loads((project / "outputs" / "tune" / "exp.1" / "study.json").read_text())
    assert study["counts"] == {"COMPLETE": 3}, study


def test_an_objective_named_like_markup_completes_in_a_pipe_too(project):
    write(project / "pkg" / "main.py", OBJECTIVE)
    write(project / "markup.yml", study_config('"[bold red]loss[/]"', "plain-name"))
    result = run_expyrun(["markup.yml"], project)
    assert result.returncode == 0, result.stderr
    assert "[bold red]loss[/]=" in result.stdout + result.stderr


@pytest.fixture(scope="module")
def slurm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlurmCluster]:
    """A one-node Slurm cluster for this module (skipped with the reason where Slurm cannot run)."""
    reason = unavailable()
    if reason is not None:
        pytest.skip(reason)
    cluster = SlurmCluster().start()
    try:
        yield cluster
    finally:
        cluster.command("scancel", "--user=root", check=False)
        cluster.stop()
        shutil.rmtree(cluster.folder, ignore_errors=True)


def test_slurm_progress_shows_a_failed_points_exception_escaped(project, slurm, monkeypatch):
    monkeypatch.setenv("SLURM_CONF", str(slurm.conf))
    write(project / "pkg" / "main.py", FAILING)
    grid = f"__sweep__:\n  grid:\n    fail: [false, true]\n    text: [{HOSTILE_YAML}]\n"
    launch = "__launch__:\n  launcher: slurm\n  wait: true\n"
    write(project / "c.yml", RUN_SECTION + f"fail: false\ntext: plain\n{grid}{launch}")
    code, shown = run_in_terminal(["c.yml"], project, timeout=180)
    assert code == 1, shown.decode(errors="replace")
    assert data_escapes(shown) == [], shown.decode(errors="replace")
    shown_line = b"point 1 failed (RuntimeError: boom: " + rb"\x1b]0;pwned-title\x07"  # rich wraps at 80 columns
    assert shown_line in shown, shown.decode(errors="replace")


def test_slurm_dry_run_shows_the_job_scripts_control_bytes_escaped(project, slurm, monkeypatch):
    monkeypatch.setenv("SLURM_CONF", str(slurm.conf))
    launch = f"__launch__:\n  launcher: slurm\n  slurm:\n    setup: [{HOSTILE_YAML}]\n"
    write(project / "c.yml", RUN_SECTION + "x: 1\n" + launch)
    code, shown = run_in_terminal(["c.yml", "--dry-run"], project)
    assert code == 0, shown.decode(errors="replace")
    assert data_escapes(shown) == [], shown.decode(errors="replace")
    assert SHOWN_AS in shown and b"#SBATCH" in shown, shown.decode(errors="replace")
    assert not (project / "outputs").exists()
