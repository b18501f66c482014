"""What a run logs (SPEC 11.1) and reading runs back from Python (SPEC 11.2), through the real `expyrun`.

Runs are launched by the real `expyrun` in a subprocess; the reading API is called by scripts run
with the interpreter expyrun runs with, as a user's analysis script would be.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import clean_env, run_expyrun, start_expyrun, write

CONFIG = """\
__run__:
  __main__: pkg.main:main
  __name__: {name}
  __output_dir__: outputs
{extra}
lr: 0.1
"""


def config(project: Path, body: str, name: str = "demo", extra: str = "", file: str = "c.yml") -> Path:
    """A config whose entry point `pkg.main:main` is `body` (the body of `def main(name, config):`)."""
    indented = "\n".join("    " + line for line in body.strip("\n").splitlines())
    write(
        project / "pkg" / "main.py",
        f"import os, sys, threading, time\nimport expyrun\n\n\ndef main(name, config):\n{indented}\n",
    )
    return write(project / file, CONFIG.format(name=name, extra=extra))


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def record(run_dir: Path) -> dict:
    return json.loads((run_dir / "run.json").read_text())


def wait_for(predicate, timeout: float, what) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError(f"waited {timeout} s: {what()}")


def python(script: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """A user's script run by expyrun's interpreter (the reading API is used like this)."""
    return subprocess.run(
        [sys.executable, "-c", script], cwd=cwd, env=clean_env(), capture_output=True, text=True, timeout=120,
        check=False,
    )  # fmt: skip


# --- logging --------------------------------------------------------------------------------------------


def test_scalars_texts_and_steps_follow_the_rules_and_the_record_summarises_them(project):
    config(
        project,
        """
expyrun.log(loss=1.0, acc=0.5)
expyrun.log(loss=0.5)
expyrun.log_text("sample", "hello")
expyrun.log(10, loss=0.25)
expyrun.log(loss=float("nan"), big=float("inf"), small=float("-inf"))
expyrun.log_text("sample", "bye", step=3)
return 1
""",
    )
    result = run_expyrun(["c.yml"], project)
    assert result.returncode == 0, result.stderr
    run_dir = project / "outputs" / "demo" / "exp.0"
    metrics = lines(run_dir / "metrics.jsonl")
    assert [m["step"] for m in metrics] == [0, 1, 10, 11]
    assert metrics[0]["loss"] == 1.0 and metrics[0]["acc"] == 0.5
    assert list(metrics[0])[:2] == ["step", "time"] and isinstance(metrics[0]["time"], float)
    assert metrics[3] == {**metrics[3], "loss": "nan", "big": "inf", "small": "-inf"}
    texts = lines(run_dir / "texts.jsonl")
    assert [(t["step"], t["tag"], t["text"]) for t in texts] == [(1, "sample", "hello"), (3, "sample", "bye")]
    summary = record(run_dir)["metrics"]
    assert summary["loss"] == {"last": "nan", "min": 0.25, "max": 1.0, "step": 11, "count": 4}
    assert summary["acc"] == {"last": 0.5, "min": 0.5, "max": 0.5, "step": 0, "count": 1}
    assert summary["big"]["max"] == "inf"


def test_a_metric_s_time_counts_from_the_run_s_recorded_start_not_from_the_first_log_call(project):
    """`time` is seconds since `run.json`'s `started_at` (read by logging without the record's owner):
    a run that works 0.4 s before its first `log` has a first `time` of at least 0.4."""
    config(project, "time.sleep(0.4)\nexpyrun.log(loss=1.0)\n")

    result = run_expyrun(["c.yml"], project)

    assert result.returncode == 0, result.stderr
    run_dir = project / "outputs" / "demo" / "exp.0"
    first = lines(run_dir / "metrics.jsonl")[0]
    assert 0.4 <= first["time"] <= record(run_dir)["duration_s"], (first, record(run_dir))


def test_numpy_scalars_and_zero_d_arrays_are_numbers_and_bool_or_text_is_a_type_error_naming_the_key(project):
    config(
        project,
        """
