"""Benchmark: resolve a 20-file inheritance chain at 500 / 5,000 / 50,000 keys.

Compares expyrun with expyrun 0.2.1 (installed in a cached venv, see tests/legacy_expyrun.py),
both in-process, best of several repeats. Then the whole command as a user runs it,
`expyrun tree.yml --debug` on the largest chain (read, resolve, write `raw_config.yml`,
`config.yml` and `run.json`, run a trivial entry point): median of several subprocess runs,
interleaved with a yardstick measured in the same run (`python -c "import yaml"`), so that the
ratio holds when the machine is busier. Run: `python benchmarks/bench_config.py`.
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

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

FILES = 20
LEGACY_TIMER = """\
import sys, time, warnings
warnings.simplefilter("ignore")
from expyrun import config, main
best = float("inf")
for _ in range(int(sys.argv[2])):
    start = time.perf_counter()
    config.Parser(main.build_config(sys.argv[1], [])).parse()
    best = min(best, time.perf_counter() - start)
print(best)
"""


def write_chain(folder: Path, total_keys: int) -> Path:
    """20 files, each inheriting from the previous; groups of 10 keys, some overridden, some refs."""
    per_file = total_keys // FILES
    for index in range(FILES):
        lines = []
        if index == 0:
            lines += ["__run__:", "  __main__: pkg.main:main", "  __name__: bench", "  __output_dir__: out"]
        else:
            lines += [f"__default__: ./f{index - 1}.yml", "__new_key_policy__: pass"]
        for group in range(per_file // 10):
            lines.append(f"g{index}_{group}:")
            for key in range(8):
                lines.append(f"  k{key}: {index * 1000 + group * 10 + key}")
            lines.append(f"  s: text_{group}")
            lines.append(f'  r: "{{g{index}_{group}.k1}}"')
        if index:  # override a few keys of the parent
            lines += [f"g{index - 1}_0:", "  k0: -1"]
        (folder / f"f{index}.yml").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (folder / "pkg").mkdir(exist_ok=True)
    (folder / "pkg" / "__init__.py").write_text("")
    (folder / "pkg" / "main.py").write_text("def main(name, config):\n    return 0\n")
    return folder / f"f{FILES - 1}.yml"


def time_ours(config: Path, repeats: int) -> float:
    from expyrun.config import resolve_config

    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        resolve_config(config, cwd=config.parent)
        best = min(best, time.perf_counter() - start)
    return best


def time_legacy(python: Path, config: Path, repeats: int) -> float:
    out = subprocess.run(
        [str(python), "-c", LEGACY_TIMER, config.name, str(repeats)],
        cwd=config.parent,
        env=clean_env(),  # PYTHONPATH would import this expyrun instead of 0.2.1
        capture_output=True,
        text=True,
        check=True,
    )
    return float(out.stdout)


Command = tuple[list[str], dict[str, str]]


def clean_env() -> dict[str, str]:
    """The environment without PYTHON*/EXPYRUN_* settings: bytecode is cached as for users."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "EXPYRUN_"))}


def ours_command(*args: str) -> Command:
    """`expyrun ARGS` running the expyrun this script imports (the in-process figures' code)."""
    import expyrun

    env = clean_env()
    env["PYTHONPATH"] = str(Path(expyrun.__file__).resolve().parents[1])
    return [sys.executable, "-m", "expyrun", *args], env


def legacy_command(python: Path, *args: str) -> Command:
    """The `expyrun` script of the legacy venv, as a user of 0.2.1 types it."""
    return [str(python.parent / "expyrun"), *args], clean_env()


def time_commands(commands: dict[str, Command], cwd: Path, rounds: dict[str, int]) -> dict[str, list[float]]:
    """Wall time of each command, rounds interleaved so that a load change hits them all alike."""
    times: dict[str, list[float]] = {name: [] for name in commands}
    for argv, env in commands.values():  # warm-up: bytecode caches, file system caches
        subprocess.run(argv, cwd=cwd, env=env, capture_output=True, check=True)
    for round_ in range(max(rounds.values())):
        for name, (argv, env) in commands.items():
            if round_ >= rounds[name]:
                continue
            start = time.perf_counter()
            subprocess.run(argv, cwd=cwd, env=env, capture_output=True, check=True)
            times[name].append(time.perf_counter() - start)
        shutil.rmtree(cwd / "out", ignore_errors=True)  # run folders of 50,000 keys pile up
    return times


def bench_cli(size: int, legacy: Path | None, repeats: int) -> None:
    """`expyrun tree.yml --debug` end to end, with the yardstick and expyrun 0.2.1."""
    yardstick_name, ours_name, legacy_name = 'python -c "import yaml"', "expyrun tree.yml --debug", "expyrun 0.2.1"
    legacy_repeats = max(3, repeats // 3)  # about 7 s a run
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        last = write_chain(folder, size)
        (folder / "tree.yml").write_text(last.read_text(encoding="utf-8"), encoding="utf-8")
        commands = {
            yardstick_name: ([sys.executable, "-c", "import yaml"], clean_env()),
            ours_name: ours_command("tree.yml", "--debug"),
        }
        rounds = dict.fromkeys(commands, repeats)
        if legacy is not None:
            commands[legacy_name] = legacy_command(legacy, "tree.yml", "--debug")
            rounds[legacy_name] = legacy_repeats
        times = time_commands(commands, folder, rounds)
    yardstick = statistics.median(times[yardstick_name])
    of_legacy = f" (0.2.1: of {legacy_repeats})" if legacy is not None else ""
    print(f"\nwhole command, {size:,} keys: median of {repeats}{of_legacy}, rounds interleaved")
    print(f"{'command':<28} {'median':>10} {'min':>10} {'x yardstick':>12}")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"{name:<28} {median * 1e3:>8.0f}ms {min(values) * 1e3:>8.0f}ms {median / yardstick:>11.1f}x")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="500,5000,50000")
    parser.add_argument("--no-legacy", action="store_true")
    parser.add_argument("--cli-keys", type=int, default=50000, help="keys of the whole-command figure (0: skip)")
    parser.add_argument("--cli-repeats", type=int, default=9)
    args = parser.parse_args()
    python = None
    if not args.no_legacy:
        from legacy_expyrun import legacy_python

        python = legacy_python()
    print(f"{'keys':>8} {'expyrun':>10} {'us/key':>8} {'0.2.1':>10} {'us/key':>8} {'speed-up':>9}")
    for size in (int(s) for s in args.sizes.split(",")):
        repeats = 5 if size <= 5000 else 3
        with tempfile.TemporaryDirectory() as tmp:
            config = write_chain(Path(tmp), size)
            ours = time_ours(config, repeats)
            legacy = time_legacy(python, config, repeats) if python else float("nan")
        print(
            f"{size:>8} {ours * 1e3:>8.1f}ms {ours / size * 1e6:>8.1f} {legacy * 1e3:>8.1f}ms "
            f"{legacy / size * 1e6:>8.1f} {legacy / ours:>8.1f}x"
        )
    if args.cli_keys:
        bench_cli(args.cli_keys, python, args.cli_repeats)


if __name__ == "__main__":
    main()
