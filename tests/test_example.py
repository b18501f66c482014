"""The README's quick start: the example project runs and records its result."""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

from conftest import RUN_SECTION, clean_env, run_expyrun, write

ROOT = Path(__file__).resolve().parents[1]


def test_example_quick_start_runs(tmp_path):
    result = run_expyrun(["configs/quick.yml", "--optim.epochs", "20"], ROOT, {"EXPYRUN_OUTPUT": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    run_dir = tmp_path / "toyreg" / "degree5" / "exp.0"
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "completed" and isinstance(record["result"], float)
    assert (run_dir / "metrics.json").exists() and (run_dir / "checkpoint.json").exists()
    assert (run_dir / "toyreg" / "train.py").exists()
    assert "epoch   20" in (run_dir / "outputs.log").read_text()


def test_output_is_live_on_a_terminal(project):
    write(
        project / "pkg" / "main.py",
        """
        import time
        def main(name, config):
            print("first line")
            time.sleep(3)
            print("second line")
        """,
    )
    write(project / "c.yml", RUN_SECTION)
    leader, follower = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "expyrun", "c.yml"],
        cwd=project,
        env=clean_env(),
        stdin=follower,
        stdout=follower,
        stderr=follower,
    )
    os.close(follower)
    seen, started = b"", time.monotonic()
    while b"first line" not in seen and time.monotonic() - started < 20:
        if select.select([leader], [], [], 0.1)[0]:
            try:
                seen += os.read(leader, 4096)
            except OSError:
                break
    assert b"first line" in seen
    assert process.poll() is None  # shown while the run still works, not at exit
    while process.poll() is None:
        if select.select([leader], [], [], 0.1)[0]:
            try:
                os.read(leader, 4096)
            except OSError:
                break
    process.wait(timeout=30)
    os.close(leader)
    assert process.returncode == 0
