"""Benchmark: the runs viewer (`expyrun ui`, SPEC 11.3) in headless Chromium: the time to the first
table of 10,000 runs, the time to draw 20 runs of 100,000 steps (ended runs, read from
`.metrics.columns`, and running ones, read from `metrics.jsonl`), and the server's memory while the
folder grows and the page keeps polling; then what the web library would cost (import time and
memory of the standard library's server, bottle, Starlette with uvicorn, Dash).

Run folders are made like real ones: 10,000 copies of a real launch's folder (as
`bench_list.py` does) and 20 run folders whose `metrics.jsonl` is written by `track.metrics.Writer`.
Needs Playwright and /usr/bin/chromium (tests need them too). Run: `python benchmarks/bench_ui.py`
(`WEB_LIBRARIES=/path` adds a folder where starlette, uvicorn and dash are installed, for the last part).
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import bench_list  # the 10,000 runs of `expyrun list`'s benchmark

STEPS = 100_000
CURVES = 20
REPEATS = 3
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]  # fmt: skip


def make_curves(root: Path, running: bool) -> None:
    """CURVES runs of STEPS steps of `loss` (with a spike each), ended (with `.metrics.columns`) or running."""
    from expyrun.run.record import host_name
    from expyrun.track import metrics

    for index in range(CURVES):
        run_dir = root / "long" / f"exp.{index}"
        run_dir.mkdir(parents=True)
        writer = metrics.Writer(str(run_dir), time.time())
        for step in range(STEPS):
            writer.log(step, {"loss": 100.0 if step == 1000 * index + 7 else 1.0 / (1 + step) + index})
        record = {"schema_version": 2, "name": "long", "run_dir": str(run_dir), "config": {"seed": index},
                  "started_at": "2026-01-01T00:00:00+00:00"}  # fmt: skip
        if running:
            record.update(status="running", host=host_name(), pid=os.getpid())
        else:
            series = metrics.read_metrics(run_dir)
            metrics.write_columns(run_dir, series)
            record.update(status="completed", duration_s=1.0, metrics=metrics.summarize(run_dir, series))
        (run_dir / "run.json").write_text(json.dumps(record))


class Viewer:
    def __init__(self, folder: Path) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("EXPYRUN_")}
        self.process = subprocess.Popen([sys.executable, "-m", "expyrun", "ui", str(folder), "--port", "18080"],
                                        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)  # fmt: skip
        assert self.process.stdout is not None
        self.url = self.process.stdout.readline().decode().strip()

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


def first_table(browser: object, viewer: Viewer, count: int) -> float:
    page = browser.new_page()  # type: ignore[attr-defined]
    start = time.perf_counter()
    page.goto(viewer.url)
    page.wait_for_function(f"document.querySelectorAll('tr.run').length === {count}", timeout=60_000)
    took = time.perf_counter() - start
    page.close()
    return took


def draw(browser: object, viewer: Viewer) -> float:
    """Seconds from clicking the Scalars tab (20 runs ticked) to 20 lines drawn."""
    page = browser.new_page(viewport={"width": 1400, "height": 1000})  # type: ignore[attr-defined]
    page.goto(viewer.url)
    page.wait_for_function(f"document.querySelectorAll('tr.run').length === {CURVES}", timeout=60_000)
    for box in page.locator("tr.run input.select").all():
        box.check()
    start = time.perf_counter()
    page.click("a[data-tab=scalars]")
    page.wait_for_function(
        f"document.querySelectorAll('.chart[data-metric=loss] .scatterlayer .trace').length === {CURVES}",
        timeout=60_000,
    )
    took = time.perf_counter() - start
    spikes = page.evaluate("document.querySelector('.chart[data-metric=loss] .plot').data.map(t => Math.max(...t.y))")
    assert all(spike == 100.0 for spike in spikes), spikes  # every run's one-step spike survives the reduction
    page.close()
    return took


def memory_while_growing(browser: object, root: Path, template: Path) -> list[tuple[int, float]]:
    """The server's RSS while 2,000 runs are added to a 10,000-run folder, 200 at a time, the page polling."""
    viewer = Viewer(root)
    page = browser.new_page()  # type: ignore[attr-defined]
    page.goto(viewer.url)
    count = 10_000
    page.wait_for_function(f"document.querySelectorAll('tr.run').length === {count}", timeout=60_000)
    seen = [(count, viewer.rss_mb())]
    for batch in range(10):
        for index in range(200):
            shutil.copytree(template, root / "grown" / f"b{batch}" / f"exp.{index}")
        count += 200
        page.wait_for_function(f"document.querySelectorAll('tr.run').length === {count}", timeout=60_000)
        seen.append((count, viewer.rss_mb()))
    page.close()
    viewer.close()
    return seen


