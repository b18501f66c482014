"""Benchmark: `expyrun list DIR` over 10,000 run folders made like real runs, into a pipe and on a terminal,
plain and with a query (`--where`, `--sort`, `--group-by`: SPEC 12.1, under 1 s).

One real launch provides the files; 10,000 copies of its run folder (run.json with a few config
values changed, config.yml, outputs.log) are spread over 10 names. The table is timed both ways a
user meets it, because they take different code: stderr into a pipe (plain text) and stderr on a
terminal (a pseudo-terminal the benchmark drains as a terminal emulator would). Yardsticks measured
in the same run give ratios that hold across machines. Run: `python benchmarks/bench_list.py`.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

RUNS = 10_000
REPEATS = 5
# SPEC 12.1's figure: a where, a sort and a group-by over every run (under 1 s).
QUERY = ("--where", "lr < 0.5", "--where", "metric.loss > 0.1", "--sort", "-result", "--group-by", "seed")
TERMINAL_SIZE = (50, 160)  # rows, columns: a usual terminal window, so width-dependent code runs as for a user


def make_runs(root: Path) -> None:
    (root / "pkg").mkdir()
    (root / "pkg" / "__init__.py").write_text("")
    (root / "pkg" / "main.py").write_text("def main(name, config):\n    return config['lr']\n")
    (root / "c.yml").write_text(
        "__run__:\n  __main__: pkg.main:main\n  __name__: seed\n  __output_dir__: out\n"
        "lr: 0.1\nseed: 0\nmodel: {depth: 3, width: 64}\ndata: {root: /data, workers: 4}\n"
    )
    subprocess.run([sys.executable, "-m", "expyrun", "c.yml", "--debug"], cwd=root, check=True, capture_output=True)
    template = root / "out" / "DEBUG" / "seed" / "exp.0"
    record = json.loads((template / "run.json").read_text())
    config_text = (template / "config.yml").read_text()
    log_text = (template / "outputs.log").read_text()
    for index in range(RUNS):
        name = f"sweep{index % 10}"
        run_dir = root / "runs" / name / f"exp.{index // 10}"
        run_dir.mkdir(parents=True)
        record.update(
            name=name,
            run_dir=str(run_dir),
            result=index / RUNS,
            metrics={"loss": {"last": 1 - index / RUNS, "min": 0.0, "max": 1.0, "step": 99, "count": 100}},
            config={**record["config"], "lr": (index % 7) / 10, "seed": index % 3},
        )
        (run_dir / "run.json").write_text(json.dumps(record, indent=2))
        (run_dir / "config.yml").write_text(config_text)
        (run_dir / "outputs.log").write_text(log_text)


def _environment() -> dict[str, str]:
    """The user's environment without expyrun settings, with a colour terminal type.

    TERM is fixed so that the terminal path draws colour as on a user's desktop, whatever the
    shell running the benchmark says.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXPYRUN_") and k != "NO_COLOR"}
    env["TERM"] = "xterm-256color"
    return env


def in_pipe(command: list[str], cwd: Path) -> None:
    """Run `command` with stdout and stderr into pipes, read to the end."""
    subprocess.run(command, cwd=cwd, env=_environment(), check=True, capture_output=True)


def _take_terminal() -> None:
    """In the child: a new session whose controlling terminal is the pty on stdin (as in a shell)."""
    import fcntl
    import termios

    os.setsid()
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def on_terminal(command: list[str], cwd: Path) -> int:
    """Run `command` with a pseudo-terminal as stdin, stdout and stderr; returns the bytes it showed.

    The leader side is drained as fast as it fills, as a terminal emulator does; a child writing
    to a full pty would otherwise block and the timing would measure this reader.
    """
    import fcntl
    import pty
    import struct
    import termios

    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", *TERMINAL_SIZE, 0, 0))
    process = subprocess.Popen(
        command, cwd=cwd, env=_environment(), preexec_fn=_take_terminal,
        stdin=follower, stdout=follower, stderr=follower,
    )  # fmt: skip
    os.close(follower)
    shown = 0
    while True:
        try:
            chunk = os.read(leader, 1 << 16)
        except OSError:  # EIO: the terminal closed, every process using it is gone
            break
        if not chunk:
            break
        shown += len(chunk)
    os.close(leader)
    if process.wait() != 0:
        raise RuntimeError(f"{command} exited with {process.returncode}")
    return shown


def median_time(run: Callable[[list[str], Path], object], command: list[str], cwd: Path) -> float:
    """Median wall time of `REPEATS` runs of the whole command, start-up included."""
    samples = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        run(command, cwd)
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def main() -> None:
    expyrun = [sys.executable, "-m", "expyrun"]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        make_runs(root)
        python_yaml = median_time(in_pipe, [sys.executable, "-c", "import yaml"], root)
        ls_tree = median_time(in_pipe, ["ls", "-R", "runs"], root)
        shown = on_terminal([*expyrun, "list", "runs"], root)
        figures = {
            "table, into a pipe": median_time(in_pipe, [*expyrun, "list", "runs"], root),
            "table, on a terminal": median_time(on_terminal, [*expyrun, "list", "runs"], root),
            "--json, into a pipe": median_time(in_pipe, [*expyrun, "list", "runs", "--json"], root),
            "query, into a pipe": median_time(in_pipe, [*expyrun, "list", "runs", *QUERY], root),
            "query, on a terminal": median_time(on_terminal, [*expyrun, "list", "runs", *QUERY], root),
            "query csv, into a pipe": median_time(
                in_pipe, [*expyrun, "list", "runs", "--where", "lr < 0.5", "--sort", "-result", "--format", "csv"], root
            ),
        }
    print(f"yardsticks: python -c 'import yaml' {python_yaml * 1000:.0f} ms, ls -R runs {ls_tree * 1000:.0f} ms")
    print(f"expyrun list of {RUNS} runs, median of {REPEATS} (terminal: {shown / 1e6:.1f} MB shown):")
    for label, seconds in figures.items():
        ratios = f"{seconds / python_yaml:5.1f}x import yaml, {seconds / ls_tree:4.1f}x ls -R"
        print(f"  {label:<22} {seconds:6.2f} s = {ratios}")


if __name__ == "__main__":
    main()
