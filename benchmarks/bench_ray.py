"""What `launcher: ray` (issue 22) costs over Ray itself, on a one-node head started here (loopback only).

1. One run: `expyrun c.yml` with `wait: true` (import Ray, connect, check resources, prepare the
   folder, one task, the node entry executes the folder, the record read back), against a bare
   driver that connects and runs one Ray task executing `python -c pass`.
2. A 20-point sweep end to end, `wait: true`, against a bare driver running 20 such tasks.
The cost per task is (expyrun - bare) / tasks. Each case: median (and min) of `--repeats` rounds,
interleaved. The head has `--cpus` CPUs (2 by default): 2 tasks at a time.

Run: `python benchmarks/bench_ray.py [--repeats 3] [--cpus 2]`.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from ray_cluster import RayHead

CONFIG = """\
__run__:
  __main__: pkg.main:main
  __name__: "{name}/x{{x}}"
  __output_dir__: {out}
x: 0
{sweep}__launch__: {{launcher: ray, wait: true}}
"""
BARE = """\
import os, subprocess, sys, ray
ray.init(address=os.environ["RAY_ADDRESS"], logging_level="ERROR", log_to_driver=False)
@ray.remote(num_cpus=1)
def task():
    return subprocess.run([sys.executable, "-c", "pass"], check=True).returncode
ray.get([task.remote() for _ in range(int(sys.argv[1]))])
"""


def timed(command: list[str], cwd: Path, env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, cwd=cwd, env=env, check=True, capture_output=True, timeout=600)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cpus", type=int, default=2)
    args = parser.parse_args()
    head = RayHead(num_cpus=args.cpus).start()
    folder = Path(tempfile.mkdtemp(prefix="bench-ray-"))
    try:
        (folder / "pkg").mkdir()
        (folder / "pkg" / "__init__.py").write_text("")
        (folder / "pkg" / "main.py").write_text("def main(name, config):\n    pass\n")
        (folder / "bare.py").write_text(BARE)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "EXPYRUN_", "RAY_"))}
        env.update(head.env)
        cases: dict[str, list[float]] = {}
        for round_ in range(args.repeats):
            for tasks in (1, 20):
                values = ", ".join(map(str, range(tasks)))
                sweep = f"__sweep__:\n  grid:\n    x: [{values}]\n" if tasks > 1 else ""
                config = folder / f"c{tasks}.yml"
                config.write_text(CONFIG.format(name=f"r{round_}t{tasks}", out=folder / "out", sweep=sweep))
                cases.setdefault(f"bare {tasks}", []).append(
                    timed([sys.executable, "bare.py", str(tasks)], folder, env)
                )
                cases.setdefault(f"expyrun {tasks}", []).append(
                    timed([sys.executable, "-m", "expyrun", config.name], folder, env))  # fmt: skip
        for name, times in cases.items():
            print(f"{name:>12} tasks: median {statistics.median(times):.2f} s  min {min(times):.2f} s")
        for tasks in (1, 20):
            extra = statistics.median(cases[f"expyrun {tasks}"]) - statistics.median(cases[f"bare {tasks}"])
            print(f"expyrun over bare Ray, {tasks} task(s): {extra:+.2f} s in all, {extra / tasks:+.3f} s per task")
    finally:
        head.stop()
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
