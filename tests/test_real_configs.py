"""Material no one here wrote: config patterns of public projects that use expyrun, and a user's environment.

The configs below follow what raphaelreme/koft, raphaelreme/SINETRA and bia-pasteur/visual_mht do
(parents named `../default/...`, `__new_key_policy__: pass`, `$EXPYRUN_CWD/dataset/...` mixed with
self references, a name built from two keys); the texts are ours.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import yaml
from conftest import RUN_SECTION, clean_env, files_under, write

TRACK = """\
__new_key_policy__: pass
__default__:
  - ../default/common.yml
  - ../default/data.yml
__run__:
  __main__: pkg.main:main
  __name__: "{simulation_name}/{method}"
  __output_dir__: $EXPERIMENT_DIR/tracking/
real_data: False
simulation_name: springs/100
method: skt
seed: 111
"""
COMMON = """\
seed: 0
device: cpu
"""
DATA = """\
data:
  video: $EXPYRUN_CWD/dataset/dupre/video.tif
  simulation_path: $EXPYRUN_CWD/dataset/{simulation_name}/{seed}
"""


def _track_project(project: Path) -> None:
    write(project / "config" / "track" / "simulator.yml", TRACK)
    write(project / "config" / "default" / "common.yml", COMMON)
    write(project / "config" / "default" / "data.yml", DATA)


def test_expyrun_cwd_is_set_before_the_config_is_read(project, expyrun):
    _track_project(project)
    result = expyrun("config/track/simulator.yml", "--seed", "7", env={"EXPERIMENT_DIR": str(project / "exp")})
    assert result.returncode == 0, result.stderr
    run_dir = project / "exp" / "tracking" / "springs" / "100" / "skt" / "exp.0"
    config = yaml.safe_load((run_dir / "config.yml").read_text())
    assert config["data"]["video"] == f"{project}/dataset/dupre/video.tif"
    assert config["data"]["simulation_path"] == f"{project}/dataset/springs/100/7"
    assert json.loads((run_dir / "run.json").read_text())["result"]["config"]["data"] == config["data"]


def test_a_stale_exported_expyrun_cwd_does_not_win(project, expyrun):
    _track_project(project)
    env = {"EXPERIMENT_DIR": str(project / "exp"), "EXPYRUN_CWD": "/stale/folder"}
    result = expyrun("config/track/simulator.yml", "--dry-run", env=env)
    assert result.returncode == 0, result.stderr
    assert yaml.safe_load(result.stdout)["data"]["video"] == f"{project}/dataset/dupre/video.tif"


def test_expyrun_run_dir_is_not_defined_while_resolving(project, expyrun):
    write(project / "c.yml", RUN_SECTION + "out: $EXPYRUN_RUN_DIR/x\n")
    result = expyrun("c.yml", env={"EXPYRUN_RUN_DIR": "/somewhere"})
    assert result.returncode == 2
    assert "EXPYRUN_RUN_DIR" in result.stderr and "Traceback" not in result.stderr
    assert not (project / "outputs").exists()


def test_c_stdio_and_no_bytecode_without_the_developers_variables(project, expyrun):
    """Users have neither PYTHONUNBUFFERED nor PYTHONDONTWRITEBYTECODE (the fixture strips them)."""
    assert "PYTHONUNBUFFERED" not in os.environ and "PYTHONDONTWRITEBYTECODE" not in os.environ
    write(project / "pkg" / "helpers.py", "VALUE = 3\n")
    write(
        project / "pkg" / "main.py",
        """\
        import ctypes
        from pkg import helpers

        def main(name, config):
            libc = ctypes.CDLL(None)
            libc.printf(b"C printf %d\\n", helpers.VALUE)
            libc.puts(b"C puts")
            return helpers.VALUE
        """,
    )
    write(project / "c.yml", RUN_SECTION)
    result = expyrun("c.yml")
    assert result.returncode == 0, result.stderr
    run_dir = project / "outputs" / "demo" / "exp.0"
    assert (run_dir / "outputs.log").read_text() == "C printf 3\nC puts\n"
    assert "C printf 3\nC puts\n" in result.stdout
    assert not [name for name in files_under(run_dir) if "__pycache__" in name or name.endswith(".pyc")]


def test_numbers_on_the_command_line_read_as_people_write_them(project, expyrun):
    write(
        project / "c.yml",
        RUN_SECTION + "lr: null\nsteps: null\nbig: null\nlrs: []\nwhen: 2024-01-31\nat: 2024-01-31 10:00:00\n",
    )
    result = expyrun(
        "c.yml", "--dry-run", "--lr", "1e-4", "--steps", "010", "--big", "1_000", "--lrs", "1e-3,.5,010",
        "--when", "2025-02-01", "--at", "2025-02-01 12:30:00", "--+extra", "1E5",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    config = yaml.safe_load(result.stdout)
    assert config["lr"] == 0.0001 and config["steps"] == 10 and config["big"] == "1_000"
    assert config["lrs"] == [0.001, 0.5, 10] and config["extra"] == 100000.0
    assert str(config["when"]) == "2025-02-01" and str(config["at"]) == "2025-02-01 12:30:00"


def test_a_date_override_that_is_not_a_date_is_refused(project, expyrun):
    write(project / "c.yml", RUN_SECTION + "when: 2024-01-31\n")
    result = expyrun("c.yml", "--when", "tomorrow")
    assert result.returncode == 2
    assert "--when: expected a date, got 'tomorrow'" in result.stderr and "Traceback" not in result.stderr
    assert not (project / "outputs").exists()


def test_help_after_the_config(project, expyrun):
    write(project / "c.yml", RUN_SECTION)
    for flag in ("--help", "-h"):
        result = expyrun("c.yml", flag)
        assert result.returncode == 0 and result.stdout.startswith("usage: expyrun CONFIG")
    assert not (project / "outputs").exists()


def test_a_folder_is_not_a_config(project, expyrun):
    result = expyrun("pkg")
    assert result.returncode == 2
    assert result.stderr.strip() == "expyrun: error: pkg: is a folder, not a config file (name the YAML file inside it)"


def test_config_from_a_fifo(project, expyrun):
    write(project / "c.yml", RUN_SECTION + "a: 1\n")
    fifo = project / "config.fifo"
    os.mkfifo(fifo)

    def feed() -> None:
        with open(fifo, "w") as stream:
            stream.write((project / "c.yml").read_text())

    writer = threading.Thread(target=feed, daemon=True)
    writer.start()
    result = expyrun("config.fifo", "--a", "2")
    writer.join(timeout=30)
    assert result.returncode == 0, result.stderr
    assert yaml.safe_load((project / "outputs" / "demo" / "exp.0" / "config.yml").read_text())["a"] == 2


def test_config_from_process_substitution(project):
    write(project / "c.yml", RUN_SECTION + "a: 1\n")
    command = f"{sys.executable} -m expyrun <(cat c.yml) --dry-run"
    result = subprocess.run(
        ["bash", "-c", command], cwd=project, env=clean_env(), capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert yaml.safe_load(result.stdout)["a"] == 1
