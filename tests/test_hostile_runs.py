"""Hostile input to what a run executes: templates, secrets in them, command runs' result files and
exit statuses, the snapshot store, GPU ids. Each test runs the real `expyrun`."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import RUN_SECTION, clean_env, files_under, run_expyrun, start_expyrun, write

SCRIPT = """\
#!/bin/bash
cat out.cfg
echo "token length ${#API_TOKEN}"
echo 1 > result.json
"""

CONFIG = """\
__run__:
  __command__: ["bash", "{__run__.__code__}/run.sh"]
  __code__: scripts
  __name__: hostile
  __output_dir__: outputs
  __templates__: [out.cfg.j2]
  __result__: result.json
lr: 0.5
"""

GIT = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "init.defaultBranch=main"]


@pytest.fixture
def scripts(tmp_path: Path) -> Path:
    """A command run with one template, `scripts/out.cfg.j2`, that its script prints."""
    write(tmp_path / "scripts" / "run.sh", SCRIPT)
    write(tmp_path / "scripts" / "out.cfg.j2", "lr = {{ lr }}\n")
    write(tmp_path / "c.yml", CONFIG)
    return tmp_path


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr and "internal error" not in result.stderr, lines
    return lines[0]


def record(run_dir: Path) -> dict:
    return json.loads((run_dir / "run.json").read_text())


# --- 1. templates are sandboxed, and a secret is written as its reference ---------------------------


@pytest.mark.parametrize(
    "expression",
    [
        "lipsum.__globals__.os.system('touch PWNED')",
        "cycler.__init__.__globals__.os.environ.OTHER_SECRET",
        "''.__class__.__mro__[1].__subclasses__()",
    ],
    ids=["os.system", "os.environ", "subclasses"],
)
def test_a_template_can_neither_run_programs_nor_read_the_environment(scripts, expression):
    write(scripts / "scripts" / "out.cfg.j2", f"lr = {{{{ lr }}}}\nx = {{{{ {expression} }}}}\n")
    before = files_under(scripts)
    for args in (["c.yml", "--dry-run"], ["c.yml"]):
        result = run_expyrun(args, scripts, env={"OTHER_SECRET": "s3cr3t-value-never-shown"})
        line = one_error_line(result)
        assert line.startswith(f"expyrun: error: {scripts / 'scripts' / 'out.cfg.j2'}:2: template error:"), line
        assert "unsafe" in line and "s3cr3t-value-never-shown" not in result.stdout + result.stderr
    assert files_under(scripts) == before  # no PWNED file, no run folder


def test_a_secret_rendered_into_a_template_is_written_as_its_reference_with_a_warning(scripts):
    write(scripts / "c.yml", CONFIG + "token: $API_TOKEN\ndb: {url: 'postgresql://me:${DB_PASSWORD}@db/x'}\n")
    write(scripts / "scripts" / "out.cfg.j2", "lr = {{ lr }}\ntoken = {{ token }}\nurl = {{ db.url }}\n")
    secrets = {"API_TOKEN": "tok-1234567890", "DB_PASSWORD": "pw-0987654321"}
    result = run_expyrun(["c.yml"], scripts, env=secrets)
    assert result.returncode == 0, result.stderr
    run_dir = scripts / "outputs" / "hostile" / "exp.0"
    rendered = (run_dir / "out.cfg").read_text()
    assert rendered == "lr = 0.5\ntoken = $API_TOKEN\nurl = postgresql://me:${DB_PASSWORD}@db/x\n"
    written = "".join(p.read_text(errors="replace") for p in (scripts / "outputs").rglob("*") if p.is_file())
    assert not any(secret in written for secret in secrets.values())
    assert "token length 14" in (run_dir / "outputs.log").read_text()  # the program has it in its environment
    warnings = [line for line in result.stderr.splitlines() if "holds a secret" in line]
    assert len(warnings) == 1 and str(scripts / "scripts" / "out.cfg.j2") in warnings[0], result.stderr
    assert "`token`" in warnings[0] and "`db.url`" in warnings[0] and "$API_TOKEN" in warnings[0]
    dry = run_expyrun(["c.yml", "--dry-run"], scripts, env=secrets)
    assert dry.returncode == 0 and not any(secret in dry.stdout + dry.stderr for secret in secrets.values())


# --- 3. template names expyrun writes; hostile templates; templates left out of the snapshot --------


@pytest.mark.parametrize("name", ["config.yml.j2", "raw_config.yml.j2", "run.json.j2", "outputs.log"])
def test_a_template_rendering_to_a_file_expyrun_writes_is_refused(scripts, name):
    write(scripts / "scripts" / name, "lr: {{ lr }}\n")
    write(scripts / "c.yml", CONFIG.replace("[out.cfg.j2]", f"[out.cfg.j2, {name}]"))
    before = files_under(scripts)
    for args in (["c.yml", "--dry-run"], ["c.yml"]):
        line = one_error_line(run_expyrun(args, scripts))
        assert f"`__run__.__templates__`: {name} would be written as {name.removesuffix('.j2')}" in line, line
        assert "a name expyrun writes in the run folder" in line
    assert files_under(scripts) == before


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        ("lr = {{ lr }}\n{% include 'out.cfg.j2' %}\n", 2, "includes itself"),
        (
            "lr = {{ lr }}\n{% for i in range(100000) %}{% for j in range(100000) %}"
            + "x" * 200
            + "{% endfor %}{% endfor %}\n",
            2,
            "renders more than 10 MB (`__run__.__max_file_mb__`)",
        ),
        ("a\nb\n{{ 'x' * 3000000000 }}\n", 3, "`*` would build a value larger than 10 MB"),
        ("a\n{{ 10 ** 1000000000 }}\n", 2, "`**` would build a number larger"),
        ("a\n" + "{% if true %}" * 3000 + "{% endif %}" * 3000, "?", "too deep"),
    ],
    ids=["includes-itself", "2GB-loop", "huge-string", "huge-power", "nested-3000-deep"],
)
def test_hostile_templates_are_one_line_errors_naming_file_and_line(scripts, text, line, fragment):
    write(scripts / "scripts" / "out.cfg.j2", text)
    before = files_under(scripts)
    started = time.monotonic()
    error = one_error_line(run_expyrun(["c.yml", "--dry-run"], scripts))
    assert time.monotonic() - started < 30, "a hostile template must be refused quickly"
    assert error.startswith(f"expyrun: error: {scripts / 'scripts' / 'out.cfg.j2'}:{line}: template error:"), error
    assert fragment in error and files_under(scripts) == before


def test_an_included_file_larger_than_max_file_mb_is_an_error_naming_the_include(scripts):
    write(scripts / "scripts" / "out.cfg.j2", "a\nb\n{% include 'notes.txt' %}\n")
    write(scripts / "scripts" / "notes.txt", "n" * 3000)
    error = one_error_line(run_expyrun(["c.yml", "--dry-run", "--+__run__.__max_file_mb__", "0.002"], scripts))
    expected = "out.cfg.j2:3: template error: notes.txt is larger than 0.002 MB (`__run__.__max_file_mb__`)"
    assert expected in error, error


def test_a_template_that_is_not_utf8_is_an_error_naming_its_line(scripts):
    (scripts / "scripts" / "out.cfg.j2").write_bytes(b"lr = {{ lr }}\nname = caf\xe9\n")
    error = one_error_line(run_expyrun(["c.yml", "--dry-run"], scripts))
    assert f"{scripts / 'scripts' / 'out.cfg.j2'}:2: template error: not UTF-8 text" in error, error


def test_a_template_that_renders_forever_is_stopped(scripts):
    write(scripts / "scripts" / "out.cfg.j2", "a\n{% for i in range(100000) %}{% for j in range(100000) %}"
          "{% endfor %}{% endfor %}\n")  # fmt: skip
    started = time.monotonic()
    error = one_error_line(run_expyrun(["c.yml", "--dry-run"], scripts, timeout=120))
    assert time.monotonic() - started < 60, "the render must be stopped after its time bound"
    assert f"{scripts / 'scripts' / 'out.cfg.j2'}:2: template error: still rendering after 10 s" in error, error


def test_a_template_left_out_of_the_snapshot_fails_the_dry_run_too(scripts):
    """The run folder is rendered from the snapshot: what the snapshot leaves out cannot be rendered."""
    subprocess.run([*GIT, "init", "-q"], cwd=scripts, check=True)
    write(scripts / ".gitignore", "generated/\n")
    write(scripts / "scripts" / "generated" / "out.cfg.j2", "lr = {{ lr }}\n")
    write(scripts / "c.yml", CONFIG.replace("[out.cfg.j2]", "[generated]"))
    before = files_under(scripts)
    for args in (["c.yml", "--dry-run"], ["c.yml"]):
        line = one_error_line(run_expyrun(args, scripts))
        assert "`__run__.__templates__`: generated/out.cfg.j2 is left out of the snapshot" in line, line
    assert files_under(scripts) == before
    limited = CONFIG.replace("__result__: result.json\n", "__result__: result.json\n  __max_file_mb__: 0.001\n")
    write(scripts / "c.yml", limited)
    write(scripts / "scripts" / "out.cfg.j2", "lr = {{ lr }}\n" + "#" * 2000 + "\n")
    for args in (["c.yml", "--dry-run"], ["c.yml"]):
        line = one_error_line(run_expyrun(args, scripts))
        assert "`__run__.__templates__`: out.cfg.j2 is larger than `__run__.__max_file_mb__` (0.001 MB)" in line, line
    assert files_under(scripts) == before
    write(scripts / "c.yml", CONFIG)  # a file a template includes is read from the snapshot too
    write(scripts / "scripts" / "out.cfg.j2", "lr = {{ lr }}\n{% include 'generated/part.txt' %}\n")
    write(scripts / "scripts" / "generated" / "part.txt", "part\n")
    before = files_under(scripts)
    for args in (["c.yml", "--dry-run"], ["c.yml"]):
        line = one_error_line(run_expyrun(args, scripts))
        assert "out.cfg.j2:2: template error: generated/part.txt is left out of the snapshot" in line, line
    assert files_under(scripts) == before


# --- 2. command runs: what the result file is, and how the program ended ----------------------------


def command_run(tmp_path: Path, script: str, *extra: str) -> tuple[subprocess.CompletedProcess[str], dict]:
    """Run `script` as a command run whose result file is `result.json`; expyrun's answer and the record."""
    write(tmp_path / "scripts" / "run.sh", "#!/bin/bash\n" + script)
    write(tmp_path / "c.yml", CONFIG.replace("  __templates__: [out.cfg.j2]\n", ""))
    result = run_expyrun(["c.yml", *extra], tmp_path, timeout=60)
    runs = sorted((tmp_path / "outputs" / "hostile").iterdir(), key=lambda p: int(p.suffix[1:]))
    return result, record(runs[-1])


