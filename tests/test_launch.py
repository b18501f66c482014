"""The launcher seen from the command line: run folders, files, logs, signals, reproduction."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml
from conftest import RUN_SECTION, run_expyrun, start_expyrun, write


def run_json(run_dir: Path) -> dict:
    return json.loads((run_dir / "run.json").read_text())


def entry(project: Path, body: str, name: str = "main.py") -> None:
    write(project / "pkg" / name, body)


def test_run_folder_holds_everything(project, expyrun):
    write(project / "c.yml", RUN_SECTION + "lr: 0.1\nname: 'x{lr}'\napi: ${MY_API_KEY}\n")
    result = expyrun("c.yml", env={"MY_API_KEY": "hunter2"})
    assert result.returncode == 0, result.stderr
    run_dir = project / "outputs" / "demo" / "exp.0"
    assert {p.name for p in run_dir.iterdir()} >= {
        "config.yml",
        "raw_config.yml",
        "run.json",
        "outputs.log",
        "frozen_requirements.txt",
        "pkg",
    }
    config = yaml.safe_load((run_dir / "config.yml").read_text())
    raw = yaml.safe_load((run_dir / "raw_config.yml").read_text())
    assert config["name"] == "x0.1" and raw["name"] == "x{lr}"
    assert config["__run__"]["__code__"] == str(run_dir)
    assert config["__run__"]["__output_dir__"] == str(project / "outputs")
    for path in run_dir.rglob("*"):
        if path.is_file():
            assert b"hunter2" not in path.read_bytes(), path
    record = run_json(run_dir)
    assert record["status"] == "completed" and record["exit_code"] == 0
    assert record["result"]["config"]["api"] == "$MY_API_KEY"  # the entry point got it, run.json does not
    for key in (
        "name",
        "run_dir",
        "debug",
        "argv",
        "cwd",
        "host",
        "user",
        "pid",
        "python",
        "platform",
        "expyrun_version",
        "started_at",
        "ended_at",
        "duration_s",
        "git",
        "snapshot",
    ):
        assert key in record
    assert record["snapshot"]["files"] == 2 and len(record["snapshot"]["sha256"]) == 64
    assert "+" in record["started_at"] or "Z" in record["started_at"]
    assert "running demo" in (run_dir / "outputs.log").read_text()


def test_entry_point_receives_name_config_cwd_and_env(project, expyrun):
    entry(
        project,
        """
        import os
        def main(name, config):
            return {"name": name, "config": config, "cwd": os.getcwd(),
                    "env_cwd": os.environ["EXPYRUN_CWD"], "env_run": os.environ["EXPYRUN_RUN_DIR"],
                    "file": __file__}
        """,
    )
    write(project / "c.yml", RUN_SECTION + "a: {b: [1, {c: 2}]}\n")
    assert expyrun("c.yml").returncode == 0
    run_dir = project / "outputs" / "demo" / "exp.0"
    result = run_json(run_dir)["result"]
    assert result["name"] == "demo" and result["config"] == {"a": {"b": [1, {"c": 2}]}}
    assert result["cwd"] == str(run_dir) and result["env_run"] == str(run_dir)
    assert result["env_cwd"] == str(project)
    assert result["file"] == str(run_dir / "pkg" / "main.py")  # imported from the snapshot


def test_indices_follow_the_largest_and_debug_has_its_own_tree(project, expyrun):
    write(project / "c.yml", RUN_SECTION)
    (project / "outputs" / "demo" / "exp.7").mkdir(parents=True)
    assert expyrun("c.yml").returncode == 0
    assert (project / "outputs" / "demo" / "exp.8" / "run.json").exists()
    assert expyrun("c.yml", "--debug").returncode == 0
    debug_dir = project / "outputs" / "DEBUG" / "demo" / "exp.0"
    record = run_json(debug_dir)
    assert record["debug"] is True and record["snapshot"] is None
    assert record["argv"] == ["c.yml", "--debug"]
    assert not (debug_dir / "pkg").exists() and not (debug_dir / "frozen_requirements.txt").exists()


def test_concurrent_launches_get_distinct_folders(project):
    write(project / "c.yml", RUN_SECTION)
    with ThreadPoolExecutor(max_workers=32) as pool:
        results = list(pool.map(lambda _: run_expyrun(["c.yml"], project), range(32)))
    assert [r.returncode for r in results] == [0] * 32, [r.stderr for r in results if r.returncode]
    folders = sorted((project / "outputs" / "demo").iterdir())
    assert len(folders) == 32
    assert {f.name for f in folders} == {f"exp.{i}" for i in range(32)}
    assert all(run_json(f)["status"] == "completed" for f in folders)


def test_exception_fails_the_run_with_traceback(project, expyrun):
    entry(project, "def main(name, config):\n    raise ValueError('bad value 42')\n")
    write(project / "c.yml", RUN_SECTION)
    result = expyrun("c.yml")
    assert result.returncode == 1
    run_dir = project / "outputs" / "demo" / "exp.0"
    record = run_json(run_dir)
    assert record["status"] == "failed" and record["exit_code"] == 1
    assert record["exception"] == {"type": "ValueError", "message": "bad value 42"}
    log = (run_dir / "outputs.log").read_text()
    assert "Traceback" in log and "ValueError: bad value 42" in log
    assert "ValueError: bad value 42" in result.stderr
    # as `python` shows it: from the entry point's own frame, none of expyrun's that called it
    frames = [line for line in log.splitlines() if line.startswith("  File ")]
    assert len(frames) == 1 and str(run_dir / "pkg" / "main.py") in frames[0], log


def test_import_error_after_folder_exists_fails_the_run(project, expyrun):
    entry(project, "import not_a_module_xyz\ndef main(name, config):\n    return 1\n")
    write(project / "c.yml", RUN_SECTION)
    result = expyrun("c.yml")
    assert result.returncode == 1
    record = run_json(project / "outputs" / "demo" / "exp.0")
    assert record["status"] == "failed" and record["exception"]["type"] == "ModuleNotFoundError"


def test_stdout_and_stderr_from_everywhere_reach_the_log_and_stay_separate(project, expyrun):
    entry(
        project,
        """
        import ctypes, logging, os, subprocess, sys
        def main(name, config):
            print("from print")
            print("to stderr", file=sys.stderr)
            logging.getLogger("x").warning("from logging")
            os.write(1, b"from os.write\\n")
            ctypes.CDLL(None).puts(b"from C")
            subprocess.run([sys.executable, "-c", "print('from child')"], check=True)
            subprocess.run("echo from shell >&2", shell=True, check=True)
        """,
    )
    write(project / "c.yml", RUN_SECTION)
    result = expyrun("c.yml")
    assert result.returncode == 0, result.stderr
    log = (project / "outputs" / "demo" / "exp.0" / "outputs.log").read_text()
    for line in ("from print", "to stderr", "from logging", "from os.write", "from C", "from child", "from shell"):
        assert line in log
    assert "from print" in result.stdout and "from print" not in result.stderr
    assert "to stderr" in result.stderr and "to stderr" not in result.stdout
    assert "from shell" in result.stderr and "from child" in result.stdout


def test_segfault_is_a_failed_run_with_a_trace(project, expyrun):
    entry(
        project,
        """
        import ctypes
        def main(name, config):
            print("before crash", flush=True)
            ctypes.string_at(0)
        """,
    )
    write(project / "c.yml", RUN_SECTION)
    result = expyrun("c.yml")
    assert result.returncode == 1
    run_dir = project / "outputs" / "demo" / "exp.0"
    record = run_json(run_dir)
    assert record["status"] == "failed" and "SIGSEGV" in record["exception"]["message"]
    log = (run_dir / "outputs.log").read_text()
    assert "before crash" in log and "Fatal Python error" in log and "main.py" in log


def _launch_and_wait_for(project: Path, marker: str) -> tuple[subprocess.Popen, Path]:
    process = start_expyrun(["c.yml"], project)
    log = project / "outputs" / "demo" / "exp.0" / "outputs.log"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if log.exists() and marker in log.read_text():
            return process, log.parent
        time.sleep(0.05)
    process.kill()
    raise AssertionError(f"marker {marker!r} never reached the log")


SLEEPER = """
import subprocess, sys, time
def main(name, config):
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    open("child.pid", "w").write(str(child.pid))
    for i in range(1000):
        print(f"line {i}")
        if i == 50:
            print("READY")
        time.sleep(0.01 if i < 60 else 0.5)
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/status").exists() and "zombie" not in Path(f"/proc/{pid}/status").read_text()


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signals_stop_the_run_group_and_record_interrupted(project, signum, code):
    entry(project, SLEEPER)
    write(project / "c.yml", RUN_SECTION)
    process, run_dir = _launch_and_wait_for(project, "READY")
    grandchild = int((run_dir / "child.pid").read_text())
    process.send_signal(signum)
    process.communicate(timeout=30)
    assert process.returncode == code
    record = run_json(run_dir)
    assert record["status"] == "interrupted" and record["exit_code"] == code
    deadline = time.monotonic() + 5
    while _alive(grandchild) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(grandchild)
    assert "line 50" in (run_dir / "outputs.log").read_text()


