"""Silent mistakes (SPEC 1): a misspelt section, `__run__` key, flag or command is refused with a
did-you-mean, exit 2 and nothing created, instead of running something else than was meant; and
expyrun's own ends (Ctrl-C of a study, a study with no completed trial) are one line, not a traceback.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import RUN_SECTION, clean_env, files_under, write

RUN = RUN_SECTION
STUDY = """\
x: 0.5
__optuna__:
  n_trials: 2
  direction: minimize
  search_space:
    x: {type: float, low: 0, high: 1}
"""


def assert_refused(project, result, fragments: list[str]) -> None:
    """Exit 2, one `expyrun: error:` line holding every fragment, no traceback, nothing on disk."""
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if not line.startswith("expyrun: warning:")]
    assert len(lines) == 1 and lines[0].startswith("expyrun: error:"), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], result.stderr
    assert "Traceback" not in result.stderr
    assert not (project / "outputs").exists(), files_under(project / "outputs")


# (id, config text, message fragments)
SECTION_CASES = [
    (
        "optuna-one-underscore",
        RUN + STUDY.replace("__optuna__", "__optuna_"),
        ["c.yml:6", "`__optuna_`", "`__optuna__`"],
    ),
    ("launch-misspelt", RUN + "__lauch__: {jobs: 2}\n", ["c.yml:5", "`__lauch__`", "did you mean `__launch__`?"]),
    ("sweeps-plural", RUN + "lr: 0.1\n__sweeps__: {grid: {lr: [0.1, 0.2]}}\n", ["`__sweeps__`", "`__sweep__`"]),
    ("optuna-leading-underscore", RUN + STUDY.replace("__optuna__", "_optuna__"), ["`_optuna__`", "`__optuna__`"]),
    ("policy-misspelt", RUN + "__new_key_polcy__: raise\n", ["`__new_key_polcy__`", "`__new_key_policy__`"]),
    ("unknown-dunder", RUN + "__notes__: 1\n", ["c.yml:5", "`__notes__`", "keys starting with `__` are reserved"]),
    ("run-key-misspelt", RUN + "  __nmae__: other\n", ["c.yml:5", "`__run__.__nmae__`", "did you mean `__name__`?"]),
    ("run-key-plain", RUN + "  code: src\n", ["`__run__.code`", "did you mean `__code__`?"]),
]


@pytest.mark.parametrize(("text", "fragments"), [c[1:] for c in SECTION_CASES], ids=[c[0] for c in SECTION_CASES])
def test_an_unknown_reserved_section_or_run_key_is_refused_before_anything_runs(project, expyrun, text, fragments):
    write(project / "c.yml", text)
    assert_refused(project, expyrun("c.yml"), fragments)


def test_a_misspelt_default_names_default_not_a_missing_run_section(project, expyrun):
    write(project / "base.yml", RUN + "lr: 0.1\n")
    write(project / "c.yml", "__defaults__: base.yml\nlr: 0.2\n")
    assert_refused(project, expyrun("c.yml"), ["c.yml:1", "`__defaults__`", "did you mean `__default__`?"])


def test_a_misspelt_section_added_on_the_command_line_is_refused(project, expyrun):
    write(project / "c.yml", RUN)
    assert_refused(project, expyrun("c.yml", "--+__run__.__nmae__", "x"), ["--__run__.__nmae__", "`__name__`"])


def test_every_documented_run_key_is_still_accepted(project, expyrun):
    write(project / "scripts" / "train.sh", "echo ok > score.txt\n")
    write(project / "scripts" / "params.cfg.j2", "lr={{ lr }}\n")
    write(
        project / "cmd.yml",
        f"""\
        __run__:
          __command__: [bash, train.sh]
          __name__: cmd
          __output_dir__: outputs
          __code__: scripts
          __templates__: [params.cfg.j2]
          __result__: score.txt
          __ignore_exit_code__: false
          __secrets__: ["*TOKEN*"]
          __max_file_mb__: 5
          __python__: {sys.executable}
        __new_key_policy__: raise
        lr: 0.1
        """,
    )
    result = expyrun("cmd.yml", "--dry-run")
    assert result.returncode == 0, result.stderr
    assert "__ignore_exit_code__: false" in result.stdout


# (id, argv after writing c.yml, message fragments)
FLAG_CASES = [
    ("dryrun-last", ["c.yml", "--dryrun"], ["unknown flag `--dryrun`", "did you mean `--dry-run`?"]),
    ("dryrun-before-override", ["c.yml", "--dryrun", "--lr", "0.2"], ["`--dryrun`", "`--dry-run`"]),
    ("dryrun-before-config", ["--dryrun", "c.yml"], ["unknown flag `--dryrun`", "`--dry-run`"]),
    ("debug-capitalised", ["c.yml", "--Debug"], ["unknown flag `--Debug`", "did you mean `--debug`?"]),
    ("needed-misspelt", ["c.yml", "--neded"], ["unknown flag `--neded`", "did you mean `--needed`?"]),
    ("dry-run-underscore", ["c.yml", "--dry_run", "--lr=0.2"], ["`--dry_run`", "`--dry-run`"]),
    ("one-dash", ["c.yml", "-debug"], ["unknown flag `-debug`", "`--debug`"]),
    ("with-a-value-and-no-such-key", ["c.yml", "--explian", "1"], ["`--explian`", "`--explain`", "no key `explian`"]),
    ("option-then-option", ["c.yml", "--lr", "--seed", "1"], ["--lr: missing value", "--debug, --dry-run"]),
]


@pytest.mark.parametrize(("argv", "fragments"), [c[1:] for c in FLAG_CASES], ids=[c[0] for c in FLAG_CASES])
def test_a_misspelt_flag_is_named_with_the_flag_it_is_close_to(project, expyrun, argv, fragments):
    write(project / "c.yml", RUN + "lr: 0.1\nseed: 0\n")
    assert_refused(project, expyrun(*argv), fragments)


def test_a_config_key_shaped_like_a_flag_is_still_an_override(project, expyrun):
    write(project / "c.yml", RUN + "dryrun: 0\n")
    result = expyrun("c.yml", "--dryrun", "1", "--dry-run")
    assert result.returncode == 0, result.stderr
    assert "dryrun: 1" in result.stdout


def test_a_value_starting_with_two_dashes_is_given_with_an_equals_sign(project, expyrun):
    write(project / "c.yml", RUN + "extra: ''\n")
    result = expyrun("c.yml", "--extra=--verbose", "--dry-run")
    assert result.returncode == 0, result.stderr
    assert "extra: --verbose" in result.stdout


@pytest.mark.parametrize(("word", "command"), [("lst", "list"), ("shwo", "show"), ("dif", "diff")])
def test_a_misspelt_command_is_named_with_the_command_it_is_close_to(project, expyrun, word, command):
    assert_refused(project, expyrun(word, "x"), [f"`{word}`: no such command", f"did you mean `expyrun {command}`?"])


def test_a_file_named_like_a_misspelt_command_is_a_config(project, expyrun):
    write(project / "lst", RUN)
    assert expyrun("lst", "--dry-run").returncode == 0


def test_help_lists_every_flag(expyrun):
    shown = expyrun("--help").stdout
    for flag in ("--debug", "--dry-run", "--explain", "--needed"):
        assert f"[{flag}]" in shown.splitlines()[0] and f"  {flag} " in shown


STUDY_ENTRY = """\
import os
import time


