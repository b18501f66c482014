"""Benchmark: trials per second of a study whose entry point evaluates a batch of settings in one
vectorised pass (`batch_size: 16`) against the same study one setting per call (`batch_size: 1`).

The objective trains small linear models by gradient descent with NumPy, all the settings of a
call at once (one array operation per step for every model, as a vectorised runner trains many
small models in one pass on one GPU): a call costs about the same for 1 or 16 settings, so a
batch pays it once for 16 trials. Trials per second = 1 / per-trial cost, per-trial cost =
(study of N trials - study of 16 trials) / (N - 16), so the launch and the first worker's start
cancel out (best of 3 rounds of each). Process isolation, the default journal storage, one job.
Target: batch_size 16 at least 5x the trials per second of batch_size 1.
Run: `python benchmarks/bench_batch.py`.
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
optim: {{lr: 0.01, weight_decay: 0.0}}
__optuna__:
  n_trials: {n}
  batch_size: {batch}
  sampler: {{name: RandomSampler, seed: 0}}
  search_space:
    optim.lr: {{type: float, low: 1.0e-3, high: 0.3, log: true}}
    optim.weight_decay: {{type: float, low: 0.0, high: 0.1}}
"""

MODULE = """\
import numpy as np

STEPS = 40000
_rng = np.random.default_rng(0)
X = _rng.normal(size=(64, 8))
Y = X @ _rng.normal(size=8) + 0.1 * _rng.normal(size=64)


def main(name, configs):
    lr = np.array([c["optim"]["lr"] for c in configs])[:, None]
    weight_decay = np.array([c["optim"]["weight_decay"] for c in configs])[:, None]
    weights = np.zeros((len(configs), X.shape[1]))  # one small model per setting
    for _ in range(STEPS):  # every model takes its step in the same array operations
        gradient = (weights @ X.T - Y) @ X / len(Y) + weight_decay * weights
        weights -= lr * gradient
    return ((weights @ X.T - Y) ** 2).mean(axis=1)  # one loss per config
"""

BATCH = 16
SHORT, LONG = 16, 80


def study_seconds(folder: Path, batch: int, n: int) -> float:
    (folder / "c.yml").write_text(CONFIG.format(n=n, batch=batch))
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "expyrun", "c.yml"], cwd=folder, check=True, capture_output=True)
    return time.perf_counter() - start


def per_trial(batch: int, repeat: int = 3) -> float:
    """The best of `repeat` rounds for each study length: other work on the machine only adds time."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "pkg").mkdir()
        (folder / "pkg" / "__init__.py").write_text("")
        (folder / "pkg" / "main.py").write_text(MODULE)
        shorts, longs = [], []
        for _ in range(repeat):
            shorts.append(study_seconds(folder, batch, SHORT))
            shutil.rmtree(folder / "out")  # each study starts anew
            longs.append(study_seconds(folder, batch, LONG))
            shutil.rmtree(folder / "out")
        return (min(longs) - min(shorts)) / (LONG - SHORT)


def call_seconds(batch: int, repeat: int = 5) -> float:
    """One call of the entry point for `batch` settings, in this process."""
    namespace: dict = {}
    exec(MODULE, namespace)
    configs = [{"optim": {"lr": 0.01, "weight_decay": 0.01}}] * batch
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        namespace["main"]("bench", configs)
        samples.append(time.perf_counter() - start)
    return min(samples)


def main() -> None:
    single, batched = per_trial(1), per_trial(BATCH)
    ratio = single / batched
    print(f"one call of the objective: {call_seconds(1) * 1e3:.1f} ms for 1 setting, "
          f"{call_seconds(BATCH) * 1e3:.1f} ms for {BATCH}")  # fmt: skip
    print(f"batch_size 1:  {single * 1e3:.1f} ms/trial = {1 / single:.1f} trials/s")
    print(f"batch_size {BATCH}: {batched * 1e3:.1f} ms/trial = {1 / batched:.1f} trials/s")
    print(f"ratio: {ratio:.1f}x; target >= 5x: {'met' if ratio >= 5 else 'MISSED'}")


if __name__ == "__main__":
    main()
