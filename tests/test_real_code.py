"""Entry points as real projects write them: thread pools left alive (concurrent.futures, joblib),
a wrong signature, C stdio, forked helpers, and the same behaviours under another interpreter
(`__run__.__python__`, a venv whose path holds a space). Each test runs the real `expyrun`."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import RUN_SECTION, clean_env, run_expyrun, start_expyrun, write

EXPYRUN_RUN_TIMEOUT_S = 60


def run_json(run_dir: Path) -> dict:
    return json.loads((run_dir / "run.json").read_text())


@pytest.fixture(scope="module")
def tool_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Another interpreter: a virtual environment without expyrun, in a folder whose name has a space."""
    folder = tmp_path_factory.mktemp("tools") / "tool venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(folder)], check=True, env=clean_env())
    return folder


@pytest.fixture(params=["expyrun", "__python__"])
def interpreter(request: pytest.FixtureRequest, tool_venv: Path) -> str:
    """The `__run__` lines that pick who runs the entry point: expyrun's run child, or another Python."""
    return "" if request.param == "expyrun" else f"  __python__: {tool_venv}\n"


def launch(project: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`expyrun ARGS` that must end by itself: a clear failure when it is still running after a minute."""
    try:
        return run_expyrun(list(args), project, env, timeout=EXPYRUN_RUN_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        pytest.fail(f"expyrun {' '.join(args)} still running {EXPYRUN_RUN_TIMEOUT_S} s later: the run never ended")


def only_run(project: Path, name: str = "demo", debug: bool = False) -> Path:
    base = project / "outputs" / ("DEBUG" if debug else "") / name
    (run_dir,) = sorted(base.glob("exp.*"))
    return run_dir


THREAD_POOL = """\
from concurrent.futures import ThreadPoolExecutor

POOL = ThreadPoolExecutor(2)


def main(name, config):
    return sum(POOL.map(abs, [config["x"], -2, -3]))
"""

JOBLIB = """\
from joblib import Parallel, delayed


def main(name, config):
    return sum(Parallel(n_jobs=2)(delayed(abs)(v) for v in [config["x"], -2, -3]))
"""

SCIKIT_LEARN = """\
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_score


def main(name, config):
    x = [[i, i % 3] for i in range(30)]
    y = [i % 2 for i in range(30)]
    return 2 * len(cross_val_score(LogisticRegression(), x, y, cv=3, n_jobs=-1)) * config["x"]
"""

POOLS = {"thread-pool": (THREAD_POOL, None), "joblib": (JOBLIB, "joblib"), "scikit-learn": (SCIKIT_LEARN, "sklearn")}

STUDY = """\
__optuna__:
  n_trials: 2
  isolation: inline
  search_space:
    x: {type: int, low: 1, high: 1}
"""


@pytest.mark.parametrize("pool", sorted(POOLS))
@pytest.mark.parametrize("how", ["run", "debug", "inline-study"])
def test_a_thread_pool_left_alive_by_the_entry_point_does_not_keep_the_run_from_ending(project, pool, how):
    body, needs = POOLS[pool]
    if needs is not None:  # joblib and scikit-learn are in the test extra; skipped where they are not installed
        pytest.importorskip(needs)
    write(project / "pkg" / "main.py", body)
    write(project / "c.yml", RUN_SECTION + "x: 1\n" + (STUDY if how == "inline-study" else ""))
    result = launch(project, "c.yml", *(["--debug"] if how == "debug" else []))
    assert result.returncode == 0, result.stderr
    run = run_json(only_run(project, debug=how == "debug"))
    assert run["status"] == "completed"
    if how == "inline-study":
        trials = [run_json(folder) for folder in (only_run(project) / "trials").iterdir()]
        assert [t["result"] for t in trials] == [6, 6] and {t["status"] for t in trials} == {"completed"}
    else:
        assert run["result"] == 6
    assert "not waited for" not in result.stderr


def test_a_thread_pool_left_alive_in_another_interpreter_does_not_keep_the_run_from_ending(project, tool_venv):
    write(project / "pkg" / "main.py", THREAD_POOL)
    write(project / "c.yml", RUN_SECTION + f"  __python__: {tool_venv}\nx: 1\n")
    result = launch(project, "c.yml")
    assert result.returncode == 0, result.stderr
    assert run_json(only_run(project))["result"] == 6


STUCK = """\
import threading, time
from concurrent.futures import ThreadPoolExecutor

POOL = ThreadPoolExecutor(1, thread_name_prefix="endless-pool")


def main(name, config):
    threading.Thread(target=time.sleep, args=(600,), name="endless-sleeper").start()
    POOL.submit(time.sleep, 600)
    return 5
"""


def test_threads_still_running_after_the_grace_are_named_and_the_run_ends_with_its_result(project, interpreter):
    write(project / "pkg" / "main.py", STUCK)
    write(project / "c.yml", RUN_SECTION + interpreter)
    started = time.monotonic()
    result = launch(project, "c.yml", env={"EXPYRUN_EXIT_GRACE": "1"})
    assert result.returncode == 0, result.stderr
    assert time.monotonic() - started < 30
    run_dir = only_run(project)
    run = run_json(run_dir)
    assert run["status"] == "completed" and run["result"] == 5
    log = (run_dir / "outputs.log").read_text()
    assert "warning: the entry point returned, but 2 thread(s) still ran 1 s later and were not waited for" in log
    assert "'endless-sleeper'" in log and "'endless-pool_0'" in log


EXIT_STEPS = """\
import atexit, threading, time
from pathlib import Path


def finish_later():
    time.sleep(0.5)
    Path("thread-finished").write_text("yes")


def main(name, config):
    threading.Thread(target=finish_later).start()
    atexit.register(lambda: Path("atexit-ran").write_text(Path("thread-finished").read_text()))
    return 1
"""


def test_threads_that_end_within_the_grace_are_waited_for_and_atexit_functions_run_after_them(project, interpreter):
    write(project / "pkg" / "main.py", EXIT_STEPS)
    write(project / "c.yml", RUN_SECTION + interpreter)
    result = launch(project, "c.yml")
    assert result.returncode == 0, result.stderr
    run_dir = only_run(project)
    assert (run_dir / "thread-finished").read_text() == "yes"
    assert (run_dir / "atexit-ran").read_text() == "yes"
    assert "not waited for" not in (run_dir / "outputs.log").read_text()


ATEXIT_IN_A_WORKER = """\
import atexit, os
from pathlib import Path


def _goodbye():
    with open(Path(os.environ["EXPYRUN_CWD"], "atexit.log"), "a") as log:
        log.write(f"{os.getpid()}\\n")


atexit.register(_goodbye)  # once, when the module is imported: by each trial worker's first trial


def main(name, config):
    return os.getpid()
"""


def test_atexit_functions_of_the_entry_module_run_once_when_each_reused_trial_worker_ends(project):
    write(project / "pkg" / "main.py", ATEXIT_IN_A_WORKER)
    study = STUDY.replace("n_trials: 2", "n_trials: 4\n  n_jobs: 2").replace("inline", "process")
    write(project / "c.yml", RUN_SECTION + "x: 1\n" + study)
    result = launch(project, "c.yml")
    assert result.returncode == 0, result.stderr
    trials = [run_json(folder) for folder in (only_run(project) / "trials").iterdir()]
    workers = {trial["result"] for trial in trials}
    assert len(trials) == 4 and {t["status"] for t in trials} == {"completed"} and 1 <= len(workers) <= 2
    assert (project / "atexit.log").is_file(), "no trial worker ran the atexit function"
    said = (project / "atexit.log").read_text().split()
    assert sorted(int(pid) for pid in said) == sorted(workers)  # each worker once, none twice
    assert "not waited for" not in result.stderr


C_STDIO = """\
import ctypes


def main(name, config):
    libc = ctypes.CDLL(None)
    libc.printf(b"from printf\\n")
    libc.puts(b"from puts")
    return 1
"""


def test_c_printf_and_puts_reach_the_log(project, interpreter):
    write(project / "pkg" / "main.py", C_STDIO)
    write(project / "c.yml", RUN_SECTION + interpreter)
    result = launch(project, "c.yml")
    assert result.returncode == 0, result.stderr
    log = (only_run(project) / "outputs.log").read_text()
    assert "from printf" in log and "from puts" in log


FORKED_HELPER = """\
import os


def main(name, config):
    pid = os.fork()
    if pid == 0:
        return "from the forked helper"  # it returns too, as code that forks without exec does
    os.waitpid(pid, 0)
    return "from the run"
"""


def test_a_forked_helper_that_returns_too_does_not_replace_the_runs_result(project, interpreter):
    write(project / "pkg" / "main.py", FORKED_HELPER)
    write(project / "c.yml", RUN_SECTION + interpreter)
    result = launch(project, "c.yml")
    assert result.returncode == 0, result.stderr
    run = run_json(only_run(project))
    assert run["status"] == "completed" and run["result"] == "from the run"


WAYS_TO_FAIL = {
    "segfault": (
        "import ctypes\ndef main(name, config):\n    print('before crash', flush=True)\n    ctypes.string_at(0)\n",
        "the run was killed by SIGSEGV",
        "Fatal Python error",
    ),
    "os-exit": ("import os\ndef main(name, config):\n    os._exit(5)\n", "the run exited with code 5", ""),
    "closed-stderr": (
        "import os\ndef main(name, config):\n    os.close(2)\n    raise ValueError('lost?')\n",
        "lost?",
        "",
    ),
    "sys-exit-message": (
        "import sys\ndef main(name, config):\n    sys.exit('fatal: no data')\n",
        "fatal: no data",
        "fatal: no data",
    ),
}


@pytest.mark.parametrize("way", sorted(WAYS_TO_FAIL))
def test_a_failing_entry_point_is_recorded_the_same_way_by_every_interpreter(project, interpreter, way):
    body, message, logged = WAYS_TO_FAIL[way]
    write(project / "pkg" / "main.py", body)
    write(project / "c.yml", RUN_SECTION + interpreter)
    result = launch(project, "c.yml")
    assert result.returncode == 1
    run_dir = only_run(project)
    run = run_json(run_dir)
    assert run["status"] == "failed" and message in run["exception"]["message"]
    assert logged in (run_dir / "outputs.log").read_text()


def test_a_script_that_prints_what_the_probe_expects_is_not_taken_for_python(project, tmp_path):
    fake = write(tmp_path / "bin" / "python", "#!/bin/sh\necho True\necho 3.12.0\necho /usr/bin/python3\n")
    fake.chmod(0o755)
    write(project / "c.yml", RUN_SECTION + f"  __python__: {fake}\n")
    result = launch(project, "c.yml")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"expyrun: error: `__run__.__python__`: {fake} is not a Python interpreter"
        " (name a python executable or a virtual environment folder)"
    ]
    assert not (project / "outputs").exists()


def test_a_venv_whose_path_holds_a_space_runs_the_entry_point(project, tool_venv):
    write(project / "pkg" / "main.py", "import sys\ndef main(name, config):\n    return sys.prefix\n")
    write(project / "c.yml", RUN_SECTION + f"  __python__: {tool_venv}\n")
    result = launch(project, "c.yml")
    assert result.returncode == 0, result.stderr
    run = run_json(only_run(project))
    assert run["result"] == str(tool_venv) and run["python"]["executable"] == str(tool_venv / "bin" / "python")


def test_an_entry_point_without_the_name_parameter_is_refused_before_anything_is_created(project):
    write(project / "pkg" / "main.py", '"""A project\'s own entry point."""\n\n\ndef main(config):\n    return 1\n')
    write(project / "c.yml", RUN_SECTION)
    for args in (["c.yml"], ["c.yml", "--dry-run"]):
        result = launch(project, *args)
        assert result.returncode == 2
        assert result.stderr.splitlines() == [
            f"expyrun: error: {project / 'pkg' / 'main.py'}:4: `main(config)` cannot be called as "
            "`main(name, config)`, which is how expyrun calls the entry point (define it as "
            "`def main(name, config):` (the run's name and its resolved config))"
        ]
        assert "Traceback" not in result.stderr and not (project / "outputs").exists()