def test_sigkill_loses_nothing_already_written(project):
    entry(project, SLEEPER)
    write(project / "c.yml", RUN_SECTION)
    process, run_dir = _launch_and_wait_for(project, "line 60")
    time.sleep(0.3)
    os.kill(process.pid, signal.SIGKILL)
    process.communicate(timeout=30)
    time.sleep(0.5)
    log = (run_dir / "outputs.log").read_text()
    printed = [line for line in log.splitlines() if line.startswith("line ")]
    assert printed == [f"line {i}" for i in range(len(printed))] and len(printed) >= 61
    assert run_json(run_dir)["status"] == "running"  # the launcher died: `list` will say died


def test_typed_dataclass_config_and_mismatch(project, expyrun):
    entry(
        project,
        """
        from dataclasses import dataclass, field
        @dataclass
        class Train:
            lr: float = 0.1
            epochs: int = 1
        @dataclass
        class Config:
            train: Train = field(default_factory=Train)
        def main(name, config: Config):
            return {"type": type(config).__name__, "lr": config.train.lr, "epochs": config.train.epochs}
        """,
    )
    write(project / "c.yml", RUN_SECTION + "train: {lr: 0.5, epochs: 3}\n")
    assert expyrun("c.yml").returncode == 0
    assert run_json(project / "outputs" / "demo" / "exp.0")["result"] == {"type": "Config", "lr": 0.5, "epochs": 3}
    result = expyrun("c.yml", "--train.epochs", "x")  # a str replaces a str? no: epochs is int here
    assert result.returncode == 2
    write(project / "bad.yml", RUN_SECTION + "train: {lr: 0.5, epochs: many}\n")
    result = expyrun("bad.yml")
    assert result.returncode == 1
    record = run_json(project / "outputs" / "demo" / "exp.1")
    assert record["status"] == "failed" and "train.epochs" in record["exception"]["message"]


