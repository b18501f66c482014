"""Benchmarks of sweeps (issue 11): a 100-point grid of a no-op entry point.

1. `jobs: 1` sweep vs the same 100 runs launched one by one with `expyrun` (target <= 0.3x).
2. `jobs: 2` vs `jobs: 1` on this machine (target <= 0.6x on 2 cores), the two measured alternately
   (round by round) so that other work on the machine hits both alike; with the CPU time of the
   sweep process itself and of the processes it starts (run children and the tee), which other work
   does not inflate as it does wall time, and the load average.
3. Peak memory (max RSS) of the sweep process for 10 and 1,000 points (target: flat).

Run: `python benchmarks/bench_sweep.py [--points 100] [--repeats 3]`.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from measured import MEASURED  # this folder is on sys.path when the script runs

CONFIG = """\
__run__:
  __main__: pkg.main:main
  __name__: "bench/x{{x}}"
  __output_dir__: {out}
x: 0
__sweep__:
  grid:
    x: {values}
__launch__: {{jobs: {jobs}}}
"""
SINGLE = """\
__run__:
  __main__: pkg.main:main
  __name__: "single/x{{x}}"
  __output_dir__: {out}
x: 0
"""


def project(folder: Path) -> None:
    (folder / "pkg").mkdir(parents=True, exist_ok=True)
    (folder / "pkg" / "__init__.py").write_text("")
    (folder / "pkg" / "main.py").write_text("def main(name, config):\n    return config['x']\n")


ENV = {key: value for key, value in os.environ.items() if not key.startswith(("PYTHON", "EXPYRUN_"))}


def sweep_run(folder: Path, points: int, jobs: int) -> dict[str, float]:
    """One sweep: wall seconds, CPU seconds of the sweep process (`own`) and of its children."""
    config = folder / f"sweep{jobs}.yml"
    config.write_text(CONFIG.format(out=folder / "out", values=list(range(points)), jobs=jobs))
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-c", MEASURED, str(config)], cwd=folder, check=True, capture_output=True, text=True, env=ENV
    )
    wall = time.perf_counter() - start
    figures = json.loads(result.stderr.strip().splitlines()[-1])
    return {"wall": wall, "own": figures["own"], "children": figures["children"]}


def one_by_one_seconds(folder: Path, points: int) -> float:
    config = folder / "single.yml"
    config.write_text(SINGLE.format(out=folder / "out"))
    start = time.perf_counter()
    for x in range(points):
        subprocess.run(
            [sys.executable, "-m", "expyrun", str(config), "--x", str(x)],
            cwd=folder,
            check=True,
            capture_output=True,
            env=ENV,
        )
    return time.perf_counter() - start


def peak_rss_mb(folder: Path, points: int) -> float:
    """Max RSS of the sweep process itself (its children are forked runs, measured apart by the kernel)."""
    config = folder / f"memory{points}.yml"
    config.write_text(CONFIG.format(out=folder / f"mem{points}", values=list(range(points)), jobs=2))
    code = (
        "import resource, sys;"
        "from expyrun.cli import main; code = main(sys.argv[1:]);"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(config)], cwd=folder, check=True, capture_output=True, text=True, env=ENV
    )
    return int(result.stderr.strip().splitlines()[-1]) / 1024


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--points", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        project(folder)
        one = statistics.median(one_by_one_seconds(folder, options.points) for _ in range(options.repeats))
        load = os.getloadavg()[0]
        rounds = [
            (sweep_run(folder, options.points, 1), sweep_run(folder, options.points, 2)) for _ in range(options.repeats)
        ]
        load = max(load, os.getloadavg()[0])
        jobs1, jobs2 = (statistics.median(pair[j]["wall"] for pair in rounds) for j in (0, 1))
        print(f"cpus: {os.cpu_count()}, load average: {load:.2f}")
        print(f"{options.points} runs one by one:   {one:7.2f} s")
        print(f"sweep, jobs 1:           {jobs1:7.2f} s  ({jobs1 / one:.2f}x one by one; target <= 0.3x)")
        print(f"sweep, jobs 2:           {jobs2:7.2f} s  ({jobs2 / jobs1:.2f}x jobs 1; target <= 0.6x)")
        print("  jobs 2 / jobs 1 round by round: " + ", ".join(f"{b['wall'] / a['wall']:.2f}x" for a, b in rounds))
        for jobs in (1, 2):
            own = statistics.median(pair[jobs - 1]["own"] for pair in rounds)
            children = statistics.median(pair[jobs - 1]["children"] for pair in rounds)
            per_point = 1000 / options.points
            print(
                f"  CPU, jobs {jobs}: sweep process {own:.2f} s ({own * per_point:.1f} ms a point), "
                f"run children and tee {children:.2f} s ({children * per_point:.1f} ms a point)"
            )
        small, large = peak_rss_mb(folder, 10), peak_rss_mb(folder, 1000)
        print(f"peak RSS, 10 points:     {small:7.1f} MB")
        print(f"peak RSS, 1,000 points:  {large:7.1f} MB  ({large / small:.2f}x)")


if __name__ == "__main__":
    main()
