"""Benchmarks of the queue and GPU leases (SPEC 13, issue 21).

1. drain: N no-op runs queued (one sweep, `--queue`), drained by 2 `expyrun worker --once`, vs N
   `expyrun CONFIG` launches one after another (target: drain at most 0.3x the launches).
   Queueing (preparing the folders) is timed apart: it happens when the user queues, not while the
   queue drains.
2. lease: taking and releasing one GPU lease (`execute/gpu_leases.py`; target: under 1 ms).

Run: `python benchmarks/bench_queue.py [--runs 200]`.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ENV = {key: value for key, value in os.environ.items() if not key.startswith(("PYTHON", "EXPYRUN_"))}

CONFIG = """\
__run__:
  __main__: pkg.main:main
  __name__: "bench/i{i}"
  __output_dir__: outputs
i: 0
"""


def project(folder: Path, runs: int) -> dict[str, str]:
    (folder / "pkg").mkdir(parents=True)
    (folder / "pkg" / "__init__.py").write_text("")
    (folder / "pkg" / "main.py").write_text("def main(name, config):\n    return config['i']\n")
    (folder / "one.yml").write_text(CONFIG)
    points = ", ".join(str(i) for i in range(runs))
    (folder / "many.yml").write_text(CONFIG + f"__sweep__:\n  grid:\n    i: [{points}]\n")
    env = dict(ENV, EXPYRUN_QUEUE=str(folder / "queue"), EXPYRUN_GPU_LEASES=str(folder / "leases"))
    env["PYTHONPATH"] = str(ROOT)
    return env


def expyrun(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "expyrun", *args], cwd=cwd, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip


def drain(runs: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        env = project(folder, runs)
        start = time.perf_counter()
        for i in range(runs):
            assert expyrun(["one.yml", "--i", str(i)], folder, env).wait() == 0
        launches = time.perf_counter() - start
        start = time.perf_counter()
        assert expyrun(["many.yml", "--queue"], folder, env).wait() == 0
        queueing = time.perf_counter() - start
        start = time.perf_counter()
        workers = [expyrun(["worker", "--once"], folder, env) for _ in range(2)]
        assert [worker.wait() for worker in workers] == [0, 0]
        drained = time.perf_counter() - start
        left = os.listdir(folder / "queue")
        assert not [name for name in left if name.endswith(".json")], left
    print(f"{runs} launches one after another: {launches:.2f} s ({launches / runs * 1000:.0f} ms each)")
    print(f"queueing {runs} runs (one sweep --queue): {queueing:.2f} s")
    print(f"{runs} queued runs drained by 2 workers: {drained:.2f} s = {drained / launches:.2f}x the launches "
          f"(target <= 0.3x)")  # fmt: skip


def lease(repeats: int = 20000) -> None:
    sys.path.insert(0, str(ROOT))
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["EXPYRUN_GPU_LEASES"] = tmp
        from expyrun.execute.gpu_leases import try_lease

        try_lease("0").release()  # type: ignore[union-attr]  (the folder exists from now on)
        samples = []
        for _ in range(repeats):
            start = time.perf_counter()
            taken = try_lease("0")
            assert taken is not None
            taken.release()
            samples.append(time.perf_counter() - start)
    print(f"take and release a GPU lease: median {statistics.median(samples) * 1e6:.1f} us, "
          f"p99 {sorted(samples)[int(len(samples) * 0.99)] * 1e6:.1f} us (target < 1000 us)")  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--only", default="drain,lease")
    options = parser.parse_args()
    if "lease" in options.only:
        lease()
    if "drain" in options.only:
        drain(options.runs)
