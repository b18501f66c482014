"""Benchmark: resolve a 20-file inheritance chain at 500 / 5,000 / 50,000 keys.

Compares expyrun with expyrun 0.2.1 (installed in a cached venv, see tests/legacy_expyrun.py),
both in-process, best of several repeats. Run: `python benchmarks/bench_config.py`.
"""

from __future__ import annotations

import argparse
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
        capture_output=True,
        text=True,
        check=True,
    )
    return float(out.stdout)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="500,5000,50000")
    parser.add_argument("--no-legacy", action="store_true")
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


if __name__ == "__main__":
    main()
