"""Benchmark: what logging a metric costs a run, and what reading many runs back costs (SPEC 11.1, 11.2).

1. `expyrun.log(step, loss=x, acc=y)` called 1,000,000 times in a run folder, against the floor:
   the same loop writing the same JSON lines itself, one `os.write` each (one system call per call,
   which SPEC 11.1 requires: no buffering in the process). Best of 3 rounds each. Target: <= 2.0x.
2. The same call in other trackers, each installed in a virtual environment of its own (never in
   expyrun's): MLflow `log_metrics` to a local file store, Aim `Run.track` (two calls, one per
   metric, as Aim takes one value a call), W&B `wandb.log` offline. They are much slower per call,
   so each makes fewer calls and the cost is compared per call. Target: expyrun >= 20x faster.
   Give their interpreters with `--mlflow PY --aim PY --wandb PY`; one not given is reported as not
   measured.
3. `expyrun.runs(DIR).metrics_frame("loss")` over 1,000 runs of 10,000 steps each (the files are
   written first, in the format `expyrun.log` writes, and ended as a run's end does: its summary and
   `.metrics.columns`; the page cache is warm). Target: < 3 s. Also measured once without the
   columns files (runs still running: `metrics.jsonl` parsed).
4. `expyrun.runs(DIR).to_pandas()` of 10,000 runs (records with a config of 12 keys and a metric
   summary). Target: < 2 s (finding and reading the records, then the frame).

Run: `python benchmarks/bench_metrics.py [--calls N] [--mlflow PY] [--aim PY] [--wandb PY] [--quick]`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROUNDS = 3


def bench_log(folder: Path, calls: int) -> tuple[float, float]:
    """Seconds (wall, CPU) for `calls` calls of `expyrun.log(step, loss=x, acc=y)` in a run folder (fresh process)."""
    script = f"""
import os, sys, time
os.environ["EXPYRUN_RUN_DIR"] = sys.argv[1]
import expyrun
log = expyrun.log
log(0, loss=0.0, acc=0.0)  # the first call opens the file
started, cpu = time.perf_counter(), time.process_time()
for i in range({calls}):
    log(i, loss=i * 1e-6, acc=1.0 - i * 1e-7)
print(time.perf_counter() - started, time.process_time() - cpu)
"""
    return _timed(script, folder)


def bench_floor(folder: Path, calls: int) -> tuple[float, float]:
    """Seconds (wall, CPU) for the same lines written by the loop itself: the line formatted, one `os.write`."""
    script = f"""