import numpy as np
expyrun.log(a=np.float32(0.5), b=np.array(3), c=np.int64(7))
for bad in (dict(flag=True), dict(name="x"), dict(vec=np.array([1.0, 2.0])), dict(flag2=np.bool_(True))):
    try:
        expyrun.log(**bad)
    except TypeError as error:
        print("refused:", error)
for name in ("time",):
    try:
        expyrun.log(**{name: 1})
    except TypeError as error:
        print("refused:", error)
""",
    )
    result = run_expyrun(["c.yml"], project)
    assert result.returncode == 0, result.stderr
    run_dir = project / "outputs" / "demo" / "exp.0"
    assert lines(run_dir / "metrics.jsonl") == [{**lines(run_dir / "metrics.jsonl")[0], "a": 0.5, "b": 3, "c": 7}]
    log = (run_dir / "outputs.log").read_text()
    for key in ("`flag`", "`name`", "`vec`", "`flag2`", "`time`"):
        assert f"refused: expyrun.log: {key}" in log, log


def test_a_sigkill_right_after_a_log_call_loses_nothing(project):
    config(
        project,
        """
for step in range(500):
    expyrun.log(step, loss=step / 2)
expyrun.log_text("done", "all logged")
print("logged", flush=True)
os.kill(os.getpid(), 9)
""",
    )
    result = run_expyrun(["c.yml"], project)
    assert result.returncode == 1, result.stderr
    run_dir = project / "outputs" / "demo" / "exp.0"
    metrics = lines(run_dir / "metrics.jsonl")
    assert [m["step"] for m in metrics] == list(range(500))
    assert lines(run_dir / "texts.jsonl")[0]["text"] == "all logged"
    rec = record(run_dir)
    assert rec["status"] == "failed"
    assert rec["metrics"]["loss"] == {"last": 249.5, "min": 0.0, "max": 249.5, "step": 499, "count": 500}


def test_eight_threads_logging_at_once_give_whole_lines_and_distinct_steps(project):
    config(
        project,
        """
def work(k):
    for i in range(2000):
        expyrun.log(**{f"t{k}": i, "long_name_to_make_lines_longer_than_a_few_bytes": i * 1.5})
threads = [threading.Thread(target=work, args=(k,)) for k in range(8)]
for t in threads:
    t.start()
for t in threads:
    t.join()
""",
    )
    result = run_expyrun(["c.yml"], project)
    assert result.returncode == 0, result.stderr
    metrics = lines(project / "outputs" / "demo" / "exp.0" / "metrics.jsonl")  # each line parses: whole lines
    assert len(metrics) == 16000
    assert sorted(m["step"] for m in metrics) == list(range(16000))
    assert [m["step"] for m in metrics] == list(range(16000))  # in the file in the order of their steps


def test_outside_a_run_the_calls_do_nothing_but_a_wrong_value_is_still_refused(tmp_path):
    script = """
import expyrun
assert expyrun.log(loss=1.0) is None
expyrun.log_text("t", "x")
assert expyrun.log_figure("f", object()) is None
try:
    expyrun.log(loss="high")
except TypeError as error:
    print("refused:", error)
"""
    result = python(script, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "refused: expyrun.log: `loss`" in result.stdout
    assert list(tmp_path.iterdir()) == []


def test_a_plotly_figure_is_stored_as_json_under_its_tag_and_step(project):
    config(
        project,
        """
import plotly.graph_objects as go
expyrun.log(4, loss=1.0)
expyrun.log_figure("curves/loss", go.Figure(go.Scatter(x=[1, 2], y=[3, 4])))
expyrun.log_figure("curves/loss", go.Figure(), step=9)
""",
    )
    result = run_expyrun(["c.yml"], project)
    assert result.returncode == 0, result.stderr
    folder = project / "outputs" / "demo" / "exp.0" / "figures" / "curves" / "loss"
    assert sorted(p.name for p in folder.iterdir()) == ["4.json", "9.json"]
    assert json.loads((folder / "4.json").read_text())["data"][0]["y"] == [3, 4]
    script = f"""
