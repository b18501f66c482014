"""`expyrun list / show / diff / env` on real run folders made by the launcher."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys

import pytest
from conftest import RUN_SECTION, clean_env, run_in_terminal, start_expyrun, write

from expyrun.text.table import render


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


def _on_colour_terminal(monkeypatch, args, cwd):
    """What `expyrun` shows on a colour terminal, lines without `\\r`, and those lines without escapes."""
    monkeypatch.setenv("TERM", "xterm-256color")
    monkeypatch.delenv("NO_COLOR", raising=False)
    code, shown = run_in_terminal(args, cwd)
    lines = shown.decode().replace("\r\n", "\n").splitlines()
    return code, lines, [re.sub(r"\x1b\[[0-9;]*m", "", line) for line in lines]


def test_list_on_a_terminal_shows_an_aligned_table_with_failures_in_red(runs, monkeypatch):
    code, lines, plain = _on_colour_terminal(monkeypatch, ["list", str(runs)], runs.parent)
    assert code == 0, "\n".join(lines)
    assert plain[0].split() == ["run", "status", "started", "duration", "commit", "result", "differs"]
    assert lines[0].startswith("\x1b[1m")  # a bold header
    assert [line.split()[0] for line in plain[1:-1]] == ["demo/exp.0", "demo/exp.1", "demo/exp.2"]
    assert plain[-1] == f"3 runs in {runs}"
    column = {name: plain[0].index(name) for name in ("status", "result", "differs")}
    expected = [
        ("completed", "1", "lr=0.1 fail=false"),
        ("completed", "5", "lr=0.5 fail=false"),
        ("failed", "-", "lr=0.1 fail=true"),
    ]
    for row, (status, result, differs) in zip(plain[1:-1], expected, strict=True):
        for start, value in zip(column.values(), (status, result, differs), strict=True):
            assert row[start - 1] == " " and row[start:].split("  ")[0] == value, (row, value)
    assert lines[3].startswith("\x1b[31m") and lines[3].endswith("\x1b[0m")  # the failed run in red
    assert "\x1b[" not in lines[1] + lines[2] + lines[-1]


def test_list_on_a_terminal_does_not_import_rich(runs, monkeypatch):
    """The table is plain text with escapes: importing rich alone would cost a fifth of the 1 s budget.

    `python -m` puts the working folder first on `sys.path`, so this `rich` shadows the real one.
    """
    write(runs.parent / "rich.py", "import os\nos._exit(99)\n")
    code, lines, plain = _on_colour_terminal(monkeypatch, ["list", str(runs)], runs.parent)
    assert code == 0 and plain[-1] == f"3 runs in {runs}", "\n".join(lines)


def test_table_aligns_wide_characters_escapes_controls_and_wraps_the_last_column():
    text = render(
        ["run", "status", "differs"],
        [["実験/exp.0", "failed", "a=1 b=2 c=3 d=4 eeeeeeeeee=5"], ["x\ny", "completed", ""]],
        ["red", None],
        colour=True,
        width=45,
    )
    assert text.splitlines() == [  # columns: 10 + 2, 9 + 2, then 22 left for `differs`
        "\x1b[1mrun         status     differs\x1b[0m",
        "\x1b[31m実験/exp.0  failed     a=1 b=2 c=3 d=4",
        " " * 23 + "eeeeeeeeee=5\x1b[0m",
        "x\\ny        completed",
    ]


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


@pytest.mark.parametrize("tool", ["uv", "pip-tools"])
def test_env_venv_restores_a_small_requirements_set(runs, expyrun, tmp_path, tool):
    if not _index_reachable():
        pytest.skip("the package index is unreachable: cannot install six for the restore test")
    run_dir = runs / "demo" / "exp.0"
    frozen = run_dir / "frozen_requirements.txt"
    frozen.chmod(0o644)
    frozen.write_text("six==1.16.0\n-e file:///nonexistent/project  # editable ghost==0.1\n")
    venv = tmp_path / "venv"
    env = {**clean_env(), "EXPYRUN_ENV_TOOL": tool}
    result = expyrun("env", str(run_dir), "--venv", str(venv), env=env)
    assert result.returncode == 0, result.stderr
    assert f"with {'uv pip sync' if tool == 'uv' else 'pip-sync'}" in result.stderr, result.stderr
    assert "could not restore" in result.stderr and "ghost" in result.stderr
    python = venv / "bin" / "python"
    version = subprocess.run([str(python), "-c", "import six; print(six.__version__)"], capture_output=True, text=True)
    assert version.stdout.strip() == "1.16.0"
    (tmp_path / "junk").mkdir()
    write(tmp_path / "junk" / "pyproject.toml", '[project]\nname = "junkpkg"\nversion = "0.1"\n')
    write(tmp_path / "junk" / "junkpkg.py", "")
    pip = [sys.executable, "-m", "pip", "--python", str(python)]  # a venv uv made has no pip of its own
    subprocess.run([*pip, "install", "-q", str(tmp_path / "junk")], check=True)
    assert expyrun("env", str(run_dir), "--venv", str(venv), env=env).returncode == 0
    listed = subprocess.run([*pip, "list"], capture_output=True, text=True).stdout.lower()
    assert "junkpkg" not in listed and "six" in listed


@pytest.mark.parametrize("tool", ["uv", "pip-tools"])
def test_env_venv_that_fails_leaves_no_half_made_venv(runs, expyrun, tmp_path, tool):
    run_dir = runs / "demo" / "exp.0"
    frozen = run_dir / "frozen_requirements.txt"
    frozen.chmod(0o644)
    frozen.write_text("expyrun-no-such-distribution==9.9.9\n")
    venv = tmp_path / "venv"
    result = expyrun("env", str(run_dir), "--venv", str(venv), env={**clean_env(), "EXPYRUN_ENV_TOOL": tool})
    assert result.returncode == 1, result.stderr
    tool_name = "uv pip sync" if tool == "uv" else "pip-sync"  # its own output above may hold a traceback
    assert result.stderr.splitlines()[-1] == f"expyrun: error: {tool_name} failed (exit 1) for {venv}", result.stderr
    assert f"removed the unfinished virtual environment {venv}" in result.stderr
    assert not venv.exists()


def test_env_refuses_a_folder_that_is_not_a_venv(runs, expyrun, tmp_path):
    result = expyrun("env", str(runs / "demo" / "exp.0"), "--venv", str(tmp_path))
    assert result.returncode == 2 and "not a virtual environment" in result.stderr