@pytest.mark.parametrize(
    "parameters",
    [
        "name, config",
        "name: str, config: dict[str, int]",
        "\n    name,  # the run's name\n    config=None,\n    *,\n    verbose: bool = False,\n",
        "*arguments",
        "name, config, extra=(1, 2)",
        "name, config, /",
    ],
    ids=["plain", "annotated", "multi-line", "varargs", "default", "positional-only"],
)
def test_entry_points_that_can_be_called_with_name_and_config_pass_the_check(project, parameters):
    example = '"""Not like this:\ndef main(config):\n"""\n'  # text, not the entry point
    write(project / "pkg" / "main.py", f"{example}def main({parameters}):\n    return 1\n")
    write(project / "c.yml", RUN_SECTION)
    result = launch(project, "c.yml", "--dry-run")
    assert result.returncode == 0, result.stderr


DECORATED_WRONG_SIGNATURE = """\
def keep_config(function):
    def call(config):
        return function(config)

    return call


@keep_config
def main(config):
    return config
"""


def test_a_signature_seen_only_once_imported_fails_the_run_with_one_line(project, interpreter):
    write(project / "pkg" / "main.py", DECORATED_WRONG_SIGNATURE)
    write(project / "c.yml", RUN_SECTION + interpreter)
    result = launch(project, "c.yml")
    assert result.returncode == 1
    run_dir = only_run(project)
    run = run_json(run_dir)
    message = (
        f"`call(config)` cannot be called as `call(name, config)`, which is how expyrun calls the entry point "
        f"({run_dir / 'pkg' / 'main.py'})"
    )
    assert run["status"] == "failed" and run["exception"] == {"type": "SignatureMismatch", "message": message}
    assert (run_dir / "outputs.log").read_text() == f"expyrun: {message}\n"