import expyrun
run = expyrun.runs({str(project / "outputs")!r})[0]
print([(step, path.name) for step, path in run.figures("curves/loss")], sorted(run.figures()))
"""
    read = python(script, project)
    assert read.returncode == 0, read.stderr
    assert read.stdout.strip() == "[(4, '4.json'), (9, '9.json')] ['curves/loss']"


def test_a_shell_command_appending_to_expyrun_metrics_gets_curves_and_a_summary(tmp_path):
    write(
        tmp_path / "scripts" / "train.sh",
        """\
        #!/bin/bash
        for i in 1 2 3; do echo "{\\"loss\\": $i.5}" >> "$EXPYRUN_METRICS"; done
        echo '{"step": 10, "loss": 0.5, "time": 1.0}' >> "$EXPYRUN_METRICS"
        echo '{"loss": 0.25}' >> "$EXPYRUN_METRICS"
        """,
    )
    write(
        tmp_path / "c.yml",
        """\
        __run__:
          __command__: [bash, "{__run__.__code__}/train.sh"]
          __code__: scripts
          __name__: cmd
          __output_dir__: outputs
        """,
    )
    result = run_expyrun(["c.yml"], tmp_path)
    assert result.returncode == 0, result.stderr
    run_dir = tmp_path / "outputs" / "cmd" / "exp.0"
    assert record(run_dir)["metrics"]["loss"] == {"last": 0.25, "min": 0.25, "max": 3.5, "step": 11, "count": 5}
    appended = lines(run_dir / "metrics.jsonl")  # expyrun adds the time a line was seen to lines without one
    assert [list(line)[:2] for line in appended] == [["time", "loss"]] * 3 + [["step", "loss"], ["time", "loss"]]
    assert all(isinstance(line["time"], float) and line["time"] >= 0 for line in appended)
    assert appended[3]["time"] == 1.0
    script = f"""
import expyrun
print(expyrun.runs({str(tmp_path / "outputs")!r})[0].metrics("loss"))
"""
    read = python(script, tmp_path)
    assert read.returncode == 0, read.stderr
    assert read.stdout.strip() == "[(0, 1.5), (1, 2.5), (2, 3.5), (10, 0.5), (11, 0.25)]"


def test_a_python_loop_that_only_prints_gets_curves_from_metrics_patterns(project):
    config(
        project,
        r"""
for epoch in range(3):
    print(f"epoch {epoch}: loss={1 / (epoch + 1):.3f} acc={epoch / 10}", flush=True)
