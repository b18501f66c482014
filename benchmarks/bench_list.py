"""Benchmark: `expyrun list DIR --json` and the table over 10,000 run folders made like real runs.

One real launch provides the files; 10,000 copies of its run folder (run.json with a few config
values changed, config.yml, outputs.log) are spread over 10 names. Run: `python benchmarks/bench_list.py`.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RUNS = 10_000


def make_runs(root: Path) -> None:
    (root / "pkg").mkdir()
    (root / "pkg" / "__init__.py").write_text("")
    (root / "pkg" / "main.py").write_text("def main(name, config):\n    return config['lr']\n")
    (root / "c.yml").write_text(
        "__run__:\n  __main__: pkg.main:main\n  __name__: seed\n  __output_dir__: out\n"
        "lr: 0.1\nseed: 0\nmodel: {depth: 3, width: 64}\ndata: {root: /data, workers: 4}\n"
    )
    subprocess.run([sys.executable, "-m", "expyrun", "c.yml", "--debug"], cwd=root, check=True, capture_output=True)
    template = root / "out" / "DEBUG" / "seed" / "exp.0"
    record = json.loads((template / "run.json").read_text())
    config_text = (template / "config.yml").read_text()
    log_text = (template / "outputs.log").read_text()
    for index in range(RUNS):
        name = f"sweep{index % 10}"
        run_dir = root / "runs" / name / f"exp.{index // 10}"
        run_dir.mkdir(parents=True)
        record.update(
            name=name,
            run_dir=str(run_dir),
            result=index / RUNS,
            config={**record["config"], "lr": (index % 7) / 10, "seed": index % 3},
        )
        (run_dir / "run.json").write_text(json.dumps(record, indent=2))
        (run_dir / "config.yml").write_text(config_text)
        (run_dir / "outputs.log").write_text(log_text)


def timed(args: list[str], cwd: Path, repeats: int = 5) -> float:
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "expyrun", *args], cwd=cwd, check=True, capture_output=True)
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        make_runs(root)
        as_json = timed(["list", "runs", "--json"], root)
        table = timed(["list", "runs"], root)
        print(f"list {RUNS} runs: --json {as_json:.2f} s, table (not a terminal) {table:.2f} s")


if __name__ == "__main__":
    main()
