"""`launcher: slurm` against hostile input, on the real one-node Slurm cluster of tests/slurm_cluster.py:
values with spaces, `%` in run names, a config edited while its job waits, secrets in the job script,
and values the node must run exactly as recorded.

Without the Slurm binaries (or not as root) every test here is skipped with the reason (the fixtures
are those of tests/test_slurm.py).
"""

from __future__ import annotations

import json
from pathlib import Path

from conftest import RUN_SECTION, write
from test_slurm import cluster, expyrun, record, slurm, slurm_section, wait_until  # noqa: F401 (fixtures)

ECHO = """\
import os
def main(name, config):
    return {**config, "hf_token_seen": os.environ.get("HF_TOKEN", "")[::-1] == "eulav_terc3s_fh"}  # (not on disk)
"""


def job_fields(slurm, job_id: int) -> str:  # noqa: F811 (the fixture's value)
    return slurm.command("scontrol", "show", "job", str(job_id)).stdout


def test_an_option_value_and_an_output_folder_with_spaces_reach_sbatch_as_written(project, slurm):  # noqa: F811
    write(project / "pkg" / "main.py", ECHO)
    run = RUN_SECTION.replace("__output_dir__: outputs", "__output_dir__: 'out puts'")
    write(project / "c.yml", run + slurm_section(wait=True, slurm={"options": {"comment": 'two "quoted" words'}}))
    result = expyrun(project, "c.yml")
    assert result.returncode == 0, result.stderr
    run_dir = project / "out puts" / "demo" / "exp.0"
    job = record(run_dir)["slurm"]["job_id"]
    assert record(run_dir)["status"] == "completed" and Path(record(run_dir)["slurm"]["output"]).is_file()
    assert 'Comment=two "quoted" words' in job_fields(slurm, job)


def test_a_run_name_holding_percent_j_runs_and_writes_its_slurm_output_in_its_folder(project, slurm):  # noqa: F811
    write(project / "pkg" / "main.py", ECHO)
    write(project / "c.yml", RUN_SECTION.replace("demo", "r%j-%A") + slurm_section(wait=True))
    result = expyrun(project, "c.yml")
    assert result.returncode == 0, result.stderr
    run_dir = project / "outputs" / "r%j-%A" / "exp.0"
    run = record(run_dir)
    assert run["status"] == "completed", run
    assert Path(run["slurm"]["output"]) == run_dir / f"slurm-{run['slurm']['job_id']}.out"
    assert Path(run["slurm"]["output"]).is_file()


def test_a_config_edited_after_submission_is_not_executed(project, slurm):  # noqa: F811
    write(project / "pkg" / "main.py", ECHO)
    go = project / "go"
    hold = {"setup": [f"while [ ! -e {go} ]; do sleep 0.1; done"]}  # the job waits until the edit is made
    write(project / "c.yml", RUN_SECTION + "x: 1\n" + slurm_section(slurm=hold))
    result = expyrun(project, "c.yml")
    assert result.returncode == 0, result.stderr
    run_dir = project / "outputs" / "demo" / "exp.0"
    config = run_dir / "config.yml"
    config.write_text(config.read_text().replace("x: 1", "x: 2"))
    go.touch()
    wait_until(lambda: record(run_dir)["status"] not in ("queued", "running"), "the job to end",
               lambda: record(run_dir)["status"])  # fmt: skip
    run = record(run_dir)
    assert run["status"] == "failed" and run["result"] is None and run["config"] == {"x": 1}
    assert "was changed after the job was submitted" in run["exception"]["message"]
    assert not (run_dir / "outputs.log").exists() or "x" not in (run_dir / "outputs.log").read_text()


def test_the_node_runs_the_values_config_yml_records(project, slurm):  # noqa: F811
    write(project / "pkg" / "main.py", ECHO)
    values = 'model: m\nliteral_env: "!P$HOME/x"\nliteral_ref: "!P{model}"\nfrom_env: $BRACES\n'
    write(project / "c.yml", RUN_SECTION + values + slurm_section(wait=True))
    result = expyrun(project, "c.yml", BRACES="{model}")
    assert result.returncode == 0, result.stderr
    run = record(project / "outputs" / "demo" / "exp.0")
    assert run["result"] == {**run["config"], "hf_token_seen": False}
    assert run["config"] == {"model": "m", "literal_env": "$HOME/x", "literal_ref": "{model}", "from_env": "{model}"}


SECRETS = {"HF_TOKEN": "hf_s3cret_value", "WANDB_API_KEY": "wandb_s3cret_key"}


def test_secrets_in_setup_lines_and_sbatch_options_stay_out_of_the_job_script(project, slurm):  # noqa: F811
    write(project / "pkg" / "main.py", ECHO)
    settings = {"setup": ["export HF_TOKEN=$HF_TOKEN", "echo setup done"],
                "options": {"comment": "key-$WANDB_API_KEY"}}  # fmt: skip
    write(project / "c.yml", RUN_SECTION + slurm_section(wait=True, slurm=settings))

    dry = expyrun(project, "c.yml", "--dry-run", **SECRETS)
    assert dry.returncode == 0, dry.stderr
    assert not any(secret in dry.stdout + dry.stderr for secret in SECRETS.values()), dry.stdout
    assert "export HF_TOKEN=${HF_TOKEN}" in dry.stdout and "--comment=key-${WANDB_API_KEY}" in dry.stdout

    result = expyrun(project, "c.yml", **SECRETS)
    assert result.returncode == 0, result.stderr
    run_dir = project / "outputs" / "demo" / "exp.0"
    script = (run_dir / "slurm.sh").read_text()
    assert "export HF_TOKEN=${HF_TOKEN}" in script and "#SBATCH --comment" not in script
    for path in run_dir.rglob("*"):
        if path.is_file():
            assert not any(secret.encode() in path.read_bytes() for secret in SECRETS.values()), path
    run = record(run_dir)
    assert run["status"] == "completed" and run["result"]["hf_token_seen"] is True  # the job's shell expanded it
    assert "Comment=key-wandb_s3cret_key" in job_fields(slurm, run["slurm"]["job_id"])  # sbatch got the option
    assert json.dumps(run).count("s3cret") == 0