@pytest.mark.parametrize(
    ("script", "fragment"),
    [
        ("mkfifo result.json\n", "the result file result.json is a FIFO, not a regular file"),
        ("ln -s /dev/zero result.json\n", "the result file result.json is a character device, not a regular file"),
        (
            "python3 -c \"print('9' * 5000)\" > result.json\n",
            "the result file result.json holds an integer of 5000 digits",
        ),
        (
            "python3 -c \"print('{\\\"a\\\": [' + '7' * 5000 + ']}')\" > result.json\n",
            "the result file result.json holds an integer of 5000 digits",
        ),
        ("truncate -s 17M result.json\n", "the result file result.json is larger than 16 MB"),
    ],
    ids=["fifo", "dev-zero", "5000-digits", "5000-digits-inside", "17MB"],
)
def test_a_result_file_that_is_not_a_bounded_regular_file_fails_the_run_saying_why(tmp_path, script, fragment):
    started = time.monotonic()
    result, run = command_run(tmp_path, script)
    assert time.monotonic() - started < 50, "reading a result file must never hang"
    assert result.returncode == 1, result.stderr
    assert run["status"] == "failed" and run["exception"] == {"type": "ResultFile", "message": fragment}, run
    assert fragment in result.stderr and "internal error" not in result.stderr