print("epoch 3: loss=oops acc=0.9")
sys.stderr.write("val_loss 0.75\n")
""",
        extra="  __metrics__: ['epoch (?P<step>\\d+): loss=(?P<loss>\\S+) acc=(?P<acc>\\S+)',"
        " 'val_loss (?P<val>\\S+)']",
    )
    result = run_expyrun(["c.yml"], project)
    assert result.returncode == 0, result.stderr
    run_dir = project / "outputs" / "demo" / "exp.0"
    metrics = lines(run_dir / "metrics.jsonl")
    assert [(m["step"], m.get("loss"), m.get("acc")) for m in metrics[:3]] == [(0, 1.0, 0.0), (1, 0.5, 0.1),
                                                                              (2, 0.333, 0.2)]  # fmt: skip
    assert metrics[3]["val"] == 0.75 and metrics[3]["step"] == 3
    rec = record(run_dir)
    assert rec["metrics_skipped"] == 1
    assert rec["metrics"]["loss"]["count"] == 3


def test_a_metrics_pattern_that_is_not_a_regular_expression_is_one_line_and_creates_nothing(project):
    config(project, "return 1", extra="  __metrics__: ['loss=(?P<loss>']")
    result = run_expyrun(["c.yml"], project)
    assert result.returncode == 2
    assert "`__run__.__metrics__`" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (project / "outputs").exists()


@pytest.mark.parametrize("ending", ["raise", "interrupt"])
def test_failed_and_interrupted_runs_get_their_metrics_summary(project, ending):
    body = {
        "raise": "expyrun.log(loss=2.0)\nexpyrun.log(loss=1.0)\nraise ValueError('boom')",
        "interrupt": "expyrun.log(loss=2.0)\nexpyrun.log(loss=1.0)\nprint('ready', flush=True)\ntime.sleep(60)",
    }[ending]
    config(project, body)
    if ending == "raise":
        result = run_expyrun(["c.yml"], project)
        assert result.returncode == 1
    else:
        process = start_expyrun(["c.yml"], project)
        log = project / "outputs" / "demo" / "exp.0" / "outputs.log"
        wait_for(lambda: log.is_file() and "ready" in log.read_text(), 30, lambda: f"no 'ready' in {log}")
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=30)
    rec = record(project / "outputs" / "demo" / "exp.0")
    assert rec["status"] == {"raise": "failed", "interrupt": "interrupted"}[ending]
    assert rec["metrics"] == {"loss": {"last": 1.0, "min": 1.0, "max": 2.0, "step": 1, "count": 2}}


def test_a_run_that_logs_nothing_has_no_metrics_files_nor_summary(project):
    config(project, "return 1")
    result = run_expyrun(["c.yml"], project)
    assert result.returncode == 0, result.stderr
    run_dir = project / "outputs" / "demo" / "exp.0"
    assert not (run_dir / "metrics.jsonl").exists() and "metrics" not in record(run_dir)


OPTUNA = """\
__optuna__:
  direction: minimize
  n_trials: 2
  sampler: {{name: RandomSampler, seed: 1}}
  search_space:
    lr: {{type: float, low: 0.001, high: 0.1}}
  {extra}
"""


@pytest.mark.parametrize("isolation", ["process", "inline", "inline\n  n_jobs: 2"])
def test_a_trial_logs_into_its_own_folder_with_its_reported_values(project, isolation):
    config(
        project,
        """
trial = expyrun.trial()
for step in range(3):
    expyrun.log(step, loss=config["lr"] * step)
    trial.report(config["lr"] / (step + 1), step)
return config["lr"]
""",
    )
    with (project / "c.yml").open("a") as file:
        file.write(OPTUNA.format(extra=f"isolation: {isolation}"))
    result = run_expyrun(["c.yml"], project, timeout=180)
    assert result.returncode == 0, result.stderr
    trials = sorted((project / "outputs" / "demo" / "exp.0" / "trials").iterdir())
    assert len(trials) == 2
    for trial_dir in trials:
        rec = record(trial_dir)
        lr = rec["config"]["lr"]
        metrics = lines(trial_dir / "metrics.jsonl")
        losses = [(m["step"], m["loss"]) for m in metrics if "loss" in m]
        reported = [(m["step"], m["objective"]) for m in metrics if "objective" in m]
        assert losses == [(s, lr * s) for s in range(3)]
        assert reported == [(s, lr / (s + 1)) for s in range(3)]
        assert rec["metrics"]["objective"]["count"] == 3


def test_a_batch_names_each_trial_by_index(project):
    write(
        project / "pkg" / "main.py",
        """\
import expyrun


def main(name, configs):
    for index, config in enumerate(configs):
        expyrun.log(0, index=index, lr=config["lr"])
    expyrun.log(0, batch_size=len(configs))
    return [config["lr"] for config in configs]
""",
    )
    write(project / "c.yml", CONFIG.format(name="demo", extra="") + OPTUNA.format(extra="batch_size: 2"))
    result = run_expyrun(["c.yml"], project, timeout=180)
    assert result.returncode == 0, result.stderr
    study = project / "outputs" / "demo" / "exp.0"
    for trial_dir in (study / "trials").iterdir():
        assert [m["lr"] for m in lines(trial_dir / "metrics.jsonl")] == [record(trial_dir)["config"]["lr"]]
    batch_logs = [lines(p) for p in study.glob("batches/batch.*/metrics.jsonl")]
    assert [[m["batch_size"] for m in b] for b in batch_logs] == [[2]]


# --- reading --------------------------------------------------------------------------------------------

SWEEP = """\
__run__:
  __main__: pkg.main:main
  __name__: "grid/lr{lr}-b{batch}"
  __output_dir__: outputs