def test_a_rerun_and_env_check_compare_a_tool_runs_requirements_with_its_own_interpreter(tmp_path):
    venv = tmp_path / "tool-env"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, env=clean_env())
    write(tmp_path / "pkg" / "__init__.py", "")
    write(tmp_path / "pkg" / "main.py", "def main(name, config):\n    return 1\n")
    write(tmp_path / "c.yml", RUN_SECTION + f"  __python__: {venv}\n")
    assert launch(tmp_path, "c.yml").returncode == 0
    first = only_run(tmp_path)
    rerun = launch(tmp_path, str(first / "config.yml"))
    assert rerun.returncode == 0, rerun.stderr
    assert "installed packages differ" not in rerun.stderr
    check = launch(tmp_path, "env", str(first), "--check")
    assert check.returncode == 0, check.stdout + check.stderr
    assert f"{venv / 'bin' / 'python'} matches" in check.stderr
    site = next((venv / "lib").glob("python*/site-packages"))
    write(site / "extra-1.0.dist-info" / "METADATA", "Metadata-Version: 2.1\nName: extra\nVersion: 1.0\n\n")
    rerun = launch(tmp_path, str(first / "config.yml"))
    assert "installed packages differ from" in rerun.stderr and "(1): + extra==1.0" in rerun.stderr
    check = launch(tmp_path, "env", str(first), "--check")
    assert check.returncode == 1 and check.stdout.splitlines() == ["+ extra==1.0"]


