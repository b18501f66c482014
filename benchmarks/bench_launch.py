"""Benchmarks of the launch path, against expyrun 0.2.1 in a cached venv (tests/legacy_expyrun.py).

1. launch: a full launch of a trivial entry point vs `python -c "import yaml"` (median of N).
2. tee: an entry point printing 2,000,000 lines, vs the same code with a plain `> file` redirect.
3. snapshot: a 3,000-module package with 200 MB of data: first launch vs a repeated launch
   (time and disk added by the run folder).

Run: `python benchmarks/bench_launch.py [--only launch,tee,snapshot] [--no-legacy]`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

CONFIG = """\
__run__:
  __main__: {main}
  __name__: bench
  __output_dir__: {out}
"""
PRINTER = "def main(name, config):\n    for i in range(2_000_000):\n        print(i)\n"


# A user's environment: no PYTHONDONTWRITEBYTECODE (which would recompile every module at every
# launch) nor PYTHONUNBUFFERED from the developer's shell.
ENV = {key: value for key, value in os.environ.items() if not key.startswith(("PYTHON", "EXPYRUN_"))}


def timed(command: list[str], cwd: Path, repeats: int, stdout: int | None = subprocess.DEVNULL) -> float:
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(command, cwd=cwd, stdout=stdout, stderr=subprocess.DEVNULL, check=True, env=ENV)
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def interleaved(commands: dict[str, list[str]], cwd: Path, repeats: int) -> dict[str, float]:
    """Median seconds of each command, run in turns so that a change in the machine's load hits all alike."""
    samples: dict[str, list[float]] = {name: [] for name in commands}
    for command in commands.values():  # warm-up: compiled bytecode, page cache
        subprocess.run(command, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True, env=ENV)
    for _ in range(repeats):
        for name, command in commands.items():
            start = time.perf_counter()
            subprocess.run(command, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True, env=ENV)
            samples[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in samples.items()}


def project(folder: Path, body: str) -> Path:
    (folder / "pkg").mkdir(parents=True, exist_ok=True)
    (folder / "pkg" / "__init__.py").write_text("")
    (folder / "pkg" / "main.py").write_text(body)
    (folder / "c.yml").write_text(CONFIG.format(main="pkg.main:main", out=folder / "out"))
    return folder / "c.yml"


def legacy_expyrun() -> Path | None:
    from legacy_expyrun import legacy_python

    python = legacy_python()
    return python.parent / "expyrun" if python else None


def bench_launch(legacy: Path | None, repeats: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        project(folder, "def main(name, config):\n    return 0\n")
        commands = {
            "yaml": [sys.executable, "-c", "import yaml"],
            "run": [sys.executable, "-m", "expyrun", "c.yml"],
            "debug": [sys.executable, "-m", "expyrun", "c.yml", "--debug"],
        }
        if legacy:
            commands["0.2.1 --debug"] = [str(legacy), "c.yml", "--debug"]
        times = interleaved(commands, folder, repeats)
        base = times.pop("yaml")
        print(f"launch: python -c 'import yaml' {base * 1e3:.0f} ms (yardstick)")
        targets = {"run": "<= 2.0x", "debug": "<= 1.6x"}
        for name, seconds in times.items():
            print(f"launch: expyrun {name}: {seconds * 1e3:.0f} ms = {seconds / base:.2f}x  {targets.get(name, '')}")


def bench_tee(legacy: Path | None, repeats: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        project(folder, PRINTER)
        plain_cmd = [sys.executable, "-c", "from pkg.main import main; main('x', {})"]
        lined_cmd = [
            sys.executable, "-c",
            "import sys; sys.stdout.reconfigure(line_buffering=True); from pkg.main import main; main('x', {})",
        ]  # fmt: skip
        with (folder / "plain.log").open("w") as sink:
            plain = timed(plain_cmd, folder, repeats, stdout=sink.fileno())
        with (folder / "lined.log").open("w") as sink:
            lined = timed(lined_cmd, folder, repeats, stdout=sink.fileno())
        print(f"tee: plain line-buffered redirect {lined:.2f} s (a run's streams are line buffered, SPEC 3.3)")
        with (folder / "tee.out").open("w") as sink:
            ours = timed([sys.executable, "-m", "expyrun", "c.yml"], folder, repeats, stdout=sink.fileno())
        ratios = f"{ours / plain:.2f}x, {ours / lined:.2f}x line-buffered"
        print(f"tee: plain redirect {plain:.2f} s; expyrun {ours:.2f} s = {ratios}")
        if legacy:
            with (folder / "old.out").open("w") as sink:
                old = timed([str(legacy), "c.yml"], folder, repeats, stdout=sink.fileno())
            print(f"tee: expyrun 0.2.1 {old:.2f} s = {old / plain:.2f}x")


def disk_usage(path: Path) -> int:
    """Bytes of blocks used below `path`, hard links counted once (like `du`)."""
    seen, total = set(), 0
    for root, _, files in os.walk(path):
        for name in files:
            info = os.lstat(os.path.join(root, name))
            if info.st_ino not in seen:
                seen.add(info.st_ino)
                total += info.st_blocks * 512
    return total


def bench_snapshot(legacy: Path | None) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        config = project(folder, "def main(name, config):\n    return 0\n")
        package = folder / "pkg"
        for index in range(3000):
            sub = package / f"sub{index // 100}"
            sub.mkdir(exist_ok=True)
            (sub / "__init__.py").touch()
            (sub / f"module_{index}.py").write_text(f"VALUE = {index}\n" + "x = 1\n" * 50)
        data = package / "data"
        data.mkdir()
        for index in range(20):
            (data / f"blob_{index}.bin").write_bytes(os.urandom(10 * 1024 * 1024))
        (folder / "c.yml").write_text(config.read_text() + "  __max_file_mb__: 20\n")
        runs = folder / "out" / "bench"
        times = []
        for _ in range(3):
            before = disk_usage(folder / "out") if (folder / "out").exists() else 0
            start = time.perf_counter()
            subprocess.run(
                [sys.executable, "-m", "expyrun", "c.yml"],
                cwd=folder,
                check=True,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            wall = time.perf_counter() - start
            latest = max(runs.iterdir(), key=lambda p: int(p.name.split(".")[1]))
            snap = json.loads((latest / "run.json").read_text())["snapshot"]["duration_s"]
            times.append((wall, snap, disk_usage(folder / "out") - before))
        (first_t, first_s, first_d), *repeats = times
        for t, s, d in repeats:
            print(
                f"snapshot: repeat launch {t:.2f} s ({t / first_t:.0%} of first {first_t:.2f} s); "
                f"snapshot step {s:.3f} s ({s / first_s:.0%} of first {first_s:.3f} s); "
                f"disk {d / 1e6:.2f} MB ({d / first_d:.2%} of first {first_d / 1e6:.0f} MB)"
            )
        if legacy:
            shutil.rmtree(runs)
            start = time.perf_counter()
            subprocess.run(
                [str(legacy), "c.yml"], cwd=folder, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            print(f"snapshot: expyrun 0.2.1 launch {time.perf_counter() - start:.2f} s (copies .py files only)")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", default="launch,tee,snapshot")
    parser.add_argument("--no-legacy", action="store_true")
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    legacy = None if args.no_legacy else legacy_expyrun()
    parts = args.only.split(",")
    if "launch" in parts:
        bench_launch(legacy, args.repeats)
    if "tee" in parts:
        bench_tee(legacy, max(3, args.repeats // 3))
    if "snapshot" in parts:
        bench_snapshot(legacy)


if __name__ == "__main__":
    main()