lr: 0.1
batch: 32
model: {name: cnn}
__sweep__:
  name: grid
  grid:
    lr: [0.1, 0.01]
    batch: [32, 64, 128]
"""

SWEEP_MAIN = """\
import expyrun


def main(name, config):
    for step in range(4):
        expyrun.log(step, loss=config["lr"] * (4 - step) + config["batch"] / 1000)
    expyrun.log_text("sample", f"{name} says hi")
    return config["lr"] * 10 + config["batch"]
"""


@pytest.fixture(scope="module")
def swept(tmp_path_factory) -> Path:
    """A sweep of 2 x 3 runs that log a loss, and a folder whose run.json is not a run record."""
    folder = tmp_path_factory.mktemp("swept")
    write(folder / "pkg" / "__init__.py", "")
    write(folder / "pkg" / "main.py", SWEEP_MAIN)
    write(folder / "s.yml", SWEEP)
    env = clean_env()
    result = subprocess.run([sys.executable, "-m", "expyrun", "s.yml"], cwd=folder, env=env, capture_output=True,
                            text=True, timeout=300, check=False)  # fmt: skip
    assert result.returncode == 0, result.stderr
    write(folder / "outputs" / "broken" / "exp.0" / "run.json", '["not a record"]')
    return folder


def read(folder: Path, script: str) -> dict:
    """Run a reading script that prints one JSON document; its parsed output."""
    result = python("import json, warnings, expyrun\n" + script, folder)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_runs_are_found_like_list_finds_them_and_an_unreadable_folder_is_skipped_with_a_warning(swept):
    found = read(
        swept,
        """
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    runs = expyrun.runs("outputs")
run = runs["grid/lr0.1-b64"][0]
print(json.dumps({
    "count": len(runs), "warnings": [str(w.message) for w in caught],
    "names": sorted(r.name for r in runs),
    "fields": [run.name, run.status, run.result, run.config["batch"], run.tags, run.note,
               run.started.tzinfo is not None, run.duration >= 0, run.dir.name],
    "loss": run.metrics("loss"), "all": sorted(run.metrics()), "texts": run.texts("sample"),
    "by_config": sorted(r.name for r in runs[{"lr": 0.01, "model.name": "cnn"}]),
    "glob": len(runs["grid/lr0.1-*"]), "none": len(runs[{"model.name": "rnn"}]),
    "slice": len(runs[1:3]), "best": runs.best("loss").name, "best_max": runs.best("result", mode="max").name,
}))
""",
    )
    assert found["count"] == 6
    assert len(found["warnings"]) == 1 and "broken/exp.0/run.json" in found["warnings"][0]
    assert found["names"] == sorted(f"grid/lr{lr}-b{b}" for lr in (0.1, 0.01) for b in (32, 64, 128))
    assert found["fields"] == ["grid/lr0.1-b64", "completed", 65.0, 64, [], "", True, True, "exp.0"]
    assert found["loss"] == [[s, pytest.approx(0.1 * (4 - s) + 0.064)] for s in range(4)]
    assert found["all"] == ["loss"] and found["texts"] == [[3, "grid/lr0.1-b64 says hi"]]
    assert found["by_config"] == ["grid/lr0.01-b128", "grid/lr0.01-b32", "grid/lr0.01-b64"]
    assert (found["glob"], found["none"], found["slice"]) == (3, 0, 2)
    assert found["best"] == "grid/lr0.01-b32" and found["best_max"] == "grid/lr0.1-b128"


def test_runs_to_pandas_and_metrics_frame(swept):
    found = read(
        swept,
        """