def memory_while_a_curve_grows(browser: object, root: Path) -> list[tuple[int, float]]:
    """The server's RSS while a running run logs 500,000 steps, 50,000 at a time, its chart open and polling."""
    from expyrun.run.record import host_name
    from expyrun.track import metrics

    run_dir = root / "growing" / "exp.0"
    run_dir.mkdir(parents=True)
    record = {"schema_version": 2, "name": "growing", "run_dir": str(run_dir), "config": {}, "status": "running",
              "host": host_name(), "pid": os.getpid(), "started_at": "2026-01-01T00:00:00+00:00"}  # fmt: skip
    (run_dir / "run.json").write_text(json.dumps(record))
    writer = metrics.Writer(str(run_dir), time.time())
    writer.log(0, {"loss": 1.0})
    viewer = Viewer(root / "growing")
    page = browser.new_page()  # type: ignore[attr-defined]
    page.goto(viewer.url)
    page.wait_for_function("document.querySelectorAll('tr.run').length === 1", timeout=60_000)
    page.check("tr.run input.select")
    page.click("a[data-tab=scalars]")
    seen = []
    for batch in range(10):
        for step in range(batch * 50_000 + 1, (batch + 1) * 50_000 + 1):
            writer.log(step, {"loss": 1.0 / step})
        last = (batch + 1) * 50_000
        page.wait_for_function(
            f"(p => p && p.data[0].x[p.data[0].x.length - 1] === {last})"
            "(document.querySelector('.chart[data-metric=loss] .plot'))",
            timeout=60_000,
        )
        seen.append((last, viewer.rss_mb()))
    page.close()
    viewer.close()
    return seen


def library_costs(extra: str | None) -> dict[str, tuple[float, float]]:
    """Per web library: import time (ms) and the memory the import adds (MB), medians of 5 fresh interpreters."""
    candidates = {
        "stdlib wsgiref (chosen)": "import wsgiref.simple_server, socketserver",
        "bottle": "import bottle",
        "starlette + uvicorn": "import starlette.applications, starlette.responses, uvicorn",
        "dash": "import dash",
    }
    env = {**os.environ, **({"PYTHONPATH": extra} if extra else {})}
    rss = "int([x for x in open('/proc/self/status') if x.startswith('VmRSS')][0].split()[1])"
    probe = f"import time; m = {rss}; t = time.perf_counter(); {{0}}; print(time.perf_counter() - t, {rss} - m)"
    out: dict[str, tuple[float, float]] = {}
    for name, statement in candidates.items():
        times, sizes = [], []
        for _ in range(5):
            command = [sys.executable, "-c", probe.format(statement)]
            done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                break
            seconds, added = done.stdout.split()
            times.append(float(seconds) * 1000)
            sizes.append(int(added) / 1024)
        if times:
            out[name] = (statistics.median(times), statistics.median(sizes))
    return out


def main() -> None:
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as temporary, sync_playwright() as playwright:
        base = Path(temporary)
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        many = base / "many"
        many.mkdir()
        bench_list.make_runs(many)
        viewer = Viewer(many / "runs")
        tables = [first_table(browser, viewer, bench_list.RUNS) for _ in range(REPEATS)]
        rss_table = viewer.rss_mb()
        viewer.close()
        print(f"first table of {bench_list.RUNS} runs: median {statistics.median(tables):.2f} s "
              f"(runs {', '.join(f'{t:.2f}' for t in tables)}); server RSS {rss_table:.0f} MB")  # fmt: skip
        for running in (False, True):
            folder = base / ("running" if running else "ended")
            make_curves(folder, running)
            viewer = Viewer(folder)
            draws = [draw(browser, viewer) for _ in range(REPEATS)]
            label = "running (metrics.jsonl)" if running else "ended (.metrics.columns)"
            print(f"draw {CURVES} runs x {STEPS} steps, {label}: median {statistics.median(draws):.2f} s "
                  f"(runs {', '.join(f'{t:.2f}' for t in draws)}); server RSS {viewer.rss_mb():.0f} MB")  # fmt: skip
            viewer.close()
        template = many / "runs" / "sweep0" / "exp.0"
        grown = memory_while_growing(browser, many / "runs", template)
        print("server RSS while the folder grows: " + ", ".join(f"{n} runs {mb:.0f} MB" for n, mb in grown))
        curve = memory_while_a_curve_grows(browser, base)
        print("server RSS while a running curve grows: " + ", ".join(f"{n} steps {mb:.0f} MB" for n, mb in curve))
        browser.close()
    for name, (ms, mb) in library_costs(os.environ.get("WEB_LIBRARIES")).items():
        print(f"import {name}: {ms:.0f} ms, +{mb:.0f} MB")


if __name__ == "__main__":
    main()
