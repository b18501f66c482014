"""`expyrun ui DIR`: the real viewer serving real run folders, driven in headless Chromium through
Playwright (Debian's /usr/bin/chromium, no downloaded browser) as a user drives it: rows ticked,
tabs clicked, charts read back from what plotly drew. Every wait has a deadline and fails saying
what it saw."""

from __future__ import annotations

import math
import os
import select
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import RUN_SECTION, clean_env, write
from hypothesis import given
from hypothesis import strategies as st

from expyrun.ui.reduce import reduce_points

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]  # fmt: skip
LOSS_PLOT = "document.querySelector('.chart[data-metric=loss] .plot')"  # plotly's graph div of `loss`
XSS = "<script>window.__pwned=1</script><img/src=x/onerror=window.__pwned=2>"

ENTRY = """
import math, os, time
import expyrun


def main(name, config):
    for step in range(config["steps"]):
        expyrun.log(loss=config["scale"] * math.exp(-step / 10), accuracy=step / 100)
    expyrun.log_text("note", config["text"])
    print(config["text"])
    stop = config.get("stop_file")
    step = config["steps"]
    while stop and not os.path.exists(stop):  # a run that goes on until the test says stop
        expyrun.log(loss=1.0 / (step + 1), accuracy=0.5)
        step += 1
        print("waited", step, flush=True)
        time.sleep(0.05)
    return {"loss": config["scale"]}
"""


def config(**values: object) -> str:
    lines = [f"{key}: {value!r}" if isinstance(value, str) else f"{key}: {value}" for key, value in values.items()]
    return RUN_SECTION + "\n".join(lines) + "\n"


def make_runs(project: Path, *overrides: list[str]) -> list[Path]:
    """One run per list of overrides (steps, scale, text, seed set by default), in outputs/demo/exp.{i}."""
    write(project / "pkg" / "main.py", ENTRY)
    write(project / "run.yml", config(steps=30, scale=1.0, text="plain", seed=0))
    folders = []
    for index, extra in enumerate(overrides):
        result = subprocess.run(
            [sys.executable, "-m", "expyrun", "run.yml", *extra], cwd=project, env=clean_env(),
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        folders.append(project / "outputs" / "demo" / f"exp.{index}")
    return folders


class Viewer:
    """`expyrun ui` in the background, its URL read from its first line of stdout."""

    def __init__(self, args: list[str], cwd: Path, timeout: float = 60) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "expyrun", "ui", *args], cwd=cwd, env=clean_env(),
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

    @property
    def port(self) -> int:
        return int(self.url.rstrip("/").rsplit(":", 1)[1])

    def fail(self, what: str) -> None:
        self.process.kill()
        _, stderr = self.process.communicate(timeout=30)
        pytest.fail(f"expyrun ui: {what}; exit {self.process.returncode}; stderr: {stderr.decode()[-2000:]}")

    def status(self, path: str, headers: dict[str, str] | None = None, method: str = "GET") -> int:
        request = urllib.request.Request(self.url.rstrip("/") + path, headers=headers or {}, method=method)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status
        except urllib.error.HTTPError as error:
            return error.code

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
def viewers() -> Iterator[list[Viewer]]:
    started: list[Viewer] = []
    yield started
    for viewer in started:
        viewer.close()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} not found: run `bash .ci/install` (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: object) -> Iterator[object]:
    context = browser.new_context(viewport={"width": 1400, "height": 1000})  # type: ignore[attr-defined]
    opened = context.new_page()
    opened.errors = []
    opened.on("pageerror", lambda error: opened.errors.append(str(error)))
    yield opened
    context.close()


def wait_until(page, expression: str, what: str, timeout_ms: float = 10_000) -> None:
    """Wait for a JavaScript expression to be true on the page; fail saying what the page showed."""
    try:
        page.wait_for_function(expression, timeout=timeout_ms)
    except Exception:
        shown = page.evaluate("document.body.innerText.slice(0, 1500)")
        pytest.fail(f"{what}: not within {timeout_ms / 1000:g} s; page errors {page.errors}; the page showed:\n{shown}")