WAITING_FOR_A_THREAD = """\
import threading, time


def main(name, config):
    threading.Thread(target=time.sleep, args=(600,), name="endless-sleeper").start()
    print("RETURNING", flush=True)
    return 1
"""


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_stop_signal_while_the_run_waits_for_its_threads_interrupts_it_at_once(project, interpreter, signum, code):
    write(project / "pkg" / "main.py", WAITING_FOR_A_THREAD)
    write(project / "c.yml", RUN_SECTION + interpreter)
    process = start_expyrun(["c.yml"], project)
    try:
        log = project / "outputs" / "demo" / "exp.0" / "outputs.log"
        deadline = time.monotonic() + 30
        while not (log.exists() and "RETURNING" in log.read_text()):
            assert time.monotonic() < deadline, "the entry point never said it was returning"
            time.sleep(0.05)
        process.send_signal(signum)
        assert process.wait(timeout=20) == code
    finally:
        process.kill()
        process.communicate()
    assert run_json(only_run(project))["status"] == "interrupted"


def test_sys_exit_without_a_message_completes_the_run_under_every_interpreter(project, interpreter):
    write(project / "pkg" / "main.py", "import sys\ndef main(name, config):\n    sys.exit()\n")
    write(project / "c.yml", RUN_SECTION + interpreter)
    result = launch(project, "c.yml")
    assert result.returncode == 0, result.stderr
    run = run_json(only_run(project))
    assert run["status"] == "completed" and run["result"] is None and run.get("exception") is None