@pytest.mark.parametrize("code", [130, 143])
def test_a_program_exiting_130_or_143_by_itself_failed_and_its_code_may_be_ignored(tmp_path, code):
    result, run = command_run(tmp_path, f"echo 2 > result.json\nexit {code}\n")
    assert result.returncode == 1, result.stderr
    assert run["status"] == "failed" and run["exception"]["message"] == f"the run exited with code {code}", run
    ignored, run = command_run(
        tmp_path, f"echo 2 > result.json\nexit {code}\n", "--+__run__.__ignore_exit_code__", "true"
    )
    assert ignored.returncode == 0, ignored.stderr
    assert run["status"] == "completed" and run["result"] == 2 and run["exit_code"] == 0, run


@pytest.mark.parametrize("signal_name", ["KILL", "SEGV", "ABRT"])
def test_a_program_killed_by_a_signal_failed_even_with_ignore_exit_code(tmp_path, signal_name):
    result, run = command_run(
        tmp_path, f"echo 2 > result.json\nkill -{signal_name} $$\n", "--+__run__.__ignore_exit_code__", "true"
    )
    assert result.returncode == 1, result.stderr
    assert run["status"] == "failed" and run["exception"]["message"] == f"the run was killed by SIG{signal_name}", run


def test_expyrun_stopping_a_command_run_is_still_an_interruption(tmp_path):
    """The other side of the rule: SIGTERM to expyrun stops the program, which exits 143: interrupted."""
    write(
        tmp_path / "scripts" / "run.sh",
        "#!/bin/bash\ntrap 'exit 143' TERM\necho ready\nwhile true; do sleep 0.1; done\n",
    )
    write(tmp_path / "c.yml", CONFIG.replace("  __templates__: [out.cfg.j2]\n", ""))
    process = start_expyrun(["c.yml"], tmp_path)
    log = tmp_path / "outputs" / "hostile" / "exp.0" / "outputs.log"
    deadline = time.monotonic() + 30
    while not (log.exists() and "ready" in log.read_text()):
        assert time.monotonic() < deadline and process.poll() is None, "the command run did not start"
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 143, stderr
    assert record(log.parent)["status"] == "interrupted"


