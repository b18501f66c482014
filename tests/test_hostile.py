"""Hostile or odd input: bombs, depth, foreign run folders, terminal escapes, non-finite numbers."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from conftest import RUN_SECTION, files_under, write

BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 9)}]\n" for i in range(8)
)


def one_error_line(result) -> str:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr and "internal error" not in result.stderr, lines
    return lines[0]


def chain(count: int, value: str) -> str:
    return "".join(f"k{i}: '{value.format(n=i + 1)}'\n" for i in range(count)) + f"k{count}: ab\n"


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (BOMB, "c.yml:10: the YAML builds more than 1,000,000 values (aliases expanded)"),
        ("x: " + "[" * 500 + "]" * 500 + "\n", "c.yml:5: nested deeper than 200 levels"),
        ("x: " + "{a: " * 5000 + "1" + "}" * 5000 + "\n", "nested deeper than 200 levels"),
        (chain(40, "{{k{n}}}{{k{n}}}"), "references expand to more than 1,000,000 characters"),
        (chain(5000, "x{{k{n}}}"), "references chain deeper than expyrun can follow"),
    ],
    ids=["alias-bomb", "deep-lists", "deep-mappings", "doubling", "long-chain"],
)
def test_hostile_configs_are_one_line_errors_and_fast(project, expyrun, body, fragment):
    write(project / "c.yml", RUN_SECTION + body)
    before = files_under(project)
    started = time.monotonic()
    result = expyrun("c.yml")
    assert time.monotonic() - started < 20
    assert fragment in one_error_line(result)
    assert files_under(project) == before


def test_non_finite_results_are_valid_json(project, expyrun):
    write(
        project / "pkg" / "main.py",
        "def main(name, config):\n    return {'loss': float('nan'), 'best': float('inf'), 'low': -float('inf')}\n",
    )
    write(project / "c.yml", RUN_SECTION)
    assert expyrun("c.yml").returncode == 0
    text = (project / "outputs" / "demo" / "exp.0" / "run.json").read_text()
    record = json.loads(text, parse_constant=lambda name: pytest.fail(f"{name} is not JSON"))
    assert record["result"] == {"loss": "nan", "best": "inf", "low": "-inf"}
    listed = expyrun("list", "outputs", "--json")
    assert listed.returncode == 0 and "NaN" not in listed.stdout and "Infinity" not in listed.stdout


def test_diff_of_a_crafted_run_folder_with_an_alias_bomb(project, expyrun):
    write(project / "c.yml", RUN_SECTION)
    assert expyrun("c.yml").returncode == 0 and expyrun("c.yml").returncode == 0
    crafted = project / "outputs" / "demo" / "exp.1"
    (crafted / "config.yml").write_text(BOMB)
    started = time.monotonic()
    result = expyrun("diff", "outputs/demo/exp.0", str(crafted))
    assert time.monotonic() - started < 20
    assert "config.yml" in one_error_line(result)


def _two_runs(project: Path, expyrun) -> tuple[Path, Path]:
    write(project / "c.yml", RUN_SECTION)
    assert expyrun("c.yml").returncode == 0 and expyrun("c.yml").returncode == 0
    return project / "outputs" / "demo" / "exp.0", project / "outputs" / "demo" / "exp.1"


def test_list_skips_foreign_run_json_files_with_a_warning(project, expyrun):
    _two_runs(project, expyrun)
    write(project / "outputs" / "foreign" / "run.json", json.dumps({"status": 5, "name": ["x"], "git": "abc"}))
    write(project / "outputs" / "deep" / "run.json", "[" * 100_000 + "]" * 100_000)
    result = expyrun("list", "outputs")
    assert result.returncode == 0, result.stderr
    assert "skipping outputs/foreign/run.json: not a run record (`status` is a int)" in result.stderr
    assert "skipping outputs/deep/run.json: not a run record" in result.stderr
    assert "demo/exp.0" in result.stderr and "demo/exp.1" in result.stderr and "2 runs in outputs" in result.stderr
    listed = expyrun("list", "outputs", "--json")
    assert listed.returncode == 0 and len(listed.stdout.splitlines()) == 2


def test_show_and_diff_with_a_missing_or_non_utf8_config(project, expyrun):
    first, second = _two_runs(project, expyrun)
    (first / "config.yml").unlink()
    (second / "config.yml").write_bytes(b"a: \xff\xfe\n")
    shown = expyrun("show", str(first))
    assert shown.returncode == 0 and "(missing)" in shown.stderr
    shown = expyrun("show", str(second))
    assert shown.returncode == 0 and "a: \ufffd\ufffd" in shown.stderr
    assert "not UTF-8" in one_error_line(expyrun("diff", str(first), str(second)))


def test_show_escapes_terminal_control_sequences(project, expyrun):
    run_dir, _ = _two_runs(project, expyrun)
    record = json.loads((run_dir / "run.json").read_text())
    record["result"] = "\x1b]0;pwned\x07\x1b[2J"
    record["name"] = "demo\x1b[31m"
    (run_dir / "run.json").write_text(json.dumps(record))
    with (run_dir / "outputs.log").open("a") as log:
        log.write("evil \x1b[2J line\n")
    shown = expyrun("show", str(run_dir))
    assert shown.returncode == 0
    assert "\x1b" not in shown.stderr and "\x07" not in shown.stderr
    assert "\\x1b]0;pwned\\x07\\x1b[2J" in shown.stderr and "evil \\x1b[2J line" in shown.stderr


def test_show_reads_a_bounded_tail_of_a_huge_log_line(project, expyrun):
    run_dir, _ = _two_runs(project, expyrun)
    with (run_dir / "outputs.log").open("ab") as log:
        chunk = b"y" * (1 << 20)
        for _ in range(300):
            log.write(chunk)
        log.write(b"\nlast line\n")
    started = time.monotonic()
    shown = expyrun("show", str(run_dir))
    assert shown.returncode == 0 and time.monotonic() - started < 10
    assert shown.stderr.rstrip().endswith("last line") and len(shown.stderr) < 100_000
