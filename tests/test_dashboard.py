"""`expyrun dashboard STUDY_RUN`: the real command serving the study of a real study folder
(journal file, SQLite file, PostgreSQL server), fetched over HTTP and rendered by headless
Chromium. Every wait has a deadline and fails saying what it saw."""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import RUN_SECTION, clean_env, run_expyrun, write

CHROMIUM = Path("/usr/bin/chromium")
STUDY_NAME = "zebra-study-4711"  # a name found on the rendered page only if the page rendered the study

ENTRY = """
def main(name, config):
    x = config["x"]
    return {"loss": (x - 1) ** 2, "accuracy": 1 / (1 + x * x), "epochs": 2}
"""


def study_config(storage: str = "") -> str:
    return (
        RUN_SECTION.replace("demo", "watched")
        + f"""\
x: 0.0
__optuna__:
  study_name: {STUDY_NAME}
{storage}  n_trials: 3
  objectives: {{loss: minimize, accuracy: maximize}}
  sampler: {{name: RandomSampler, seed: 0}}
  search_space:
    x: {{type: float, low: -2, high: 2}}
"""
    )


def make_study(project: Path, storage: str = "", env: dict[str, str] | None = None) -> Path:
    write(project / "pkg" / "main.py", ENTRY)
    write(project / "tune.yml", study_config(storage))
    result = run_expyrun(["tune.yml"], project, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    return project / "outputs" / "watched" / "exp.0"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Dashboard:
    """`expyrun dashboard` in the background, its URL read from its first line of stdout."""

    def __init__(self, args: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: float = 60) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "expyrun", "dashboard", *args], cwd=cwd, env={**clean_env(), **(env or {})},
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
        assert self.process.stdout is not None
        line = b""
        deadline = time.monotonic() + timeout
        while not line.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0 or self.process.poll() is not None:
                self.fail(f"no URL within {timeout:g} s (stdout so far {line!r})")
            if select.select([self.process.stdout], [], [], min(left, 0.2))[0]:
                chunk = os.read(self.process.stdout.fileno(), 1)
                if not chunk:
                    self.fail(f"stdout closed before a URL (stdout so far {line!r})")
                line += chunk
        self.url = line.decode().strip()

    def fail(self, what: str) -> None:
        self.process.kill()
        _, stderr = self.process.communicate(timeout=30)
        pytest.fail(f"expyrun dashboard: {what}; exit {self.process.returncode}; stderr: {stderr.decode()[-2000:]}")

    @property
    def base(self) -> str:
        return self.url.split("/dashboard", 1)[0]

    def get(self, path: str) -> dict:
        with urllib.request.urlopen(self.base + path, timeout=30) as response:
            return json.loads(response.read())

    def interrupt(self, timeout: float = 20) -> tuple[int, str]:
        """Ctrl-C: SIGINT, then the exit status and stderr."""
        self.process.send_signal(signal.SIGINT)
        try:
            _, stderr = self.process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.fail(f"still running {timeout:g} s after SIGINT")
        return self.process.returncode, stderr.decode()

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.communicate(timeout=30)


@pytest.fixture
def dashboards() -> Iterator[list[Dashboard]]:
    started: list[Dashboard] = []
    yield started
    for dashboard in started:
        dashboard.close()


def check_api(dashboard: Dashboard, study_dir: Path) -> None:
    studies = dashboard.get("/api/studies")["study_summaries"]
    found = [s for s in studies if s["study_name"] == STUDY_NAME]
    assert len(found) == 1, studies
    study_id = found[0]["study_id"]
    assert dashboard.url == f"{dashboard.base}/dashboard/studies/{study_id}"
    detail = dashboard.get(f"/api/studies/{study_id}")
    assert detail["name"] == STUDY_NAME and detail["objective_names"] == ["loss", "accuracy"]
    assert len(detail["trials"]) == 3
    for trial in detail["trials"]:
        attrs = {a["key"]: a["value"] for a in trial["user_attrs"]}
        assert attrs["run_dir"] == str(study_dir / "trials" / f"trial.{trial['number']}")
        assert (Path(attrs["run_dir"]) / "run.json").is_file()