def main(name, config):
    if config["fail"]:
        raise ValueError("every trial fails")
    open(os.path.join(os.environ["EXPYRUN_CWD"], "trial-started"), "w").close()
    time.sleep(60)
    return config["x"]
"""


def expyruns_own_tracebacks(shown: str) -> list[str]:
    """The tracebacks on expyrun's streams that are not a trial's own: a trial's output, its traceback
    included, reaches expyrun's streams as a plain run's does (SPEC 3.3); each of those ends in the
    trial's code (`pkg/study.py`). Any other would be expyrun's own."""
    blocks = shown.split("Traceback (most recent call last):")[1:]
    return [block for block in blocks if "pkg/study.py" not in block]


def write_study(project, isolation: str, fail: bool) -> None:
    write(project / "pkg" / "study.py", STUDY_ENTRY)
    run = RUN.replace("pkg.main:main", "pkg.study:main")
    write(project / "s.yml", run + f"fail: {str(fail).lower()}\n" + STUDY + f"  isolation: {isolation}\n")


@pytest.mark.parametrize("isolation", ["process", "inline"])
def test_a_study_with_no_completed_trial_ends_with_one_line_and_exit_1(project, expyrun, isolation):
    write_study(project, isolation, fail=True)
    result = expyrun("s.yml")
    assert result.returncode == 1, result.stderr
    assert not expyruns_own_tracebacks(result.stderr + result.stdout), result.stderr
    assert result.stderr.count("ValueError: every trial fails") >= 1  # the trials' own, shown as a run's
    frames = [line for line in result.stderr.splitlines() if line.startswith("  File ")]
    assert frames and all("pkg/study.py" in frame for frame in frames), result.stderr  # none of expyrun's
    errors = [line for line in result.stderr.splitlines() if line.startswith("expyrun: error:")]
    assert len(errors) == 1 and "the study has no completed trial" in errors[0], result.stderr


@pytest.mark.parametrize("isolation", ["process", "inline"])
def test_ctrl_c_of_a_study_ends_with_one_line_and_exit_130(project, isolation):
    write_study(project, isolation, fail=False)
    process = subprocess.Popen(  # its own process group, as a shell's foreground job: Ctrl-C reaches all of it
        [sys.executable, "-m", "expyrun", "s.yml"], cwd=project, env=clean_env(), start_new_session=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while not (project / "trial-started").exists():
        if time.monotonic() > deadline or process.poll() is not None:
            process.kill()
            pytest.fail(f"no trial started within 60 s: {process.communicate()}")
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGINT)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert not expyruns_own_tracebacks(stdout + stderr), stdout + stderr
    assert all("pkg/study.py" in line for line in stderr.splitlines() if line.startswith("  File ")), stderr
    assert [line for line in stderr.splitlines() if line.startswith("expyrun:") and "interrupted: " in line] == [
        f"expyrun: warning: interrupted: {project / 'outputs' / 'demo' / 'exp.0'}"
    ], stderr
    record = json.loads((project / "outputs" / "demo" / "exp.0" / "run.json").read_text())
    assert record["status"] == "interrupted" and (project / "outputs" / "demo" / "exp.0" / "study.json").is_file()


MAPPING_ENTRY = """\
def main(name, config):
    return {"validation_loss": config["lr"] / 7, "validation_accuracy": 0.987654321, "epochs": 10}