def traces_per_chart(page) -> dict[str, int]:
    """Each chart's title and the number of lines plotly drew in it."""
    return page.evaluate(
        """() => Object.fromEntries([...document.querySelectorAll('.chart')].map(c =>
            [c.querySelector('h3').textContent, c.querySelectorAll('.scatterlayer .trace').length]))"""
    )


def open_viewer(project: Path, viewers: list[Viewer], folder: str = "outputs") -> Viewer:
    viewer = Viewer([folder, "--port", str(free_port())], project)
    viewers.append(viewer)
    return viewer


def test_the_page_lists_every_run_with_a_checkbox_and_a_link_to_its_page(project, viewers, page):
    make_runs(project, ["--scale", "1.0"], ["--scale", "2.0"], ["--scale", "3.0"])
    viewer = open_viewer(project, viewers)
    page.goto(viewer.url)
    wait_until(page, "document.querySelectorAll('tr.run').length === 3", "three runs listed")
    rows = page.evaluate("[...document.querySelectorAll('tr.run')].map(r => r.dataset.path)")
    assert rows == ["demo/exp.0", "demo/exp.1", "demo/exp.2"]
    assert page.locator("tr.run input.select").count() == 3
    assert "scale" in page.inner_text("#runs thead")  # the config value that differs is a column
    paths = "[...document.querySelectorAll('tr.run')].map(r => r.dataset.path).join(' ')"
    page.click("th[data-key='metric.loss']")
    page.click("th[data-key='metric.loss']")  # descending: the largest last loss (scale 3) first
    wait_until(page, f"{paths} === 'demo/exp.2 demo/exp.1 demo/exp.0'", "sorted by metric.loss, descending")
    page.click("tr.run >> nth=1 >> a.run-link")
    wait_until(page, "document.getElementById('run-title').textContent === 'demo/exp.1'", "the run's page")
    wait_until(page, "document.querySelectorAll('#run-charts .chart').length === 2", "the run's two metrics drawn")
    assert "completed" in page.inner_text("#run-status")
    record = page.inner_text("#run-record")
    assert '"scale": 2' in record and "pyyaml==" in record.lower()  # its config and frozen requirements
    code, stderr = viewer.interrupt()
    assert code == 0, stderr


def test_two_selected_runs_draw_two_lines_in_each_metric_chart(project, viewers, page):
    make_runs(project, ["--scale", "1.0"], ["--scale", "2.0"], ["--scale", "3.0"])
    viewer = open_viewer(project, viewers)
    page.goto(viewer.url)
    wait_until(page, "document.querySelectorAll('tr.run').length === 3", "three runs listed")
    page.check("tr.run[data-path='demo/exp.0'] input.select")
    page.check("tr.run[data-path='demo/exp.2'] input.select")
    page.click("a[data-tab=scalars]")
    wait_until(page, "document.querySelectorAll('.chart .scatterlayer .trace').length === 4", "two lines in two charts")
    assert traces_per_chart(page) == {"accuracy": 2, "loss": 2}
    assert page.evaluate("typeof Plotly.newPlot") == "function"  # drawn by plotly.js, served by expyrun
    last = page.evaluate(
        "[...document.querySelectorAll('.chart')].find(c => c.dataset.metric === 'loss')"
        ".querySelector('.plot').data.map(t => t.y[0])"
    )
    assert last == [1.0, 3.0]  # each run's own values: exp.0 scale 1, exp.2 scale 3
    raw = page.evaluate(f"{LOSS_PLOT}.data[0].y[10]")
    page.locator(".chart[data-metric=loss] input.smoothing").fill("0.9")
    wait_until(page, f"{LOSS_PLOT}.data[0].y[10] > {raw} * 1.5", "the curve smoothed (a decreasing curve lags above)")
    page.check(".chart[data-metric=loss] input.log")
    wait_until(page, f"{LOSS_PLOT}.layout.yaxis.type === 'log'", "log scale")


