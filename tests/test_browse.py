"""`expyrun list / show / diff / env` on real run folders made by the launcher."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import pytest
from conftest import RUN_SECTION, start_expyrun, write


def launch(expyrun, *args, env=None):
    result = expyrun(*args, env=env)
    assert result.returncode in (0, 1), result.stderr
    return result


@pytest.fixture
def runs(project, expyrun):
    write(
        project / "pkg" / "main.py",
        """
        def main(name, config):
            if config["fail"]:
                raise RuntimeError("boom")
            print("log line", config["lr"])
            return config["lr"] * 10
        """,
    )
    write(project / "c.yml", RUN_SECTION + "lr: 0.1\nfail: false\nlayers: [1, 2]\n")
    launch(expyrun, "c.yml")
    launch(expyrun, "c.yml", "--lr", "0.5")
    launch(expyrun, "c.yml", "--fail", "true")
    return project / "outputs"


def test_list_json_has_one_object_per_run_with_differences(runs, expyrun):
    result = expyrun("list", str(runs), "--json")
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [row["path"] for row in rows] == ["demo/exp.0", "demo/exp.1", "demo/exp.2"]
    assert [row["status"] for row in rows] == ["completed", "completed", "failed"]
    assert rows[1]["result"] == 5.0
    assert rows[0]["differs"] == {"lr": 0.1, "fail": False} and rows[2]["differs"] == {"lr": 0.1, "fail": True}


def test_list_table_for_people(runs, expyrun):
    result = expyrun("ls", str(runs))
    assert result.returncode == 0 and result.stdout == ""
    lines = result.stderr.splitlines()
    assert lines[0].split()[:2] == ["run", "status"]
    row = next(line for line in lines if line.startswith("demo/exp.1"))
    assert "completed" in row and "lr=0.5" in row and "fail=false" in row and "5" in row
    assert "3 runs" in lines[-1]


def test_list_says_died_for_a_killed_launcher(project, expyrun):
    write(project / "pkg" / "main.py", "import time\ndef main(name, config):\n    time.sleep(60)\n")
    write(project / "c.yml", RUN_SECTION)
    process = start_expyrun(["c.yml"], project)
    record = project / "outputs" / "demo" / "exp.0" / "run.json"
    while not record.exists() or "running" not in record.read_text():
        assert process.poll() is None
    rows = [json.loads(line) for line in expyrun("list", "outputs", "--json").stdout.splitlines()]
    assert rows[0]["status"] == "running"
    process.send_signal(signal.SIGKILL)
    process.wait()
    rows = [json.loads(line) for line in expyrun("list", "outputs", "--json").stdout.splitlines()]
    assert rows[0]["status"] == "died"


def test_show_prints_metadata_config_and_log_tail(runs, expyrun):
    result = expyrun("show", str(runs / "demo" / "exp.1"))
    assert result.returncode == 0
    assert "completed" in result.stderr and "lr: 0.5" in result.stderr and "log line 0.5" in result.stderr
    failed = expyrun("show", str(runs / "demo" / "exp.2"))
    assert "RuntimeError" in failed.stderr and "boom" in failed.stderr


def test_diff_shows_config_requirements_and_commit(runs, expyrun):
    second = runs / "demo" / "exp.1"
    frozen = second / "frozen_requirements.txt"
    frozen.chmod(0o644)
    frozen.write_text(frozen.read_text() + "zz-extra-package==1.0\n")
    result = expyrun("diff", str(runs / "demo" / "exp.0"), str(second))
    assert result.returncode == 0
    assert "~ lr: 0.1 -> 0.5" in result.stderr
    assert "+ zz-extra-package==1.0" in result.stderr
    assert "__code__" not in result.stderr


def test_browse_errors_are_one_line_exit_2(project, expyrun):
    for args in (["show", "nowhere"], ["diff", "a"], ["list", "missing-dir"], ["env", "nowhere"], ["show"]):
        result = expyrun(*args)
        assert result.returncode == 2, args
        assert len(result.stderr.splitlines()) == 1 and "Traceback" not in result.stderr


def test_env_check_reports_drift_with_exit_1(runs, expyrun):
    run_dir = runs / "demo" / "exp.0"
    assert expyrun("env", str(run_dir), "--check").returncode == 0
    frozen = run_dir / "frozen_requirements.txt"
    frozen.chmod(0o644)
    frozen.write_text(frozen.read_text().replace("PyYAML==", "PyYAML==0.1.0\n#") + "ghost-pkg==2.0\n")
    result = expyrun("env", str(run_dir), "--check")
    assert result.returncode == 1
    assert "- ghost-pkg==2.0" in result.stdout and "PyYAML==0.1.0 -> PyYAML==" in result.stdout


def _index_reachable() -> bool:
    probe = subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--dest", "/tmp/expyrun-probe", "six==1.16.0"],
        capture_output=True,
        check=False,
        timeout=120,
    )
    return probe.returncode == 0


def test_env_venv_restores_a_small_requirements_set(runs, expyrun, tmp_path):
    if not _index_reachable():
        pytest.skip("the package index is unreachable: cannot install six for the restore test")
    run_dir = runs / "demo" / "exp.0"
    frozen = run_dir / "frozen_requirements.txt"
    frozen.chmod(0o644)
    frozen.write_text("six==1.16.0\n-e file:///nonexistent/project  # editable ghost==0.1\n")
    venv = tmp_path / "venv"
    result = expyrun("env", str(run_dir), "--venv", str(venv))
    assert result.returncode == 0, result.stderr
    assert "could not restore" in result.stderr and "ghost" in result.stderr
    python = venv / "bin" / "python"
    version = subprocess.run([str(python), "-c", "import six; print(six.__version__)"], capture_output=True, text=True)
    assert version.stdout.strip() == "1.16.0"
    (tmp_path / "junk").mkdir()
    write(tmp_path / "junk" / "pyproject.toml", '[project]\nname = "junkpkg"\nversion = "0.1"\n')
    write(tmp_path / "junk" / "junkpkg.py", "")
    subprocess.run([str(python), "-m", "pip", "install", "-q", str(tmp_path / "junk")], check=True)
    assert expyrun("env", str(run_dir), "--venv", str(venv)).returncode == 0
    listed = subprocess.run([str(python), "-m", "pip", "list"], capture_output=True, text=True).stdout.lower()
    assert "junkpkg" not in listed and "six" in listed


def test_env_refuses_a_folder_that_is_not_a_venv(runs, expyrun, tmp_path):
    result = expyrun("env", str(runs / "demo" / "exp.0"), "--venv", str(tmp_path))
    assert result.returncode == 2 and "not a virtual environment" in result.stderr