import os, sys, time
fd = os.open(os.path.join(sys.argv[1], "metrics.jsonl"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
t0 = time.time()
started, cpu = time.perf_counter(), time.process_time()
for i in range({calls}):
    x, y = i * 1e-6, 1.0 - i * 1e-7
    t = round(time.time() - t0, 4)
    os.write(fd, f'{{{{"step": {{i}}, "time": {{t!r}}, "loss": {{x!r}}, "acc": {{y!r}}}}}}\\n'.encode())
print(time.perf_counter() - started, time.process_time() - cpu)
"""
    return _timed(script, folder)


def _timed(script: str, folder: Path, python: str = sys.executable) -> tuple[float, float]:
    """What a timing script printed last: wall seconds and CPU seconds (the process's user + system
    time, which other programs on a shared machine do not inflate)."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "EXPYRUN_"))}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parent.parent)
    result = subprocess.run([python, "-c", script, str(folder)], capture_output=True, text=True, env=env, check=False)
    if result.returncode != 0:
        raise RuntimeError(result.stderr[-2000:])
    wall, cpu = result.stdout.strip().splitlines()[-1].split()
    return float(wall), float(cpu)


OTHERS = {
    "mlflow": (
        2_000,
        """
import os, sys, time
os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"  # MLflow 3 refuses its file store unless told (in maintenance)
import mlflow
mlflow.set_tracking_uri("file:" + os.path.join(sys.argv[1], "mlruns"))
with mlflow.start_run():
    mlflow.log_metrics({"loss": 0.0, "acc": 0.0}, step=0)
    started, cpu = time.perf_counter(), time.process_time()
    for i in range(CALLS):
        mlflow.log_metrics({"loss": i * 1e-6, "acc": 1.0 - i * 1e-7}, step=i)
    print(time.perf_counter() - started, time.process_time() - cpu)
""",
    ),
    "aim": (
        20_000,
        """
import sys, time
from aim import Run
run = Run(repo=sys.argv[1])
run.track(0.0, name="loss", step=0)
started, cpu = time.perf_counter(), time.process_time()
for i in range(CALLS):
    run.track(i * 1e-6, name="loss", step=i)
    run.track(1.0 - i * 1e-7, name="acc", step=i)
print(time.perf_counter() - started, time.process_time() - cpu)
run.close()
""",
    ),
    "wandb": (
        20_000,
        """
import os, sys, time
os.environ["WANDB_MODE"] = "offline"
os.environ["WANDB_SILENT"] = "true"
import wandb
run = wandb.init(dir=sys.argv[1], project="bench")
wandb.log({"loss": 0.0, "acc": 0.0}, step=0)
started, cpu = time.perf_counter(), time.process_time()
for i in range(CALLS):
    wandb.log({"loss": i * 1e-6, "acc": 1.0 - i * 1e-7}, step=i + 1)
elapsed = time.perf_counter() - started, time.process_time() - cpu
run.finish()
print(*elapsed)
""",
    ),
}


def bench_other(name: str, python: str, folder: Path, scale: float) -> tuple[int, tuple[float, float]]:
    calls = max(200, int(OTHERS[name][0] * scale))
    return calls, _timed(OTHERS[name][1].replace("CALLS", str(calls)), folder, python)


def write_runs(root: Path, count: int, steps: int, columns: bool = True) -> None:
    """`count` completed runs, each with a record and (when `steps`) `steps` lines of loss and acc,
    ended as a run ends (`columns`: with the `.metrics.columns` the end of a run writes)."""
    from expyrun.track.metrics import finish_fields

    config = {
        "optim": {"lr": 0.1, "momentum": 0.9, "name": "sgd"}, "model": {"width": 64, "depth": 4, "name": "cnn"},
        "data": {"name": "mnist", "batch": 128, "workers": 4}, "seed": 0, "epochs": 10, "note": "x",
    }  # fmt: skip
    lines = None
    if steps:
        lines = "".join(
            f'{{"step": {s}, "time": {s * 0.01!r}, "loss": {1.0 / (s + 1)!r}, "acc": {s / steps!r}}}\n'
            for s in range(steps)
        ).encode()
    for index in range(count):
        run_dir = root / f"run{index // 100}" / f"exp.{index % 100}"
        run_dir.mkdir(parents=True)
        config["seed"] = index
        record = {
            "schema_version": 2, "status": "completed", "name": f"run{index // 100}", "run_dir": str(run_dir),
            "started_at": "2026-12-06T18:00:00.000+00:00", "ended_at": "2026-12-06T18:01:00.000+00:00",
            "duration_s": 60.0, "exit_code": 0, "result": index * 0.001, "pid": 1, "host": "elsewhere",
            "metrics": {"loss": {"last": 0.1, "min": 0.1, "max": 1.0, "step": 9, "count": 10}},
            "config": config,
        }  # fmt: skip
        (run_dir / "run.json").write_text(json.dumps(record, indent=1))
        if lines is not None:
            (run_dir / "metrics.jsonl").write_bytes(lines)
            if columns:  # what the end of a run writes: the summary's read, and `.metrics.columns`
                finish_fields(run_dir)


def bench_read(root: Path, call: str, rounds: int = ROUNDS) -> tuple[float, float]:
    """Seconds (wall, CPU) for `expyrun.runs(root)` then `call` on it, in a fresh process (best of 3)."""
    script = f"""
import sys, time
import expyrun, pandas
started, cpu = time.perf_counter(), time.process_time()
frame = expyrun.runs(sys.argv[1]).{call}
print(len(frame), file=sys.stderr)
print(time.perf_counter() - started, time.process_time() - cpu)
"""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "EXPYRUN_"))}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parent.parent)
    best = (float("inf"), float("inf"))
    for _ in range(rounds):
        result = subprocess.run([sys.executable, "-c", script, str(root)], capture_output=True, text=True, env=env,
                                check=True)  # fmt: skip
        wall, cpu = (float(part) for part in result.stdout.split())
        best = min(best, (wall, cpu))
    return best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1_000_000)
    parser.add_argument("--quick", action="store_true", help="a tenth of every size (a smoke test)")
    for name in OTHERS:
        parser.add_argument(f"--{name}", metavar="PYTHON", help=f"an interpreter with {name} installed")
    args = parser.parse_args()
    scale = 0.1 if args.quick else 1.0
    calls = int(args.calls * scale)
    work = Path(tempfile.mkdtemp(prefix="expyrun-bench-metrics-"))
    try:
        logged = min((bench_log(work / "log", calls) for _ in range(ROUNDS)), key=lambda t: t[1])
        floor = min((bench_floor(work / "floor", calls) for _ in range(ROUNDS)), key=lambda t: t[1])
        per_call = logged[1] / calls
        print(f"expyrun.log x{calls}: CPU {logged[1]:.3f} s ({per_call * 1e6:.2f} us/call), wall {logged[0]:.3f} s; "
              f"floor CPU {floor[1]:.3f} s ({floor[1] / calls * 1e6:.2f} us/call), wall {floor[0]:.3f} s; "
              f"ratio CPU {logged[1] / floor[1]:.2f}x, wall {logged[0] / floor[0]:.2f}x (target <= 2.0x)")  # fmt: skip
        for name in OTHERS:
            python = getattr(args, name)
            if not python:
                print(f"{name}: not measured (no --{name} interpreter)")
                continue
            try:
                count, (wall, cpu) = bench_other(name, python, work / name, scale)
            except RuntimeError as error:
                print(f"{name}: failed: {str(error).strip().splitlines()[-1] if str(error).strip() else error}")
                continue
            print(f"{name} x{count}: CPU {cpu:.3f} s ({cpu / count * 1e6:.1f} us/call), wall {wall:.3f} s "
                  f"({wall / count * 1e6:.1f} us/call): expyrun.log is {cpu / count / per_call:.0f}x faster per call "
                  f"in CPU, {wall / count / (logged[0] / calls):.0f}x in wall time (target >= 20x)")  # fmt: skip
        runs, steps = int(1000 * scale), int(10_000 * scale)
        write_runs(work / "frames", runs, steps)
        wall, cpu = bench_read(work / "frames", 'metrics_frame("loss")')
        print(f'runs(DIR).metrics_frame("loss"), {runs} runs x {steps} steps: {wall:.2f} s (CPU {cpu:.2f} s; '
              "target < 3 s)")  # fmt: skip
        for run_dir in (work / "frames").glob("*/exp.*"):  # as while the runs still run: text only
            (run_dir / ".metrics.columns").unlink()
        wall, cpu = bench_read(work / "frames", 'metrics_frame("loss")', rounds=1)
        print(f"  the same from metrics.jsonl alone (runs still running, no .metrics.columns): {wall:.2f} s "
              f"(CPU {cpu:.2f} s)")  # fmt: skip
        shutil.rmtree(work / "frames")
        count = int(10_000 * scale)
        write_runs(work / "table", count, 0)
        wall, cpu = bench_read(work / "table", "to_pandas()")
        print(f"runs(DIR).to_pandas(), {count} runs: {wall:.2f} s (CPU {cpu:.2f} s; target < 2 s)")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