def test_group_by_draws_a_mean_line_and_a_band_per_group(project, viewers, page):
    seeds = [["--scale", "1.0", "--seed", "0"], ["--scale", "2.0", "--seed", "0"], ["--scale", "3.0", "--seed", "1"]]
    make_runs(project, *seeds)
    viewer = open_viewer(project, viewers)
    page.goto(viewer.url)
    wait_until(page, "document.querySelectorAll('tr.run').length === 3", "three runs listed")
    page.check("input.select-all")  # every run shown
    assert page.inner_text("#selection") == "3 selected"
    page.click("a[data-tab=scalars]")
    wait_until(page, "document.querySelectorAll('.chart').length === 2", "two charts")
    page.select_option("#group-by", "seed")
    wait_until(page, f"{LOSS_PLOT}.data.length === 6", "two groups drawn")
    names = page.evaluate(f"{LOSS_PLOT}.data.map(t => t.name).filter(Boolean)")
    assert names == ["seed=0 (n=2)", "seed=1 (n=1)"]
    high, low, mean = page.evaluate(f"{LOSS_PLOT}.data.slice(0, 3).map(t => t.y)")  # band top, bottom, mean
    assert all(h >= m >= lo for h, m, lo in zip(high, mean, low, strict=True))
    assert (high[0], mean[0], low[0]) == (2.0, 1.5, 1.0)  # seeds of scale 1 and 2: mean 1.5, the band between