# --- 4. the snapshot store ---------------------------------------------------------------------------


def store_file_of(outputs: Path, content: bytes) -> Path:
    digest = hashlib.sha256(content).hexdigest()
    return outputs / ".expyrun" / "store" / digest[:2] / digest


def test_a_store_file_corrupted_with_its_mtime_restored_is_never_served(project, expyrun):
    write(project / "c.yml", RUN_SECTION)
    assert expyrun("c.yml").returncode == 0
    source = (project / "pkg" / "main.py").read_bytes()
    stored = store_file_of(project / "outputs", source)
    assert stored.exists() and stored.stat().st_mtime_ns == 0
    stored.chmod(0o644)  # a bit flip, then the mtime put back as it was (what `cp -a` or a careful tool leaves)
    stored.write_bytes(source.replace(b"running", b"rXnning"))
    os.utime(stored, ns=(0, 0))
    stored.chmod(0o444)
    result = expyrun("c.yml")
    assert result.returncode == 0, result.stderr
    first, second = project / "outputs" / "demo" / "exp.0", project / "outputs" / "demo" / "exp.1"
    assert (second / "pkg" / "main.py").read_bytes() == source
    assert "running demo" in (second / "outputs.log").read_text()
    assert record(second)["snapshot"]["sha256"] == record(first)["snapshot"]["sha256"]
    assert stored.read_bytes() == source  # the store holds what its name says again


LINK_REFUSED = """\
import errno, os, runpy, sys
real_link = os.link
def link(source, target, *args, **kwargs):
    if "/.expyrun/store/" in os.fspath(source):
        raise OSError(errno.EMLINK, "Too many links", os.fspath(source))
    return real_link(source, target, *args, **kwargs)
os.link = link
runpy.run_module("expyrun", run_name="__main__", alter_sys=True)
"""


