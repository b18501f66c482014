"""The `__launch__` section: validated before anything exists; `workers` for studies on this machine."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from conftest import RUN_SECTION, clean_env, write


def launch(project: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in clean_env().items() if k != "CUDA_VISIBLE_DEVICES"}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "expyrun", "c.yml", *args], cwd=project, env=full_env, capture_output=True,
        text=True, timeout=120,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("section", "fragment"),
    [
        ("__launch__: {jobs: 2}\n__optuna__: {n_jobs: 3}\n", "`__launch__.jobs`: 2 but `__optuna__.n_jobs` is 3"),
        ("__launch__: {jobs: 0}\n", "`__launch__.jobs`: expected a positive integer, got 0"),
        ("__launch__: {gpus: auto}\n", "`__launch__.gpus`: auto found no GPU"),
        ("__launch__: {gpus: [0, 0]}\n", "an id is listed twice"),
        ("__launch__: {job: 2}\n", "`__launch__.job`: unknown setting (did you mean `jobs`?)"),
        ("__launch__: {launcher: cloud}\n", "`__launch__.launcher`: expected local"),
    ],
)
def test_bad_launch_sections_exit_2_before_anything(project, section, fragment):
    write(project / "c.yml", RUN_SECTION + section)
    env = {"PATH": "/usr/bin:/bin"}  # no nvidia-smi here
    result = launch(project, env=env)
    assert result.returncode == 2 and fragment in result.stderr, result.stderr
    assert "Traceback" not in result.stderr and not (project / "outputs").exists()


def test_gpus_auto_takes_the_visible_devices(project):
    write(
        project / "pkg" / "main.py",
        "import os\ndef main(name, config):\n    return os.environ.get('CUDA_VISIBLE_DEVICES')\n",
    )
    write(project / "c.yml", RUN_SECTION + "__launch__: {gpus: auto}\n")
    result = launch(project, env={"CUDA_VISIBLE_DEVICES": "5,3"})
    assert result.returncode == 0, result.stderr
    record = json.loads((project / "outputs" / "demo" / "exp.0" / "run.json").read_text())
    assert record["gpu"] == "5" and record["result"] == "5"


STUDY = """\
x: 0.0
__launch__: {workers: 3}
__optuna__:
  n_trials: 12
  storage: shared.journal
  sampler: {name: RandomSampler, seed: 0}
  search_space:
    x: {type: float, low: -1, high: 1}
"""


def test_study_workers_share_the_study_and_n_trials_is_exact(project):
    write(
        project / "pkg" / "main.py",
        "import time\ndef main(name, config):\n    time.sleep(0.05)\n    return config['x'] ** 2\n",
    )
    write(project / "c.yml", RUN_SECTION + STUDY)
    result = launch(project)
    assert result.returncode == 0, result.stderr
    folders = sorted((project / "outputs" / "demo").glob("exp.*"))
    assert len(folders) == 3
    study = optuna.load_study(
        study_name="demo",
        storage=optuna.storages.JournalStorage(
            optuna.storages.journal.JournalFileBackend(str(project / "shared.journal"))
        ),
    )
    states = [t.state for t in study.trials]
    assert states.count(optuna.trial.TrialState.COMPLETE) == 12 and len(states) == 12
    assert os.path.exists(project / "shared.journal")