def test_a_running_runs_curve_grows_and_new_runs_appear_without_reloading(project, viewers, page):
    make_runs(project, ["--scale", "1.0"])
    stop = project / "stop"
    running = subprocess.Popen(
        [sys.executable, "-m", "expyrun", "run.yml", "--+stop_file", str(stop)], cwd=project, env=clean_env(),
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        viewer = open_viewer(project, viewers)
        page.goto(viewer.url)
        wait_until(page, "document.querySelectorAll('tr.run').length === 2", "the new run listed without reloading")
        page.check("tr.run[data-path='demo/exp.1'] input.select")
        page.click("a[data-tab=scalars]")
        length = f"{LOSS_PLOT}.data[0].x.length"
        wait_until(page, f"{LOSS_PLOT} && {length} > 30", "the curve drawn")
        first = page.evaluate(length)
        wait_until(page, f"{length} > {first} + 10", "the curve grown", timeout_ms=5000)
        page.goto(viewer.url + "#run=demo%2Fexp.1")  # the run's page
        log = "document.getElementById('run-log').textContent.trim().split('\\n').length"
        wait_until(page, f"{log} > 5", "the running run's log shown")
        lines = page.evaluate(log)
        wait_until(page, f"{log} > {lines} + 10", "the log grown without reloading", timeout_ms=5000)
    finally:
        stop.write_text("")
        running.wait(timeout=60)
    page.click("a[data-tab=runs]")
    wait_until(page, "document.querySelector(\"tr.run[data-path='demo/exp.1'] .status\").textContent === 'completed'",
               "the status change shown without reloading")  # fmt: skip


def test_text_from_runs_stays_text(project, viewers, page):
    write(project / "pkg" / "main.py", ENTRY)
    tagged = RUN_SECTION + f"  __tags__: ['{XSS}']\n"  # a launch tag (`__run__.__tags__`)
    write(project / "run.yml", tagged + config(steps=5, scale=1.0, text=XSS, seed=0).removeprefix(RUN_SECTION))
    for value in ("a", XSS):
        result = subprocess.run([sys.executable, "-m", "expyrun", "run.yml", "--text", value], cwd=project,
                                env=clean_env(), capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
        assert result.returncode == 0, result.stderr
    viewer = open_viewer(project, viewers)
    page.goto(viewer.url)
    wait_until(page, "document.querySelectorAll('tr.run').length === 2", "two runs listed")
    table = page.inner_text("#runs")
    assert XSS in table  # the tag, and the config value that differs, shown as typed
    page.check("tr.run[data-path='demo/exp.1'] input.select")
    page.click("a[data-tab=text]")
    wait_until(page, "document.querySelectorAll('#texts pre').length === 1", "the logged text")
    assert page.inner_text("#texts pre") == XSS
    page.goto(viewer.url + "#run=demo%2Fexp.1")
    wait_until(page, "document.getElementById('run-log').textContent.includes('__pwned')", "the log tail")
    assert XSS in page.inner_text("#run-log")
    assert page.evaluate("window.__pwned") is None
    assert page.locator("#runs script, #texts script, #run-log script, img[src=x]").count() == 0


def test_paths_outside_the_folder_and_other_sites_are_refused(project, viewers, tmp_path_factory):
    (run,) = make_runs(project, [])
    outside = tmp_path_factory.mktemp("outside")
    write(outside / "run.json", '{"name": "secret"}')
    (project / "outputs" / "link").symlink_to(outside)
    (run / "figures").mkdir()
    before = sorted(str(p) for p in (project / "outputs").rglob("*"))
    viewer = open_viewer(project, viewers)
    assert viewer.status("/api/run?run=demo/exp.0") == 200
    for path in ("/api/run?run=../outputs/demo/exp.0", "/api/run?run=demo/../demo/exp.0",
                 f"/api/run?run={outside}", "/api/run?run=link", "/api/log?run=link",
                 "/api/file?run=demo/exp.0&path=figures/../run.json", "/api/file?run=demo/exp.0&path=run.json",
                 "/api/file?run=demo/exp.0&path=/etc/passwd"):  # fmt: skip
        assert viewer.status(path) == 403, path
    assert viewer.status("/", {"Host": "attacker.example:80"}) == 421  # DNS rebinding
    assert viewer.status("/api/runs", {"Origin": "http://attacker.example"}) == 403
    assert viewer.status("/api/runs", method="POST") == 405
    assert viewer.status("/api/runs", method="HEAD") == 200
    assert sorted(str(p) for p in (project / "outputs").rglob("*")) == before  # read-only: nothing written


def test_a_second_viewer_gets_the_next_port_and_ctrl_c_exits_0(project, viewers):
    make_runs(project, [])
    first = Viewer(["outputs", "--port", str(free_port())], project)
    viewers.append(first)
    second = Viewer(["outputs", "--port", str(first.port)], project)
    viewers.append(second)
    assert second.port > first.port
    assert second.status("/") == 200 and first.status("/api/runs") == 200
    for viewer in (first, second):
        code, stderr = viewer.interrupt()
        assert code == 0, stderr
        assert "Traceback" not in stderr


def test_sigterm_while_requests_are_served_exits_143(project, viewers):
    """A SIGTERM that lands while the server handles a request still stops it (socketserver catches
    `Exception` around each request: a stop raised as one was swallowed and the viewer kept serving)."""
    import threading

    make_runs(project, [])
    for _ in range(4):
        viewer = Viewer(["outputs", "--port", str(free_port())], project)
        viewers.append(viewer)
        done = threading.Event()

        def hammer(viewer: Viewer = viewer, done: threading.Event = done) -> None:
            while not done.is_set():
                try:
                    viewer.status("/api/runs")
                except OSError:
                    return

        threads = [threading.Thread(target=hammer, daemon=True) for _ in range(4)]
        for thread in threads:
            thread.start()
        time.sleep(0.3)
        viewer.process.send_signal(signal.SIGTERM)
        try:
            _, stderr = viewer.process.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            viewer.fail("still serving 10 s after SIGTERM")
        finally:
            done.set()
        assert viewer.process.returncode == 143, stderr.decode()[-2000:]
        assert b"Traceback" not in stderr


def test_a_folder_that_does_not_exist_is_one_line(project):
    result = subprocess.run([sys.executable, "-m", "expyrun", "ui", "missing"], cwd=project, env=clean_env(),
                            capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "expyrun: error: missing: no such folder (give the folder holding the runs, such as outputs)"
    ]


def test_reducing_points_keeps_every_spike():
    steps = list(range(100_000))
    values = [0.0] * 100_000
    values[12_345] = 50.0
    values[77_777] = -50.0
    values[500] = float("nan")
    kept_steps, kept_values = reduce_points(steps, values, 1000)
    assert len(kept_steps) <= 2000
    kept = dict(zip(kept_steps, kept_values, strict=True))
    assert kept[12_345] == 50.0 and kept[77_777] == -50.0
    assert kept_steps == sorted(kept_steps)
    assert reduce_points([0, 1], [1.0, float("inf")], 10) == ([0, 1], [1.0, None])


def test_a_followed_curve_reads_only_new_lines_and_keeps_every_spike(tmp_path):
    from expyrun.track import metrics
    from expyrun.ui.live import Curves

    writer = metrics.Writer(str(tmp_path), time.time())
    curves = Curves(100)
    logged: list[float] = []
    for chunk in range(30):
        for step in range(1 + chunk * 997 % 4000):
            value = 1000.0 if step == 500 else -1000.0 if step == 1500 else (step % 13) / 13
            logged.append(value)
            writer.log(None, {"loss": value, "other": 1})
        drawn = curves.read(tmp_path, "loss")
        assert drawn["count"] == len(logged)
        assert len(drawn["steps"]) <= 200 and drawn["steps"] == sorted(drawn["steps"])  # 2 points a bucket
        assert max(drawn["values"]) == max(logged) and min(drawn["values"]) == min(logged)
    steps, values, offset, last = metrics.read_series_from(tmp_path, "loss")
    assert (steps, values) == tuple(list(part) for part in metrics.read_series(tmp_path, "loss"))
    assert offset == (tmp_path / "metrics.jsonl").stat().st_size and last == len(logged) - 1
    with open(tmp_path / "metrics.jsonl", "a") as file:  # another program's lines, and half a line
        file.write('{"loss": 5}\n{"time": 1, "loss": "nan"}\n{"loss": ')
    more = metrics.read_series_from(tmp_path, "loss", offset, last)
    assert more[0] == [len(logged), len(logged) + 1] and more[1][0] == 5.0 and more[3] == len(logged) + 1
    assert more[2] == (tmp_path / "metrics.jsonl").stat().st_size - len('{"loss": ')


@given(
    st.lists(st.lists(st.one_of(st.floats(-1e6, 1e6), st.sampled_from([math.nan, math.inf, -math.inf])), max_size=300),
             min_size=1, max_size=8),
    st.integers(1, 20),
    st.integers(0, 3000),
)  # fmt: skip
def test_a_growing_curve_draws_logged_points_only_its_extremes_included_within_its_bound(parts, buckets, coming):
    from expyrun.ui.live import GrowingCurve

    curve = GrowingCurve(buckets)
    logged: list[tuple[int, float]] = []
    for part in parts:
        steps = list(range(len(logged), len(logged) + len(part)))
        curve.add(steps, part, coming if not logged else 0)
        logged += zip(steps, part, strict=True)
        drawn = curve.points()
        pairs = list(zip(drawn["steps"], drawn["values"], strict=True))
        numbers = [(step, value) for step, value in logged if value - value == 0]
        assert drawn["count"] == len(logged) and len(pairs) <= 2 * buckets
        assert set(pairs) <= set(numbers) and drawn["steps"] == sorted(drawn["steps"])
        if numbers:
            assert max(value for _, value in numbers) == max(drawn["values"])
            assert min(value for _, value in numbers) == min(drawn["values"])
        else:
            assert pairs == []


def test_a_long_running_runs_first_view_keeps_every_spike_and_skips_what_is_not_a_number(tmp_path):
    """The first view of a running run reads its file part by part (1 MB), bucketing each part: no
    spike is lost across parts, NaN and infinities are counted but not drawn, a torn line waits."""
    from expyrun.track import metrics
    from expyrun.ui.live import Curves, GrowingCurve

    writer = metrics.Writer(str(tmp_path), time.time())
    spikes = {7: 1e6, 33_333: -1e6, 59_998: 2e6}  # the first line, one mid-file, the last but one
    for step in range(60_000):
        value = spikes.get(step, float("nan") if step % 1000 == 5 else float("inf") if step == 40_000 else step % 7)
        writer.log(step, {"loss": value, "acc": 1})
    size = (tmp_path / "metrics.jsonl").stat().st_size
    assert size > 2 * metrics.FOLLOW_CHUNK_BYTES  # several parts
    with open(tmp_path / "metrics.jsonl", "a") as file:
        file.write('{"step": 60000, "time": 1.0, "loss": 9e9')  # being written
    curves = Curves(100)
    drawn = curves.read(tmp_path, "loss")
    assert drawn["count"] == 60_000
    assert 100 <= len(drawn["steps"]) <= 200 and drawn["steps"] == sorted(drawn["steps"])
    kept = dict(zip(drawn["steps"], drawn["values"], strict=True))
    assert all(kept.get(step) == value for step, value in spikes.items()), {s: kept.get(s) for s in spikes}
    assert all(value - value == 0 for value in drawn["values"])  # NaN and inf not drawn
    with open(tmp_path / "metrics.jsonl", "a") as file:
        file.write("}\n")
    drawn = curves.read(tmp_path, "loss")
    assert drawn["count"] == 60_001 and max(drawn["values"]) == 9e9 and drawn["steps"][-1] == 60_000
    same_step = GrowingCurve(1)  # two values logged at one step are two points
    same_step.add([5, 5], [1.0, 2.0])
    assert same_step.points() == {"steps": [5, 5], "values": [1.0, 2.0], "count": 2}


FIGURES_ENTRY = """
import expyrun
import plotly.graph_objects as go


def main(name, config):
    for step, word in ((0, "first"), (5, "second")):
        expyrun.log_text("sample", word, step=step)
        expyrun.log_figure("curve", go.Figure(go.Scatter(x=[0, 1], y=[step, step + 1], name=word)), step=step)
"""


def test_texts_and_figures_are_shown_per_tag_with_a_step_slider(project, viewers, page):
    write(project / "pkg" / "main.py", FIGURES_ENTRY)
    write(project / "run.yml", RUN_SECTION)
    result = subprocess.run([sys.executable, "-m", "expyrun", "run.yml"], cwd=project, env=clean_env(),
                            capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    assert result.returncode == 0, result.stderr
    viewer = open_viewer(project, viewers)
    page.goto(viewer.url)
    wait_until(page, "document.querySelectorAll('tr.run').length === 1", "the run listed")
    page.check("tr.run input.select")
    page.click("a[data-tab=text]")
    wait_until(page, "document.querySelector('#texts pre')?.textContent === 'second'", "the last text shown")
    page.locator("#texts input.step-slider").fill("0")
    wait_until(page, "document.querySelector('#texts pre').textContent === 'first'", "the first step's text")
    page.click("a[data-tab=figures]")
    figure = "document.querySelector('#figures .figure .plot')"
    wait_until(page, f"{figure}?.data?.[0]?.name === 'second'", "the last figure drawn")
    page.locator("#figures input.step-slider").fill("0")
    wait_until(page, f"{figure}?.data?.[0]?.name === 'first'", "the first step's figure drawn")
    # a matplotlib figure is a PNG file (as expyrun.log_figure saves it): shown as an image
    write_png(project / "outputs" / "demo" / "exp.0" / "figures" / "photo" / "3.png")
    page.click("a[data-tab=runs]")
    page.click("a[data-tab=figures]")
    wait_until(page, "document.querySelector('#figures img')?.naturalWidth === 1", "the PNG figure shown")


def write_png(path: Path) -> None:
    """A 1x1 PNG image."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0\xff\0\0"))
                     + chunk(b"IEND", b""))  # fmt: skip


def test_a_sweeps_points_are_grouped_and_the_query_box_filters_runs(project, viewers, page):
    write(project / "pkg" / "main.py", ENTRY)
    write(project / "sweep.yml", config(steps=3, scale=1.0, text="plain", seed=0)
          + "__sweep__:\n  grid:\n    scale: [1.0, 2.0, 3.0]\n")  # fmt: skip
    write(project / "run.yml", config(steps=3, scale=0.5, text="plain", seed=0))
    for name in ("sweep.yml", "run.yml"):
        result = subprocess.run([sys.executable, "-m", "expyrun", name], cwd=project, env=clean_env(),
                                capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
        assert result.returncode == 0, result.stderr
    viewer = open_viewer(project, viewers)
    page.goto(viewer.url)
    wait_until(page, "document.querySelectorAll('tr.run').length === 4", "four runs listed")
    groups = page.evaluate("[...document.querySelectorAll('tr.group')].map(r => r.textContent)")
    assert len(groups) == 1 and groups[0].startswith("sweep ") and groups[0].endswith("(3 runs)"), groups
    members = page.evaluate("[...document.querySelectorAll('tr.run.member')].length")
    assert members == 3
    page.fill("#where", "scale >= 2")
    page.click("#query button")
    wait_until(page, "document.querySelectorAll('tr.run').length === 2", "the runs with scale >= 2")
    page.fill("#where", "scael >= 2")
    page.click("#query button")
    wait_until(page, "document.getElementById('where-error').textContent.includes('scale')", "did-you-mean")


def test_a_studys_page_lists_its_trials_with_their_params_and_values(project, viewers, page):
    from test_dashboard import make_study

    study_dir = make_study(project)
    viewer = open_viewer(project, viewers)
    page.goto(viewer.url)
    wait_until(page, "document.querySelectorAll('tr.run').length === 4", "the study and its three trials listed")
    assert page.evaluate("[...document.querySelectorAll('tr.group')].map(r => r.textContent)") == [
        "study watched/exp.0 (4 runs)"
    ]
    page.click("tr.run[data-path='watched/exp.0'] a.run-link")
    wait_until(page, "document.querySelectorAll('#run-trials tr.trial').length === 3", "the trials table")
    assert "x" in page.inner_text("#run-trials thead")
    assert f"expyrun dashboard {study_dir}" in page.inner_text("#run-trials")
    page.click("#run-trials tr.trial a >> nth=0")
    wait_until(page, "document.getElementById('run-title').textContent.startsWith('watched/exp.0/trials/')",
               "a trial's page")  # fmt: skip


def test_a_folder_that_is_not_a_run_is_said_once_however_often_the_table_is_read(project, viewers):
    make_runs(project, [])
    write(project / "outputs" / "other" / "run.json", "[1, 2]")  # another tool's file
    viewer = open_viewer(project, viewers)
    readings = 0
    end = time.monotonic() + 2.5  # the table is read again at most every 0.7 s: at least 3 readings
    while time.monotonic() < end:
        assert viewer.status("/api/runs") == 200
        readings += 1
    code, stderr = viewer.interrupt()
    assert code == 0, stderr
    warned = [line for line in stderr.splitlines() if "other/run.json" in line]
    assert len(warned) == 1 and "not a run record" in warned[0], (readings, stderr)


def test_without_plotly_the_viewer_says_how_to_install_it(project):
    hide = (
        "import sys; sys.modules['plotly'] = None; from expyrun.cli import main; "
        "sys.argv = ['expyrun', 'ui', '.']; main()"
    )
    result = subprocess.run([sys.executable, "-c", hide], cwd=project, env=clean_env(), capture_output=True,
                            text=True, timeout=60, check=False)  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "expyrun: error: the runs viewer draws with plotly, which is not installed: pip install 'expyrun[ui]'"
    ]
