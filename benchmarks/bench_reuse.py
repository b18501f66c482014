"""Benchmarks of the engine's sweep modes (issue 18): 100-point sweeps, measured in one run.

1. An entry module that takes 0.5 s to import: `__launch__.reuse_workers: true` (imported once per
   worker) vs forked points (imported once per point), both `jobs: 1` (target <= 0.1x).
2. A no-op entry point, forked points: `jobs: 2` vs `jobs: 1` (target <= 0.6x on 2 cores), measured
   alternately (round by round), each with the CPU time of the sweep process and of its children
   (run children, the tee), which other work on the machine does not inflate as it does wall time.

Each figure is the median of `--repeats` launches of the whole sweep (`python -m expyrun`, or the same
`expyrun.cli.main` in-process where CPU time is measured; wall time). The machine may have other work
running: the ratios are what to compare, with the load average printed.
Run: `python benchmarks/bench_reuse.py [--points 100] [--repeats 3]`.
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
  __main__: {module}:main
  __name__: "bench/x{{x}}"
  __output_dir__: {out}
x: 0
__sweep__:
  grid:
    x: {values}
__launch__: {{jobs: {jobs}, reuse_workers: {reuse}}}
"""

SLOW_IMPORT = """\
import time
time.sleep(0.5)  # a heavy import (torch, a model library)


def main(name, config):
    return config["x"]
"""

NO_OP = """\
def main(name, config):
    return config["x"]
"""


def sweep_run(
    folder: Path, module: str, points: int, jobs: int, reuse: bool, round_: int, cpu: bool = False
) -> dict[str, float]:
    """One sweep: `wall` seconds; with `cpu`, the CPU seconds of the sweep process (`own`) and its children."""
    out = folder / f"out-{module}-{jobs}-{reuse}-{round_}"
    config = folder / f"{out.name}.yml"
    values = list(range(points))
    config.write_text(
        CONFIG.format(module=f"pkg.{module}", out=out, values=values, jobs=jobs, reuse=str(reuse).lower())
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "EXPYRUN_"))}
    command = [sys.executable, "-c", MEASURED] if cpu else [sys.executable, "-m", "expyrun"]
    started = time.perf_counter()
    result = subprocess.run([*command, str(config)], cwd=folder, env=env, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"sweep failed ({result.returncode}):\n{result.stderr[-2000:]}")
    figures = json.loads(result.stderr.strip().splitlines()[-1]) if cpu else {}
    return {"wall": elapsed, **figures}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "pkg").mkdir()
        (folder / "pkg" / "__init__.py").write_text("")
        (folder / "pkg" / "slow.py").write_text(SLOW_IMPORT)
        (folder / "pkg" / "noop.py").write_text(NO_OP)
        n, r = options.points, options.repeats

        def median(module: str, jobs: int, reuse: bool, repeats: int) -> float:
            return statistics.median(sweep_run(folder, module, n, jobs, reuse, i)["wall"] for i in range(repeats))

        load = os.getloadavg()[0]
        reused = median("slow", 1, True, r)
        forked = median("slow", 1, False, 1)  # ~0.5 s a point: one round is enough
        rounds = [
            (sweep_run(folder, "noop", n, 1, False, i, cpu=True), sweep_run(folder, "noop", n, 2, False, i, cpu=True))
            for i in range(r)
        ]
        load = max(load, os.getloadavg()[0])
    jobs1, jobs2 = (statistics.median(pair[j]["wall"] for pair in rounds) for j in (0, 1))
    print(f"{n}-point sweep, cpus: {os.cpu_count()}, load average: {load:.2f} (the highest seen)")
    print(f"0.5 s import, forked points:  {forked:7.2f} s")
    print(f"0.5 s import, reused workers: {reused:7.2f} s  ({reused / forked:.3f}x forked; target <= 0.1x)")
    print(f"no-op, jobs 1:                {jobs1:7.2f} s")
    print(f"no-op, jobs 2:                {jobs2:7.2f} s  ({jobs2 / jobs1:.2f}x jobs 1; target <= 0.6x)")
    print("  jobs 2 / jobs 1 round by round: " + ", ".join(f"{b['wall'] / a['wall']:.2f}x" for a, b in rounds))
    for jobs in (1, 2):
        own = statistics.median(pair[jobs - 1]["own"] for pair in rounds)
        children = statistics.median(pair[jobs - 1]["children"] for pair in rounds)
        print(f"  CPU, jobs {jobs}: sweep process {own:.2f} s, run children and tee {children:.2f} s")


if __name__ == "__main__":
    main()