def test_a_store_file_that_cannot_take_another_link_is_copied(project):
    """ext4 gives a file at most 65,000 links (every run links the one empty `__init__.py`): once the
    file system refuses a link (EMLINK, injected here), each launch copies instead of failing."""
    write(project / "c.yml", RUN_SECTION)
    for _ in range(2):  # the second launch links what the first stored (the path that failed)
        result = subprocess.run(
            [sys.executable, "-c", LINK_REFUSED, "c.yml"], cwd=project, env=clean_env(), capture_output=True,
            text=True, timeout=60, check=False,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
    for run_dir in sorted((project / "outputs" / "demo").iterdir()):
        for name in ("__init__.py", "main.py"):
            copied = run_dir / "pkg" / name
            assert copied.read_bytes() == (project / "pkg" / name).read_bytes()
            assert copied.stat().st_nlink == 1  # a copy, not a link
        assert record(run_dir)["status"] == "completed"


# --- 5. GPUs: one GPU never serves two runs at once ----------------------------------------------------


@pytest.mark.parametrize(
    ("gpus", "environment", "fragment"),
    [
        ('["0,1", "1"]', {}, "`__launch__.gpus`: an id is listed twice in ['0,1', '1'] (GPU 1)"),
        ('[0, "0"]', {}, "`__launch__.gpus`: an id is listed twice in [0, '0'] (GPU 0)"),
        ('["0, 2", "3", " 2"]', {}, "(GPU 2): one GPU runs one run at a time"),
        (
            "auto",
            {"CUDA_VISIBLE_DEVICES": "0,0"},
            "`__launch__.gpus`: auto: CUDA_VISIBLE_DEVICES=0,0 lists GPU 0 twice",
        ),
        ('["0,", "1"]', {}, "`__launch__.gpus`: an empty id in ['0,', '1']"),
    ],
    ids=["group-and-single", "int-and-str", "spaces", "auto-visible-twice", "empty-id"],
)
def test_a_gpu_listed_twice_is_refused(project, gpus, environment, fragment):
    write(
        project / "c.yml",
        RUN_SECTION + f"__launch__: {{jobs: 2, gpus: {gpus}}}\n__sweep__: {{grid: {{x: [1, 2]}}}}\nx: 0\n",
    )
    before = files_under(project)
    for args in (["c.yml", "--dry-run"], ["c.yml"]):
        line = one_error_line(run_expyrun(args, project, env=environment))
        assert fragment in line, line
    assert files_under(project) == before


def test_gpu_groups_that_share_no_id_are_given_one_per_run(project):
    write(
        project / "pkg" / "main.py",
        "import os\ndef main(name, config):\n    return os.environ['CUDA_VISIBLE_DEVICES']\n",
    )
    write(project / "c.yml", RUN_SECTION + '__launch__: {gpus: ["0,1", "2"]}\n')
    result = run_expyrun(["c.yml"], project)
    assert result.returncode == 0, result.stderr
    run = record(project / "outputs" / "demo" / "exp.0")
    assert run["gpu"] == "0,1" and run["result"] == "0,1"


def test_a_study_trial_killed_by_a_signal_failed_even_with_ignore_exit_code(tmp_path):
    write(
        tmp_path / "scripts" / "score.sh",
        '#!/bin/bash\necho 0.5 > score.txt\nif [ "$KILL" = 1 ]; then kill -KILL $$; fi\nexit 143\n',
    )
    write(
        tmp_path / "tune.yml",
        """\
        __run__:
          __command__: "bash {__run__.__code__}/score.sh"
          __code__: scripts
          __name__: study
          __output_dir__: outputs
          __result__: score.txt
          __ignore_exit_code__: true
        x: 0.0
        __optuna__:
          n_trials: 2
          search_space:
            x: {type: float, low: -5, high: 5}
        """,
    )
    exited = run_expyrun(["tune.yml"], tmp_path, timeout=180)  # exit 143 by itself: ignored
    assert exited.returncode == 0, exited.stderr
    study = tmp_path / "outputs" / "study" / "exp.0"
    assert json.loads((study / "study.json").read_text())["counts"] == {"COMPLETE": 2}
    killed = run_expyrun(["tune.yml", "--__run__.__name__", "killed"], tmp_path, env={"KILL": "1"}, timeout=180)
    study = tmp_path / "outputs" / "killed" / "exp.0"
    assert json.loads((study / "study.json").read_text())["counts"] == {"FAIL": 2}, killed.stderr
