"""Benchmark: how long a big sweep takes to start its first point, and the launcher's peak memory.

A sweep is checked before anything exists (SPEC 9, 10), then its points are produced lazily: the
time to the first point must not grow with the sweep's size beyond checking each swept value once,
and the launcher's memory must stay flat (no list of every point, no `sweep.json` rewritten whole).
For grids of 10^4 (one list of 10^4 values), 10^5 (100 x 1000) and 10^6 (100 x 100 x 100) points,
this starts `expyrun grid.yml` (one job), waits until the first point's entry point runs (it writes
a file), reads the launcher's peak RSS (VmHWM), then stops the sweep with SIGINT.
Target: the first point of the 10^6-point grid within 2 s; peak RSS about the same for every size.
Run: `python benchmarks/bench_sweep_scale.py [SIZES...]` (Linux: reads /proc); sizes 4000, 8000 and 16000
are one swept list of that length.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MODULE = """\
import os, time
def main(name, config):
    open(os.path.join(os.environ["EXPYRUN_CWD"], "started"), "w").close()
    time.sleep(120)
"""

GRIDS: dict[int, list[int]] = {10**4: [10**4], 10**5: [100, 1000], 10**6: [100, 100, 100]}
LISTS = {n: [n] for n in (4000, 8000, 16000)}  # one swept list (`... 4000 8000 16000`): linear, not quadratic


def config(lengths: list[int]) -> str:
    keys = "".join(f"  k{i}: 0\n" for i in range(len(lengths)))
    grid = "".join(f"    p.k{i}: [{', '.join(str(v) for v in range(n))}]\n" for i, n in enumerate(lengths))
    name = "-".join(f"{{p.k{i}}}" for i in range(len(lengths)))
    return (
        f"__run__:\n  __main__: pkg.main:main\n  __name__: grid/r{name}\n  __output_dir__: out\n"
        f"p:\n{keys}__sweep__:\n  grid:\n{grid}"
    )


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def measure(size: int, timeout: float = 600.0) -> tuple[float, float]:
    """Seconds from launch to the first point's entry point running, and the launcher's peak RSS (MB)."""
    root = Path(tempfile.mkdtemp(prefix="bench-sweep-scale-"))
    try:
        (root / "pkg").mkdir()
        (root / "pkg" / "__init__.py").write_text("")
        (root / "pkg" / "main.py").write_text(MODULE)
        (root / "grid.yml").write_text(config(GRIDS[size]))
        path = os.pathsep.join(filter(None, [os.environ.get("PYTHONPATH"), str(root)]))  # (another expyrun first)
        start = time.perf_counter()
        launcher = subprocess.Popen(
            [sys.executable, "-m", "expyrun", "grid.yml"], cwd=root, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE, env={**os.environ, "PYTHONPATH": path},
        )  # fmt: skip
        peak = 0.0
        while not (root / "started").exists():
            if launcher.poll() is not None:
                raise SystemExit(f"{size}: the sweep ended before its first point: {launcher.stderr.read()!r}")  # type: ignore[union-attr]
            if time.perf_counter() - start > timeout:
                launcher.kill()
                raise SystemExit(f"{size}: no point started within {timeout:.0f} s")
            peak = max(peak, peak_rss_mb(launcher.pid))
            time.sleep(0.01)
        elapsed = time.perf_counter() - start
        peak = max(peak, peak_rss_mb(launcher.pid))
        launcher.send_signal(signal.SIGINT)
        try:
            launcher.wait(30)
        except subprocess.TimeoutExpired:
            launcher.kill()
            launcher.wait()
        return elapsed, peak
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    GRIDS.update({n: grid for n, grid in LISTS.items() if n not in GRIDS})
    sizes = [int(float(arg)) for arg in sys.argv[1:]] or [10**4, 10**5, 10**6]
    print(f"{'points':>9} {'grid':>15} {'first point (s)':>16} {'peak RSS (MB)':>14}")
    for size in sizes:
        elapsed, peak = measure(size)
        grid = " x ".join(str(n) for n in GRIDS[size])
        print(f"{size:>9} {grid:>15} {elapsed:>16.2f} {peak:>14.1f}", flush=True)


if __name__ == "__main__":
    main()