warnings.simplefilter("ignore")
runs = expyrun.runs("outputs")
frame = runs.to_pandas()
long = runs["grid/lr0.1-*"].metrics_frame("loss")
print(json.dumps({
    "columns": sorted(frame.columns), "rows": len(frame), "started": str(frame["started"].dtype),
    "last": sorted(frame["metric.loss"].round(3)),
    "long": [list(long.columns), len(long), sorted(set(long["step"])), long["value"].min().round(3)],
    "missing": len(runs.metrics_frame("nothing")),
}))
""",
    )
    assert found["columns"] == sorted(["name", "dir", "status", "started", "duration", "result", "tags", "lr", "batch",
                                       "model.name", "metric.loss", "metric.loss.min", "metric.loss.max"])  # fmt: skip
    assert found["rows"] == 6 and found["started"].startswith("datetime64")
    assert found["last"] == sorted(round(lr + b / 1000, 3) for lr in (0.1, 0.01) for b in (32, 64, 128))
    assert found["long"] == [["dir", "step", "value"], 12, [0, 1, 2, 3], 0.132]
    assert found["missing"] == 0


def test_where_uses_the_query_language_of_list(swept):
    found = read(
        swept,
        """
warnings.simplefilter("ignore")
runs = expyrun.runs("outputs")
picked = runs.where("lr < 0.05", "batch >= 64", status="completed")
try:
    runs.where("lrr < 1")
except expyrun.UsageError as error:
    message = str(error)
print(json.dumps({"picked": sorted(r.name for r in picked), "error": message,
                  "metric": len(runs.where("metric.loss < 0.1"))}))
""",
    )
    assert found["picked"] == ["grid/lr0.01-b128", "grid/lr0.01-b64"]
    assert "lrr" in found["error"] and "lr" in found["error"]
    assert found["metric"] == 2  # last losses 0.042 and 0.074


def test_a_sweep_is_shaped_like_its_grid_and_indexed_by_position(swept):
    found = read(
        swept,
        """
sweep = expyrun.sweep("outputs/grid/sweep.0")
print(json.dumps({
    "shape": sweep.shape, "axes": sweep.axes, "results": sweep.results,
    "one": sweep[1, 2].name, "column": sweep[:, 0].results, "row": sweep[0].shape, "last": sweep[-1, -1].result,
}))
""",
    )
    assert found["shape"] == [2, 3] and found["axes"] == ["lr", "batch"]
    assert found["results"] == [[33.0, 65.0, 129.0], [32.1, 64.1, 128.1]]
    assert found["one"] == "grid/lr0.01-b128" and found["column"] == [33.0, 32.1]
    assert found["row"] == [3] and found["last"] == 128.1


def test_expyrun_sweep_reads_a_sweep_every_time_even_once_the_sweep_package_is_imported(swept):
    """`expyrun.sweep` is also the name of the package `expyrun/sweep/`: importing it (as `sweep()`
    itself does, or a sweep launch in the process) must not put the package in the function's place."""
    found = read(
        swept,
        """
first = expyrun.sweep("outputs/grid/sweep.0").shape
second = expyrun.sweep("outputs/grid/sweep.0").shape
import expyrun.sweep.record
from expyrun import sweep
print(json.dumps([first, second, sweep("outputs/grid/sweep.0").shape, expyrun.sweep("outputs/grid/sweep.0").shape]))
""",
    )
    assert found == [[2, 3]] * 4


def test_reading_a_folder_that_is_not_a_sweep_says_so(swept):
    result = python("import expyrun\nexpyrun.sweep('outputs/grid')", swept)
    assert result.returncode == 1 and "is not a sweep folder" in result.stderr


def test_an_ended_runs_columns_are_read_only_while_its_metrics_file_is_unchanged(swept):
    run_dir = swept / "outputs" / "grid" / "lr0.1-b32" / "exp.0"
    assert (run_dir / ".metrics.columns").is_file()
    script = f"""
frame = expyrun.runs({str(run_dir)!r}).metrics_frame("loss")
print(json.dumps([[int(s), float(v)] for s, v in zip(frame["step"], frame["value"])]))
"""
    before = read(swept, script)
    assert before == [[s, pytest.approx(0.1 * (4 - s) + 0.032)] for s in range(4)]
    copy = swept / "copied" / "exp.0"
    copy.mkdir(parents=True)
    for name in ("run.json", "metrics.jsonl", ".metrics.columns"):
        (copy / name).write_bytes((run_dir / name).read_bytes())
    with (copy / "metrics.jsonl").open("a") as metrics:
        metrics.write('{"step": 9, "time": 1.0, "loss": 7.5}\n')  # appended after the run ended
    after = read(swept, script.replace(str(run_dir), str(copy)))
    assert after[-1] == [9, 7.5] and len(after) == 5