def test_dictconfig_annotation(project, expyrun):
    entry(
        project,
        """
        from omegaconf import DictConfig
        def main(name, config: DictConfig):
            return [type(config).__name__, config.a.b]
        """,
    )
    write(project / "c.yml", RUN_SECTION + "a: {b: 3}\n")
    assert expyrun("c.yml").returncode == 0
    assert run_json(project / "outputs" / "demo" / "exp.0")["result"] == ["DictConfig", 3]


def test_snapshot_copies_package_data_skips_caches_and_ignored_files_and_dedupes(project, expyrun):
    write(project / "pkg" / "data" / "table.json", "{}")
    write(project / "pkg" / "templates" / "page.html", "<p>")
    write(project / "pkg" / "big.bin", "")
    (project / "pkg" / "big.bin").write_bytes(b"x" * 2_000_000)
    write(project / "pkg" / "__pycache__" / "main.cpython-311.pyc", "junk")
    write(project / "pkg" / "secret.local", "ignored")
    write(project / ".gitignore", "*.local\n")
    subprocess.run(["git", "init", "-q"], cwd=project, check=True)
    write(project / "c.yml", RUN_SECTION + "  __max_file_mb__: 1\n")
    first = expyrun("c.yml")
    assert first.returncode == 0, first.stderr
    assert "big.bin" in first.stderr
    assert expyrun("c.yml").returncode == 0
    one, two = (project / "outputs" / "demo" / f"exp.{i}" for i in (0, 1))
    names = {str(p.relative_to(one)) for p in (one / "pkg").rglob("*")}
    assert {"pkg/data/table.json", "pkg/templates/page.html", "pkg/main.py"} <= names
    assert not any("__pycache__" in n or n.endswith(".local") or n.endswith("big.bin") for n in names)
    assert run_json(one)["snapshot"]["skipped"] == ["pkg/big.bin"]
    assert (one / "pkg" / "main.py").stat().st_ino == (two / "pkg" / "main.py").stat().st_ino
    assert run_json(one)["snapshot"]["sha256"] == run_json(two)["snapshot"]["sha256"]
    import shutil

    shutil.rmtree(one)
    shutil.rmtree(project / "outputs" / ".expyrun")
    assert (two / "pkg" / "data" / "table.json").read_text() == "{}"