@pytest.mark.parametrize("kind", ["journal", "journal-file", "sqlite", "postgresql"])
def test_dashboard_serves_the_study_of_a_folder(project, dashboards, request, kind):
    env: dict[str, str] = {}
    if kind == "postgresql":  # a password kept as a reference in config.yml, read from the environment
        url = request.getfixturevalue("postgres_url")
        storage = f"  storage: {url.replace('postgres@', 'postgres:$PG_STUDY_PASSWORD@')}\n"
        env = {"PG_STUDY_PASSWORD": "not-needed-with-trust"}
    else:  # files relative to where the study was launched
        storage = {
            "journal": "",
            "journal-file": "  storage: shared.journal\n",
            "sqlite": "  storage: sqlite:///s.db\n",
        }[kind]
    study_dir = make_study(project, storage, env)
    if kind == "postgresql":
        assert "$PG_STUDY_PASSWORD" in (study_dir / "config.yml").read_text()
    elsewhere = project / "elsewhere"
    elsewhere.mkdir()
    port = free_port()
    dashboard = Dashboard([str(study_dir), "--port", str(port)], elsewhere, env)
    dashboards.append(dashboard)
    assert dashboard.base == f"http://127.0.0.1:{port}"
    check_api(dashboard, study_dir)
    code, stderr = dashboard.interrupt()
    assert code == 0, stderr
    assert STUDY_NAME in stderr and "Traceback" not in stderr
    if kind == "postgresql":
        assert "not-needed-with-trust" not in stderr  # the storage is shown without its password


def test_dashboard_page_renders_the_study_in_chromium(project, dashboards, tmp_path):
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} not found: run `bash .ci/install` (apt-get install chromium)")
    study_dir = make_study(project)
    dashboard = Dashboard([str(study_dir), "--port", str(free_port())], project)
    dashboards.append(dashboard)
    with urllib.request.urlopen(dashboard.url, timeout=30) as response:
        assert STUDY_NAME not in response.read().decode()  # the page as served: the name is rendered later
    profile = tmp_path / "chromium-profile"
    command = [
        str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={profile}", "--virtual-time-budget=10000", "--dump-dom", dashboard.url,
    ]  # fmt: skip
    try:
        rendered = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    except subprocess.TimeoutExpired:
        pytest.fail("chromium did not render the page within 120 s")
    assert rendered.returncode == 0, rendered.stderr[-2000:]
    assert STUDY_NAME in rendered.stdout, rendered.stdout[-2000:]
    assert "Pareto Front" in rendered.stdout  # the study's own page, with its two objectives
    code, stderr = dashboard.interrupt()
    assert code == 0, stderr


def test_dashboard_takes_8080_or_the_next_free_port(project, dashboards):
    study_dir = make_study(project)
    holder = socket.socket()
    try:
        holder.bind(("127.0.0.1", 8080))  # taken here (or already by someone else)
        holder.listen()
    except OSError:
        pass
    try:
        dashboard = Dashboard([str(study_dir)], project)
        dashboards.append(dashboard)
        port = int(dashboard.base.rsplit(":", 1)[1])
        assert 8080 < port < 8180, dashboard.url
        check_api(dashboard, study_dir)
        code, stderr = dashboard.interrupt()
        assert code == 0, stderr
    finally:
        holder.close()


def test_dashboard_without_optuna_dashboard_says_how_to_install(project):
    study_dir = make_study(project)
    hide = (
        "import sys; sys.modules['optuna_dashboard'] = None; from expyrun.cli import main; "
        f"sys.argv = ['expyrun', 'dashboard', {str(study_dir)!r}]; main()"
    )
    result = subprocess.run(
        [sys.executable, "-c", hide], cwd=project, env=clean_env(), capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "expyrun: error: optuna-dashboard is not installed: pip install 'expyrun[dashboard]'"
    ]


def test_dashboard_refuses_what_is_not_a_study_folder(project, expyrun):
    write(project / "plain.yml", RUN_SECTION + "x: 1\n")
    assert expyrun("plain.yml").returncode == 0
    study_dir = make_study(project)
    cases = {
        str(project / "outputs" / "demo" / "exp.0"): "not a study folder (its config.yml has no `__optuna__` section)",
        str(
            study_dir / "trials" / "trial.1"
        ): f"a trial folder, not a study folder (give its study folder {study_dir})",
        str(project / "missing"): "not a study folder (no readable run.json)",
    }
    for folder, message in cases.items():
        result = expyrun("dashboard", folder)
        assert result.returncode == 2, result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and message in lines[0], lines
    bad_port = expyrun("dashboard", str(study_dir), "--port", "70000")
    assert bad_port.returncode == 2 and "not a port number" in bad_port.stderr
    (project / "outputs" / "watched" / "study.journal").unlink()
    gone = expyrun("dashboard", str(study_dir))
    assert gone.returncode == 2 and "journal file" in gone.stderr and "does not exist" in gone.stderr


def test_a_password_reference_that_is_not_set_is_one_line(project, request):
    url = request.getfixturevalue("postgres_url")
    storage = f"  storage: {url.replace('postgres@', 'postgres:$PG_STUDY_PASSWORD@')}\n"
    study_dir = make_study(project, storage, {"PG_STUDY_PASSWORD": "x"})
    result = run_expyrun(["dashboard", str(study_dir)], project)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "expyrun: error: the study's storage refers to $PG_STUDY_PASSWORD, which is not set here "
        "(export PG_STUDY_PASSWORD=...)"
    ]
