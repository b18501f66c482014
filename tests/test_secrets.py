"""Secrets (SPEC 2.2): what comes from a secret variable is never written or printed by expyrun."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from conftest import RUN_SECTION, write


def everything_written(project: Path) -> str:
    """Every file expyrun wrote for the runs, as text, except the run's own log."""
    texts = []
    for path in (project / "outputs").rglob("*"):
        if path.is_file() and path.name != "outputs.log" and ".expyrun" not in path.parts:
            texts.append(path.read_text(errors="replace"))
    return "\n".join(texts)


def test_a_numeric_secret_is_never_written(project, expyrun):
    write(project / "c.yml", RUN_SECTION + "db: {password: $DB_PASSWORD, port: 5432}\n")
    result = expyrun("c.yml", env={"DB_PASSWORD": "987654321"})
    assert result.returncode == 0, result.stderr
    run_dir = project / "outputs" / "demo" / "exp.0"
    record = json.loads((run_dir / "run.json").read_text())
    assert record["config"]["db"] == {"password": "$DB_PASSWORD", "port": 5432}
    assert record["result"]["config"]["db"]["password"] == "$DB_PASSWORD"  # the entry point got 987654321
    assert yaml.safe_load((run_dir / "config.yml").read_text())["db"]["password"] == "$DB_PASSWORD"
    assert "987654321" not in everything_written(project)
    listed = expyrun("list", "outputs", "--json")
    assert listed.returncode == 0 and "987654321" not in listed.stdout


def test_a_short_secret_does_not_mangle_other_values(project, expyrun):
    write(
        project / "pkg" / "main.py", "def main(name, config):\n    return {'tag': 'banana-v2', 'token': config['t']}\n"
    )
    write(project / "c.yml", RUN_SECTION + "t: $SHORT_TOKEN\n")
    result = expyrun("c.yml", env={"SHORT_TOKEN": "a"})
    assert result.returncode == 0, result.stderr
    record = json.loads((project / "outputs" / "demo" / "exp.0" / "run.json").read_text())
    assert record["result"] == {"tag": "banana-v2", "token": "$SHORT_TOKEN"}


def test_expyrun_never_prints_a_secret_in_its_own_lines(project, expyrun):
    write(
        project / "pkg" / "main.py",
        """\
        import os
        def main(name, config):
            raise RuntimeError(f"auth failed for token {os.environ['GH_TOKEN']}")
        """,
    )
    write(project / "c.yml", RUN_SECTION + "token: $GH_TOKEN\n")
    result = expyrun("c.yml", env={"GH_TOKEN": "ghp_s3cr3tvalue"})
    assert result.returncode == 1
    own = [line for line in result.stderr.splitlines() if line.startswith("expyrun:")]
    assert any("run failed (RuntimeError: auth failed for token $GH_TOKEN)" in line for line in own), own
    assert not any("ghp_s3cr3tvalue" in line for line in own)
    assert "ghp_s3cr3tvalue" not in everything_written(project)


def test_frozen_requirements_drop_url_credentials(project, expyrun):
    """A distribution installed from a URL with a token (found on sys.path: a PYTHONPATH folder)."""
    info = project / "site" / "private_lib-1.0.dist-info"
    write(info / "METADATA", "Metadata-Version: 2.1\nName: private-lib\nVersion: 1.0\n\n")
    url = "https://bob:p@ss@word@files.example.com/private_lib-1.0.tar.gz?token=abc123&channel=main"
    write(info / "direct_url.json", json.dumps({"url": url, "archive_info": {}}))
    write(project / "c.yml", RUN_SECTION)
    assert expyrun("c.yml", env={"PYTHONPATH": str(project / "site")}).returncode == 0
    frozen = (project / "outputs" / "demo" / "exp.0" / "frozen_requirements.txt").read_text()
    line = next(line for line in frozen.splitlines() if line.startswith("private-lib"))
    assert line == "private-lib @ https://files.example.com/private_lib-1.0.tar.gz?channel=main"


def test_environment_text_is_never_interpolated_again(project, expyrun):
    write(project / "c.yml", RUN_SECTION + "word: found\nkey: $API_TOKEN\ntext: 'x ${PLAIN} y {word}'\n")
    result = expyrun("c.yml", "--dry-run", env={"API_TOKEN": "abc{word}def", "PLAIN": "{word}"})
    assert result.returncode == 0, result.stderr
    config = yaml.safe_load(result.stdout)
    assert config["text"] == "x {word} y found" and config["key"] == "$API_TOKEN"
    assert "abc" not in result.stderr and "warning" not in result.stderr


def test_a_secret_in_the_run_name_is_refused(project, expyrun):
    write(project / "c.yml", RUN_SECTION.replace("demo", "demo-$HF_TOKEN"))
    result = expyrun("c.yml", env={"HF_TOKEN": "hf_abcdef"})
    assert result.returncode == 2 and "`__run__.__name__` uses a secret variable" in result.stderr
    assert "hf_abcdef" not in result.stderr and not (project / "outputs").exists()


def test_a_secret_given_in_clear_on_the_command_line_warns(project, expyrun):
    write(project / "c.yml", RUN_SECTION)
    result = expyrun("c.yml", "--dry-run", "--+api_key", "xyz")
    assert result.returncode == 0
    assert "--api_key: looks like a secret" in result.stderr and "'$API_KEY'" in result.stderr
    quiet = expyrun("c.yml", "--dry-run", "--+api_key", "$MY_API_KEY", env={"MY_API_KEY": "xyz"})
    assert quiet.returncode == 0 and "looks like a secret" not in quiet.stderr
