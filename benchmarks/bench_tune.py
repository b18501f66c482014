"""Benchmark: per-trial overhead of an expyrun study, inline and process isolation.

Per-trial cost = (wall time of a study of N trials - wall time of a study of 1 trial) / (N - 1),
so launch costs cancel out (best of 3 rounds of each). Compared with a plain Optuna loop (`study.optimize`) on the same
storage kind (a journal file) and in memory, and with a bare `python -c pass`. Then the same with
an entry-point module that takes 0.5 s to import (`time.sleep` at import, standing for torch):
process isolation must stay within 1.2x the inline figure + 20 ms, i.e. pay the import once per
worker process, not once per trial.
Run: `python benchmarks/bench_tune.py`.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CONFIG = """\
__run__:
  __main__: pkg.main:main
  __name__: bench
  __output_dir__: out
x: 0.0
__optuna__:
  n_trials: {n}
  isolation: {isolation}
  sampler: {{name: RandomSampler, seed: 0}}
  search_space:
    x: {{type: float, low: -1, high: 1}}
"""
PLAIN = """\
import sys, time, optuna
from optuna.storages.journal import JournalFileBackend
optuna.logging.set_verbosity(optuna.logging.WARNING)
storage = None if sys.argv[1] == "memory" else optuna.storages.JournalStorage(JournalFileBackend(sys.argv[1]))
study = optuna.create_study(storage=storage, sampler=optuna.samplers.RandomSampler(seed=0))
n = int(sys.argv[2])
start = time.perf_counter()
study.optimize(lambda t: t.suggest_float("x", -1, 1) ** 2, n_trials=n)
print((time.perf_counter() - start) / n)
"""


def study_seconds(folder: Path, isolation: str, n: int) -> float:
    (folder / "c.yml").write_text(CONFIG.format(n=n, isolation=isolation))
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "expyrun", "c.yml"], cwd=folder, check=True, capture_output=True)
    return time.perf_counter() - start


MODULE = "def main(name, config):\n    return config['x'] ** 2\n"
HEAVY_MODULE = (
    "import time\n\ntime.sleep(0.5)  # a heavy import (torch, jax), paid by whoever imports this\n\n" + MODULE
)


def per_trial(isolation: str, n: int, module: str = MODULE, repeat: int = 3) -> float:
    """The best of `repeat` rounds for each study length: other work on the machine only adds time."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "pkg").mkdir()
        (folder / "pkg" / "__init__.py").write_text("")
        (folder / "pkg" / "main.py").write_text(module)
        ones, manys = [], []
        for _ in range(repeat):
            ones.append(study_seconds(folder, isolation, 1))
            shutil.rmtree(folder / "out")  # each study starts anew
            manys.append(study_seconds(folder, isolation, n))
            shutil.rmtree(folder / "out")
        return (min(manys) - min(ones)) / (n - 1)


def plain(storage: str, n: int) -> float:
    out = subprocess.run([sys.executable, "-c", PLAIN, storage, str(n)], capture_output=True, text=True, check=True)
    return float(out.stdout)


def bare_python() -> float:
    samples = []
    for _ in range(10):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        samples.append(time.perf_counter() - start)
    return min(samples)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        journal = plain(str(Path(tmp) / "plain.journal"), 200)
    memory = plain("memory", 200)
    inline = per_trial("inline", 101)
    process = per_trial("process", 51)
    bare = bare_python()
    heavy_inline = per_trial("inline", 41, HEAVY_MODULE)
    heavy_process = per_trial("process", 41, HEAVY_MODULE)
    target = 1.2 * heavy_inline + 0.020
    print(f"plain optuna loop: {memory * 1e3:.1f} ms/trial in memory, {journal * 1e3:.1f} ms/trial on a journal file")
    print(f"expyrun inline:  {inline * 1e3:.1f} ms/trial = plain journal + {(inline - journal) * 1e3:.1f} ms")
    print(
        f"expyrun process: {process * 1e3:.1f} ms/trial = {process / bare:.2f}x "
        f"a bare python start ({bare * 1e3:.1f} ms)"
    )
    print(
        f"0.5 s import: inline {heavy_inline * 1e3:.1f} ms/trial, process {heavy_process * 1e3:.1f} ms/trial "
        f"= {heavy_process / heavy_inline:.2f}x inline; target <= 1.2x inline + 20 ms = {target * 1e3:.1f} ms: "
        f"{'met' if heavy_process <= target else 'MISSED'}"
    )


if __name__ == "__main__":
    main()