def test_a_python_script_run_as_a_command_logs_with_expyrun_log(tmp_path):
    write(
        tmp_path / "scripts" / "train.py",
        """\
        import expyrun

        for step in range(3):
            expyrun.log(loss=1.0 / (step + 1))
        expyrun.log_text("note", "from a command")
        """,
    )
    write(
        tmp_path / "c.yml",
        f"""\
        __run__:
          __command__: [{sys.executable}, "{{__run__.__code__}}/train.py"]
          __code__: scripts
          __name__: script
          __output_dir__: outputs
        """,
    )
    result = run_expyrun(["c.yml"], tmp_path)
    assert result.returncode == 0, result.stderr
    run_dir = tmp_path / "outputs" / "script" / "exp.0"
    assert [(m["step"], m["loss"]) for m in lines(run_dir / "metrics.jsonl")] == [(0, 1.0), (1, 0.5), (2, 1 / 3)]
    assert lines(run_dir / "texts.jsonl")[0]["step"] == 2
    assert record(run_dir)["metrics"]["loss"]["count"] == 3


def test_a_trials_printed_lines_are_matched_by_metrics_patterns_when_it_ends(project):
    config(
        project,
        """
for step in range(3):
    print(f"step {step} loss {config['lr'] * step}", flush=True)
return config["lr"]
""",
        extra="  __metrics__: ['step (?P<step>\\d+) loss (?P<loss>\\S+)']",
    )
    with (project / "c.yml").open("a") as file:
        file.write(OPTUNA.format(extra="isolation: process"))
    result = run_expyrun(["c.yml"], project, timeout=180)
    assert result.returncode == 0, result.stderr
    for trial_dir in (project / "outputs" / "demo" / "exp.0" / "trials").iterdir():
        lr = record(trial_dir)["config"]["lr"]
        assert lines(trial_dir / "metrics.jsonl") == [{"step": s, "loss": lr * s} for s in range(3)]
        assert record(trial_dir)["metrics"]["loss"]["count"] == 3


def test_a_sweep_with_variants_a_grid_and_a_zip_has_their_shape(project):
    write(project / "pkg" / "main.py", "def main(name, config):\n    return [config['w'], config['lr'], config['a']]\n")
    write(
        project / "s.yml",
        """\
        __run__:
          __main__: pkg.main:main
          __name__: "v/{w}-{lr}-{a}"
          __output_dir__: outputs
        w: 1
        lr: 0.1
        a: x
        b: 0
        __sweep__:
          name: shaped
          variants:
            small: {w: 1}
            large: {w: 2}
          grid:
            lr: [0.1, 0.2]
          zip:
            a: [x, y, z]
            b: [1, 2, 3]
        """,
    )
    result = run_expyrun(["s.yml"], project, timeout=300)
    assert result.returncode == 0, result.stderr
    found = read(
        project,
        """
sweep = expyrun.sweep("outputs/shaped/sweep.0")
print(json.dumps({"shape": sweep.shape, "axes": sweep.axes, "one": sweep[1, 0, 2].result,
                  "sub": sweep[:, 1, 0].results, "inner": sweep[0, 0].results}))
""",
    )
    assert found["shape"] == [2, 2, 3] and found["axes"] == ["variant", "lr", "zip"]
    assert found["one"] == [2, 0.1, "z"] and found["sub"] == [[1, 0.2, "x"], [2, 0.2, "x"]]
    assert found["inner"] == [[1, 0.1, "x"], [1, 0.1, "y"], [1, 0.1, "z"]]