def test_symlinks_inside_kept_outside_copied(project, expyrun):
    write(project / "outside.txt", "outside")
    write(project / "pkg" / "inside.txt", "inside")
    (project / "pkg" / "link_in").symlink_to("inside.txt")
    (project / "pkg" / "link_out").symlink_to(project / "outside.txt")
    write(project / "c.yml", RUN_SECTION)
    assert expyrun("c.yml").returncode == 0
    snap = project / "outputs" / "demo" / "exp.0" / "pkg"
    assert (snap / "link_in").is_symlink() and (snap / "link_in").read_text() == "inside"
    assert not (snap / "link_out").is_symlink() and (snap / "link_out").read_text() == "outside"


def test_single_module_entry_point(project, expyrun):
    write(project / "solo.py", "def main(name, config):\n    return 7\n")
    write(project / "c.yml", RUN_SECTION.replace("pkg.main:main", "solo:main"))
    assert expyrun("c.yml").returncode == 0
    run_dir = project / "outputs" / "demo" / "exp.0"
    assert (run_dir / "solo.py").exists() and run_json(run_dir)["result"] == 7


def test_git_state_dirty_diff_and_remote_without_credentials(project, expyrun):
    git = ["git", "-c", "user.email=a@b", "-c", "user.name=a"]
    subprocess.run([*git, "init", "-q", "-b", "trunk"], cwd=project, check=True)
    subprocess.run([*git, "remote", "add", "origin", "https://bob:tok3n@example.com/x.git"], cwd=project, check=True)
    write(project / "c.yml", RUN_SECTION)
    subprocess.run([*git, "add", "-A"], cwd=project, check=True)
    subprocess.run([*git, "commit", "-qm", "init"], cwd=project, check=True)
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=project, capture_output=True, text=True).stdout.strip()
    assert expyrun("c.yml").returncode == 0
    clean = project / "outputs" / "demo" / "exp.0"
    assert run_json(clean)["git"] == {
        "commit": commit,
        "branch": "trunk",
        "dirty": False,
        "remote": "https://example.com/x.git",
    }
    assert not (clean / "git.diff").exists()
    write(project / "pkg" / "main.py", "def main(name, config):\n    return 'changed'\n")
    assert expyrun("c.yml").returncode == 0
    dirty = project / "outputs" / "demo" / "exp.1"
    assert run_json(dirty)["git"]["dirty"] is True
    assert "changed" in (dirty / "git.diff").read_text()


def test_outside_a_repository_git_is_null(project, expyrun):
    write(project / "c.yml", RUN_SECTION)
    assert expyrun("c.yml", env={"GIT_CEILING_DIRECTORIES": str(project.parent)}).returncode == 0
    assert run_json(project / "outputs" / "demo" / "exp.0")["git"] is None


def test_frozen_requirements_list_this_interpreter(project, expyrun):
    write(project / "c.yml", RUN_SECTION)
    assert expyrun("c.yml").returncode == 0
    lines = (project / "outputs" / "demo" / "exp.0" / "frozen_requirements.txt").read_text().splitlines()
    assert any(line.lower().startswith("pyyaml==") for line in lines)
    assert any("expyrun" in line for line in lines)
    names = [line.split("==")[0].lower() for line in lines if "==" in line and not line.startswith("-e")]
    assert names == sorted(names, key=lambda n: n.replace("_", "-"))


