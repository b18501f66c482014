"""Submit-to-done latency of `launcher: slurm` (issue 12) on a one-node test cluster started here.

1. A one-point job: `expyrun c.yml` with `wait: true` (prepare, sbatch --hold, ids, release, the job
   starts, the node executes the folder, the waiter sees the record), against a bare `sbatch` of a
   script running `true`, polled with squeue until done (what Slurm alone costs).
2. A 20-point sweep (one array of 20 tasks), `wait: true`, against a bare 20-task `sbatch --array`.
3. `wait: false`: how long the submitting command takes (a 1-point and a 20-point submission).

Each case is the median (and min) of `--repeats` rounds, the cases interleaved. The node has the
machine's CPUs unless `--cpus N` (more than the machine has is accepted: `config_overrides`), so
on 2 cores a 20-task array runs 2 tasks at a time. Needs root and the Slurm packages (`.ci/install`).

Run: `python benchmarks/bench_slurm.py [--repeats 5] [--cpus N]`.
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

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from slurm_cluster import SlurmCluster, unavailable

CONFIG = """\
__run__:
  __main__: pkg.main:main
  __name__: "{name}/x{{x}}"
  __output_dir__: {out}
x: 0
{sweep}__launch__: {{launcher: slurm, wait: {wait}}}
"""
ENV = {key: value for key, value in os.environ.items() if not key.startswith(("PYTHON", "EXPYRUN_"))}


def project(folder: Path) -> None:
    (folder / "pkg").mkdir(parents=True, exist_ok=True)
    (folder / "pkg" / "__init__.py").write_text("")
    (folder / "pkg" / "main.py").write_text("def main(name, config):\n    return config['x']\n")


def expyrun_seconds(folder: Path, env: dict[str, str], points: int, wait: bool, tag: str) -> float:
    sweep = f"__sweep__:\n  name: {tag}\n  grid:\n    x: {list(range(points))}\n" if points > 1 else ""
    config = folder / f"{tag}.yml"
    config.write_text(CONFIG.format(name=tag, out=folder / "out", sweep=sweep, wait=str(wait).lower()))
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "expyrun", str(config)], cwd=folder, check=True, capture_output=True,
                   env=env)  # fmt: skip
    elapsed = time.perf_counter() - start
    if not wait:  # wait for these jobs here, so the next round starts on an idle cluster
        deadline = time.monotonic() + 300
        runs = list((folder / "out" / tag).rglob("run.json"))
        while time.monotonic() < deadline and not all(json.loads(r.read_text())["status"] == "completed" for r in runs):
            time.sleep(0.1)
    return elapsed


def bare_sbatch_seconds(folder: Path, env: dict[str, str], tasks: int) -> float:
    """What Slurm alone takes: submit a script running `true`, poll squeue until every task completed."""
    script = folder / "true.sh"
    script.write_text(f"#!/bin/bash\n#SBATCH --output=/dev/null\n#SBATCH --chdir={folder}\ntrue\n")
    array = [f"--array=0-{tasks - 1}"] if tasks > 1 else []
    start = time.perf_counter()
    job = subprocess.run(["sbatch", "--parsable", *array, str(script)], capture_output=True, text=True, env=env,
                         check=True).stdout.strip()  # fmt: skip
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        states = subprocess.run(["squeue", "-h", "-r", "-t", "all", "-j", job, "-o", "%T"], capture_output=True,
                                text=True, env=env, check=False).stdout.split()  # fmt: skip
        if len(states) == tasks and all(state == "COMPLETED" for state in states):
            break
        time.sleep(0.1)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--cpus", type=int, default=None)
    args = parser.parse_args()
    reason = unavailable()
    if reason is not None:
        sys.exit(reason)
    cluster = SlurmCluster(cpus=args.cpus).start()
    folder = Path(tempfile.mkdtemp(prefix="bench-slurm-"))
    env = {**ENV, **cluster.env}
    cases = {
        "1 point, bare sbatch": lambda i: bare_sbatch_seconds(folder, env, 1),
        "1 point, expyrun wait: true": lambda i: expyrun_seconds(folder, env, 1, True, f"one{i}"),
        "20 points, bare sbatch --array": lambda i: bare_sbatch_seconds(folder, env, 20),
        "20 points, expyrun wait: true": lambda i: expyrun_seconds(folder, env, 20, True, f"twenty{i}"),
        "1 point, expyrun wait: false (command)": lambda i: expyrun_seconds(folder, env, 1, False, f"sub1_{i}"),
        "20 points, expyrun wait: false (command)": lambda i: expyrun_seconds(folder, env, 20, False, f"sub20_{i}"),
    }
    times: dict[str, list[float]] = {name: [] for name in cases}
    try:
        project(folder)
        for case in cases.values():  # warm-up: imports, the snapshot store, slurmd's first job
            case(-1)
        for round_ in range(args.repeats):
            for name, case in cases.items():
                times[name].append(case(round_))
    finally:
        cluster.stop()
        shutil.rmtree(cluster.folder, ignore_errors=True)
        shutil.rmtree(folder, ignore_errors=True)
    print(f"one node, {cluster.cpus} CPUs, {args.repeats} rounds, load {os.getloadavg()[0]:.1f}")
    print("| case | median | min |\n|---|---:|---:|")
    for name, values in times.items():
        print(f"| {name} | {statistics.median(values):.2f} s | {min(values):.2f} s |")


if __name__ == "__main__":
    main()
