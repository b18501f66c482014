"""Benchmark: a second `expyrun verify` of the example run (its environment already cached) against the
run itself (SPEC 14, issue 23).

The example (`configs/quick.yml`) runs once into a temporary output folder; `expyrun verify` then
builds the environment matching its frozen requirements once (timed apart: uv's cache makes it
seconds), and each further verify reuses it. Median of 5 of each, the run and the verify alternated
so that the machine's load weighs on both alike.
Target: a second verify costs at most 2x the run itself plus 1 s.
Run: `python benchmarks/bench_verify.py`.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ROUNDS = 5


def _timed(args: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    completed = subprocess.run([sys.executable, "-m", "expyrun", *args], cwd=ROOT, env=env, capture_output=True,
                               text=True, check=False)  # fmt: skip
    took = time.perf_counter() - started
    if completed.returncode != 0:
        raise SystemExit(f"expyrun {' '.join(args)} failed ({completed.returncode}): {completed.stderr[-2000:]}")
    return took


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="bench-verify-") as scratch:
        env = {**os.environ, "EXPYRUN_OUTPUT": scratch, "EXPYRUN_ENV_CACHE": str(Path(scratch) / "envs")}
        _timed(["configs/quick.yml"], env)
        run_dir = Path(scratch) / "toyreg" / "degree5" / "exp.0"
        first = _timed(["verify", str(run_dir)], env)
        runs, verifies = [], []
        for _ in range(ROUNDS):
            runs.append(_timed(["configs/quick.yml"], env))
            verifies.append(_timed(["verify", str(run_dir)], env))
    run, verify = statistics.median(runs), statistics.median(verifies)
    met = "met" if verify <= 2 * run + 1 else "MISSED"
    print(f"the run: {run:.2f} s; first verify (builds the environment): {first:.2f} s; "
          f"second verify: {verify:.2f} s; target <= {2 * run + 1:.2f} s: {met}")  # fmt: skip


if __name__ == "__main__":
    main()