def test_rerun_from_config_uses_stored_code_and_raw_config_re_resolves(project, expyrun):
    entry(project, "def main(name, config):\n    return ['v1', name, config['seed']]\n")
    write(project / "c.yml", RUN_SECTION.replace("demo", "run_{seed}") + "seed: 1\n")
    assert expyrun("c.yml").returncode == 0
    first = project / "outputs" / "run_1" / "exp.0"
    entry(project, "def main(name, config):\n    return ['v2', name, config['seed']]\n")
    assert expyrun(str(first / "config.yml")).returncode == 0
    assert run_json(project / "outputs" / "run_1" / "exp.1")["result"] == ["v1", "run_1", 1]
    assert expyrun(str(first / "raw_config.yml"), "--seed", "111").returncode == 0
    assert run_json(project / "outputs" / "run_111" / "exp.0")["result"] == ["v1", "run_111", 111]


def test_rerun_warns_about_requirement_drift(project, expyrun):
    write(project / "c.yml", RUN_SECTION)
    assert expyrun("c.yml").returncode == 0
    first = project / "outputs" / "demo" / "exp.0"
    frozen = first / "frozen_requirements.txt"
    frozen.write_text(frozen.read_text().replace("PyYAML==", "PyYAML==0.0.1\n# was ") + "nonexistent-pkg==1.0\n")
    result = expyrun(str(first / "config.yml"))
    assert result.returncode == 0
    assert "installed packages differ" in result.stderr
    assert "nonexistent-pkg" in result.stderr and "PyYAML==0.0.1" in result.stderr


def test_a_result_json_cannot_hold_is_stored_as_null(project, expyrun):
    entry(
        project,
        """
        class Weird:
            def item(self, required):
                raise RuntimeError("never called without an argument")
        def main(name, config):
            return Weird()
        """,
    )
    write(project / "c.yml", RUN_SECTION)
    assert expyrun("c.yml").returncode == 0
    record = run_json(project / "outputs" / "demo" / "exp.0")
    assert record["status"] == "completed" and record["result"] is None


def test_editing_one_snapshot_in_place_does_not_reach_later_runs(project, expyrun):
    write(project / "c.yml", RUN_SECTION)
    assert expyrun("c.yml").returncode == 0
    first = project / "outputs" / "demo" / "exp.0" / "pkg" / "main.py"
    first.chmod(0o644)
    first.write_text("def main(name, config):\n    return 'edited'\n")  # in place: the same inode
    assert expyrun("c.yml").returncode == 0
    second = project / "outputs" / "demo" / "exp.1"
    assert (second / "pkg" / "main.py").read_text() == (project / "pkg" / "main.py").read_text()
    assert run_json(second)["result"]["name"] == "demo"
    assert first.read_text().endswith("'edited'\n")


@pytest.mark.parametrize("closed", [0, 1, 2])
def test_a_closed_standard_stream_is_no_internal_error_and_the_log_is_whole(project, closed):
    """`expyrun c.yml >&-` (or 2>&-, <&-): the stream becomes /dev/null, the run completes, its log
    holds what it printed, and no file the launch opens takes the closed stream's number."""
    import sys

    from conftest import clean_env

    entry(project, "def main(name, config):\n    print('printed')\n    return 7\n")
    write(project / "c.yml", RUN_SECTION)
    result = subprocess.run(
        [sys.executable, "-m", "expyrun", "c.yml"], cwd=project, env=clean_env(), capture_output=False,
        stdout=None if closed == 1 else subprocess.PIPE, stderr=None if closed == 2 else subprocess.PIPE,
        stdin=None if closed == 0 else subprocess.DEVNULL, preexec_fn=lambda: os.close(closed), timeout=60, check=False,
    )  # fmt: skip
    shown = (result.stdout or b"") + (result.stderr or b"")
    assert result.returncode == 0, shown
    assert b"internal error" not in shown and b"Traceback" not in shown
    run_dir = project / "outputs" / "demo" / "exp.0"
    assert run_json(run_dir)["result"] == 7
    assert (run_dir / "outputs.log").read_text() == "printed\n"
