"""Differential test: configs expyrun 0.2.1 accepts resolve to the same values here.

The corpus avoids the behaviours SPEC lists as fixes (unset variables, unknown references,
digit 0 in names, lists of mappings, subtree references) and those issue 17 fixed: an override of a
whole-value reference takes the referenced type (0.2.1: text), an int key takes a float override.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from conftest import run_expyrun
from legacy_expyrun import RESOLVE_SCRIPT, legacy_python

CORPUS = Path(__file__).parent / "compat_corpus"
ENV = {
    "COMPAT_OUT": "outputs-compat",
    "DATA_HOME": "/data/home",
    "N_WORKERS": "4",
    "RATIO": "0.25",
    "SHUFFLE": "true",
    "DATASET_NAME": "cifar10",
}
CASES = [
    ("base.yml", []),
    (
        "base.yml",
        [
            "--training.lr",
            "0.1",
            "--model.depth",
            "5",
            "--model.use_bias",
            "false",
            "--training.schedule",
            "1,2,3",
            "--training.betas",
            "0.5,0.6",
            "--model.name",
            "cnn",
        ],
    ),
    ("base.yml", ["--training.schedule", "4"]),
    ("base.yml", ["--model.use_bias", "1", "--training.tags", "x,y,z", "--seed", "-3"]),
    ("base.yml", ["--__run__.__name__", "other", "--training.optimizer", "12"]),
    ("refs.yml", []),
    ("refs.yml", ["--seed", "7", "--derived.label", "hello", "--model.width", "3"]),
    ("child.yml", []),
    ("child.yml", ["--training.tags", "x,y,z", "--logging.every", "5"]),
    ("warn.yml", []),
    ("typechange.yml", []),
    ("cwdrel.yml", []),
    ("deep.yml", []),
    ("deep.yml", ["--training.optimizer", "rmsprop"]),
]


@pytest.fixture(scope="module")
def legacy() -> Path:
    python = legacy_python()
    if python is None:
        pytest.skip("expyrun==0.2.1 could not be installed from the package index")
    return python


def normalise(config: dict, cwd: Path) -> dict:
    run = config["__run__"]
    run.pop("__code__", None)
    run["__output_dir__"] = str((cwd / run["__output_dir__"]).resolve())
    return config


@pytest.mark.parametrize(("config", "overrides"), CASES, ids=[f"{c}{' ' + ' '.join(o) if o else ''}" for c, o in CASES])
def test_same_resolved_values_as_expyrun_021(project, legacy, config, overrides):
    shutil.copytree(CORPUS, project / "tests" / "compat_corpus")
    path = f"tests/compat_corpus/{config}"
    env = {**ENV, "PATH": "/usr/bin:/bin"}
    old = subprocess.run(
        [str(legacy), "-c", RESOLVE_SCRIPT, path, *overrides],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    new = run_expyrun([path, *overrides, "--dry-run"], project, ENV)
    assert new.returncode == 0, new.stderr
    expected = normalise(json.loads(old.stdout), project)
    assert normalise(yaml.safe_load(new.stdout), project) == expected
