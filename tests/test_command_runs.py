"""Command runs, templates, result files and tool interpreters (SPEC 10), through the real `expyrun`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import clean_env, files_under, run_expyrun, write

TRAIN = """\
#!/bin/bash
echo "lr=$1 cwd=$PWD"
echo "config=$EXPYRUN_CONFIG run_dir=$EXPYRUN_RUN_DIR launched_from=$EXPYRUN_CWD"
cat templates/solver.cfg
echo "{\\"score\\": $2, \\"lr\\": $1}" > result.json
exit ${EXIT_WITH:-0}
"""

CONFIG = """\
__run__:
  __command__: ["bash", "{__run__.__code__}/train.sh", "{optim.lr}", "{score}"]
  __code__: scripts
  __name__: "cmd/lr{optim.lr}"
  __output_dir__: outputs
  __templates__: [templates]
  __result__: result.json
optim: {lr: 0.5, momentum: 0.9}
score: 7
"""


@pytest.fixture
def scripts(tmp_path: Path) -> Path:
    write(tmp_path / "scripts" / "train.sh", TRAIN)
    write(
        tmp_path / "scripts" / "templates" / "solver.cfg.j2",
        "lr = {{ optim.lr }}\nmomentum = {{ optim.momentum }}\nrun = {{ name }}\n",
    )
    write(tmp_path / "c.yml", CONFIG)
    return tmp_path


def record(run_dir: Path) -> dict:
    return json.loads((run_dir / "run.json").read_text())


def test_a_shell_script_with_interpolated_parameters_a_template_and_a_result_file(scripts):
    result = run_expyrun(["c.yml", "--optim.lr", "0.25"], scripts)
    assert result.returncode == 0, result.stderr
    run_dir = scripts / "outputs" / "cmd" / "lr0.25" / "exp.0"
    log = (run_dir / "outputs.log").read_text()
    assert f"lr=0.25 cwd={run_dir}" in log
    assert f"config={run_dir / 'config.yml'} run_dir={run_dir} launched_from={scripts}" in log
    assert "lr = 0.25\nmomentum = 0.9\nrun = cmd/lr0.25\n" in log
    assert (run_dir / "templates" / "solver.cfg").read_text() == "lr = 0.25\nmomentum = 0.9\nrun = cmd/lr0.25\n"
    assert (run_dir / "code" / "train.sh").read_text() == TRAIN
    run = record(run_dir)
    assert run["status"] == "completed" and run["result"] == {"score": 7, "lr": 0.25}
    config = yaml.safe_load((run_dir / "config.yml").read_text())
    assert config["__run__"]["__command__"][1] == str(run_dir / "code" / "train.sh")
    assert config["__run__"]["__code__"] == str(run_dir / "code")


def test_exit_codes_fail_the_run_unless_ignored(scripts):
    failed = run_expyrun(["c.yml"], scripts, env={"EXIT_WITH": "3"})
    assert failed.returncode == 1
    run = record(scripts / "outputs" / "cmd" / "lr0.5" / "exp.0")
    assert run["status"] == "failed" and "code 3" in run["exception"]["message"]
    ignored = run_expyrun(["c.yml", "--+__run__.__ignore_exit_code__", "true"], scripts, env={"EXIT_WITH": "3"})
    assert ignored.returncode == 0, ignored.stderr
    assert record(scripts / "outputs" / "cmd" / "lr0.5" / "exp.1")["result"] == {"score": 7, "lr": 0.5}


def test_a_missing_or_unreadable_result_file_fails_the_run(scripts):
    write(scripts / "scripts" / "train.sh", "#!/bin/bash\necho no result\n")
    missing = run_expyrun(["c.yml"], scripts)
    assert missing.returncode == 1 and "the result file result.json was not written" in missing.stderr
    write(scripts / "scripts" / "train.sh", "#!/bin/bash\necho '\"text\"' > result.json\n")
    text = run_expyrun(["c.yml"], scripts)
    assert text.returncode == 1 and "holds a string" in text.stderr
    write(scripts / "scripts" / "train.sh", "#!/bin/bash\necho 0.125 > result.json\n")
    number = run_expyrun(["c.yml"], scripts)
    assert number.returncode == 0 and record(scripts / "outputs" / "cmd" / "lr0.5" / "exp.2")["result"] == 0.125


def test_rerunning_config_yml_uses_the_stored_script(scripts):
    assert run_expyrun(["c.yml"], scripts).returncode == 0
    run_dir = scripts / "outputs" / "cmd" / "lr0.5" / "exp.0"
    write(scripts / "scripts" / "train.sh", "#!/bin/bash\necho EDITED\nexit 9\n")
    rerun = run_expyrun([str(run_dir / "config.yml")], scripts)
    assert rerun.returncode == 0, rerun.stderr
    log = (run_dir.parent / "exp.1" / "outputs.log").read_text()
    assert "EDITED" not in log and "lr=0.5" in log
    assert record(run_dir.parent / "exp.1")["result"] == {"score": 7, "lr": 0.5}


def test_a_study_of_a_shell_script_reading_a_score_file(tmp_path):
    write(
        tmp_path / "scripts" / "score.sh",
        '#!/bin/bash\nx=$(cut -d= -f2 params.cfg)\npython3 -c "print(($x - 2) ** 2)" > score.txt\necho "x=$x"\n',
    )
    write(tmp_path / "scripts" / "params.cfg.j2", "x={{ x }}")
    write(
        tmp_path / "tune.yml",
        """\
        __run__:
          __command__: "bash {__run__.__code__}/score.sh"
          __code__: scripts
          __name__: shell-study
          __output_dir__: outputs
          __templates__: [params.cfg.j2]
          __result__: score.txt
        x: 0.0
        __optuna__:
          n_trials: 8
          sampler: {name: RandomSampler, seed: 3}
          search_space:
            x: {type: float, low: -5, high: 5}
        """,
    )
    result = run_expyrun(["tune.yml"], tmp_path, timeout=180)
    assert result.returncode == 0, result.stderr
    study = tmp_path / "outputs" / "shell-study" / "exp.0"
    summary = json.loads((study / "study.json").read_text())
    assert summary["counts"] == {"COMPLETE": 8}
    for trial in sorted((study / "trials").iterdir()):
        run = record(trial)
        x = run["trial"]["params"]["x"]
        assert (trial / "params.cfg").read_text() == f"x={x}"
        assert run["trial"]["values"][0] == pytest.approx((x - 2) ** 2, rel=1e-6)
    assert summary["best"]["value"] == pytest.approx(
        min((t["trial"]["values"][0]) for t in map(record, (study / "trials").iterdir()))
    )


@pytest.fixture(scope="module")
def tool_venv(tmp_path_factory) -> Path:
    """A second virtual environment, without expyrun, with one distribution of its own."""
    folder = tmp_path_factory.mktemp("tool") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(folder)], check=True, env=clean_env())
    site = next((folder / "lib").glob("python*/site-packages"))
    info = site / "toolpkg-2.5.dist-info"
    write(info / "METADATA", "Metadata-Version: 2.1\nName: toolpkg\nVersion: 2.5\n\n")
    write(site / "toolpkg.py", "VERSION = '2.5'\n")
    return folder


def tool_config(venv: Path) -> str:
    return f"__run__:\n  __main__: tool.main:main\n  __name__: tool\n  __output_dir__: outputs\n  __python__: {venv}\n"


def test_a_main_entry_point_in_another_interpreter(tmp_path, tool_venv):
    write(tmp_path / "tool" / "__init__.py", "")
    write(
        tmp_path / "tool" / "main.py",
        "import sys, toolpkg\ndef main(name, config):\n    print('in', sys.executable)\n"
        "    return {'python': sys.executable, 'tool': toolpkg.VERSION, 'x': config['x']}\n",
    )
    write(
        tmp_path / "c.yml",
        tool_config(tool_venv) + "x: 3\n",
    )
    result = run_expyrun(["c.yml"], tmp_path)
    assert result.returncode == 0, result.stderr
    run_dir = tmp_path / "outputs" / "tool" / "exp.0"
    run = record(run_dir)
    python = str(tool_venv / "bin" / "python")
    assert run["result"] == {"python": python, "tool": "2.5", "x": 3}
    assert run["python"]["executable"] == python
    frozen = (run_dir / "frozen_requirements.txt").read_text().splitlines()
    assert "toolpkg==2.5" in frozen and not any(line.startswith("expyrun") for line in frozen)
    assert not [p for p in files_under(run_dir) if "__pycache__" in p]


def test_a_failing_entry_point_in_another_interpreter(tmp_path, tool_venv):
    write(tmp_path / "tool" / "__init__.py", "")
    write(tmp_path / "tool" / "main.py", "def main(name, config):\n    raise ValueError('bad input')\n")
    write(
        tmp_path / "c.yml",
        tool_config(tool_venv),
    )
    result = run_expyrun(["c.yml"], tmp_path)
    assert result.returncode == 1
    run = record(tmp_path / "outputs" / "tool" / "exp.0")
    assert run["exception"] == {"type": "ValueError", "message": "bad input"}
    assert "Traceback" in (tmp_path / "outputs" / "tool" / "exp.0" / "outputs.log").read_text()


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ("  __main__: pkg.main:main\n", "names both `__main__` and `__command__`"),
        ("  __command__: []\n", "`__run__.__command__` is empty"),
        ('  __command__: ["no-such-program-xyz", "a"]\n', "program `no-such-program-xyz` not found on PATH"),
        ("  __templates__: [missing.j2]\n", "`__run__.__templates__`: missing.j2 not found"),
        (
            "  __python__: /nonexistent/python\n",
            "`__run__.__python__`: /nonexistent/python is not a Python interpreter",
        ),
    ],
)
def test_bad_command_runs_exit_2_and_create_nothing(scripts, change, fragment):
    key = change.split(":")[0].strip()
    lines = [
        line for line in CONFIG.splitlines(keepends=True) if not line.strip().startswith(f"{key}:") or key == "__main__"
    ]
    write(scripts / "c.yml", "".join(lines).replace("__run__:\n", "__run__:\n" + change))
    before = files_under(scripts)
    for args in (["c.yml"], ["c.yml", "--dry-run"]):
        result = run_expyrun(args, scripts)
        assert result.returncode == 2 and fragment in result.stderr, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
    assert files_under(scripts) == before


def test_neither_main_nor_command(scripts):
    write(scripts / "c.yml", "__run__:\n  __name__: x\n  __output_dir__: outputs\n")
    result = run_expyrun(["c.yml"], scripts)
    assert result.returncode == 2 and "`__run__.__main__` (or `__run__.__command__`) is required" in result.stderr


def test_a_template_error_names_the_file_and_line(scripts):
    write(scripts / "scripts" / "templates" / "solver.cfg.j2", "lr = {{ optim.lr }}\nbad = {{ optim.missing }}\n")
    before = files_under(scripts)
    result = run_expyrun(["c.yml", "--dry-run"], scripts)
    assert result.returncode == 2
    assert f"{scripts / 'scripts' / 'templates' / 'solver.cfg.j2'}:2: template error" in result.stderr
    assert "missing" in result.stderr and files_under(scripts) == before


def test_a_command_in_a_sweep(scripts):
    write(scripts / "c.yml", CONFIG + "__sweep__:\n  grid:\n    optim.lr: [0.1, 0.2]\n")
    result = run_expyrun(["c.yml"], scripts)
    assert result.returncode == 0, result.stderr
    points = json.loads((scripts / "outputs" / "c" / "sweep.0" / "sweep.json").read_text())["points"]
    assert [p["result"] for p in points] == [{"score": 7, "lr": 0.1}, {"score": 7, "lr": 0.2}]
    assert os.path.exists(Path(points[1]["run_dir"]) / "code" / "train.sh")