"""


def test_list_and_show_a_sweep_give_every_value_of_a_mapping_result(project, expyrun):
    write(project / "pkg" / "mapping.py", MAPPING_ENTRY)
    run = RUN.replace("pkg.main:main", "pkg.mapping:main")
    write(project / "sweep.yml", run + "lr: 0.1\n__sweep__: {grid: {lr: [0.1, 0.2]}}\n")
    assert expyrun("sweep.yml").returncode == 0
    listed = expyrun("list", "outputs").stderr
    shown = expyrun("show", "outputs/sweep/sweep.0").stderr
    for lr, row in ((0.1, "demo/exp.0"), (0.2, "demo/exp.1")):
        values = f"val_loss={lr / 7:.6g} val_accuracy=0.987654 epochs=10"  # keys abbreviated, values whole
        assert any(line.startswith(row) and values in line for line in listed.splitlines()), listed
        assert any(line.endswith(row) and values in line for line in shown.splitlines()), shown


def test_list_gives_the_value_of_a_studys_best_trial_and_every_named_objective(project, expyrun):
    write(
        project / "pkg" / "mapping.py", MAPPING_ENTRY + "\n\ndef single(name, config):\n    return config['lr'] * 3\n"
    )
    space = "  search_space:\n    lr: {type: float, low: 0.1, high: 0.2}\n"
    named = "  objectives: {validation_loss: minimize, validation_accuracy: maximize}\n"
    write(project / "named.yml", RUN.replace("pkg.main:main", "pkg.mapping:main").replace("demo", "named")
          + "lr: 0.1\n__optuna__:\n  n_trials: 1\n" + named + space)  # fmt: skip
    write(project / "single.yml", RUN.replace("pkg.main:main", "pkg.mapping:single").replace("demo", "single")
          + "lr: 0.1\n__optuna__:\n  n_trials: 1\n  direction: minimize\n" + space)  # fmt: skip
    assert expyrun("named.yml").returncode == 0 and expyrun("single.yml").returncode == 0
    rows = {line.split()[0]: line for line in expyrun("list", "outputs").stderr.splitlines()[1:-1]}
    trial = json.loads((project / "outputs" / "named" / "exp.0" / "trials" / "trial.0" / "run.json").read_text())
    loss, accuracy = trial["trial"]["objectives"].values()
    assert f"val_loss={loss:.6g} val_accuracy={accuracy:.6g}" in rows["named/exp.0/trials/trial.0"]
    best = json.loads((project / "outputs" / "single" / "exp.0" / "study.json").read_text())["best"]
    assert f"{best['value']:.6g} (trial 0)" in rows["single/exp.0"]
