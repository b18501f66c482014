"""Queries, tags and notes, studies and comparisons (SPEC 12): the real `expyrun` on real run folders."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys

import pytest
from conftest import RUN_SECTION, clean_env, write


@pytest.fixture
def grid(project, expyrun):
    """Six real runs (lr x seed), results `lr * 10 + seed`, each logging `loss` with `expyrun.log`
    (1, then half its last value, then `1 / (1 + result)`), and one failed run that logs nothing."""
    write(
        project / "pkg" / "main.py",
        """
        import expyrun

        def main(name, config):
            if config["fail"]:
                raise RuntimeError("boom")
            result = config["lr"] * 10 + config["seed"]
            last = 1 / (1 + result)
            for loss in (1.0, last / 2, last):
                expyrun.log(loss=loss)
            return result
        """,
    )
    write(project / "c.yml", RUN_SECTION + "lr: 0.1\nseed: 0\nfail: false\nmodel: {name: cnn, depth: 3}\n")
    for lr in ("0.1", "0.5"):
        for seed in ("0", "1", "2"):
            result = expyrun("c.yml", "--lr", lr, "--seed", seed)
            assert result.returncode == 0, result.stderr
    assert expyrun("c.yml", "--fail", "true").returncode == 1
    return project / "outputs"


def listing(expyrun, outputs, *args):
    result = expyrun("list", str(outputs), *args)
    assert result.returncode == 0, result.stderr
    return result


def rows_of(expyrun, outputs, *args):
    return [json.loads(line) for line in listing(expyrun, outputs, *args, "--format", "jsonl").stdout.splitlines()]


def test_where_keeps_the_runs_that_satisfy_every_condition(grid, expyrun):
    rows = rows_of(expyrun, grid, "--where", "lr > 0.2", "--where", "seed != 1")
    assert [(r["lr"], r["seed"]) for r in rows] == [(0.5, 0), (0.5, 2)]
    assert all({"run_dir", "name", "status"} <= set(r) for r in rows)


@pytest.mark.parametrize(
    ("condition", "count"),
    [
        ("lr == 0.1", 4),  # the failed run has lr 0.1 too
        ("lr <= 0.1", 4),
        ("lr >= 0.5", 3),
        ("seed < 1", 3),
        ("result > 5", 2),
        ("model.name ~ c*", 7),
        ("model.name == rnn", 0),
        ("name == demo", 7),
        ("status == failed", 1),
        ("status ~ comp*", 6),
        ("metric.loss < 0.2", 3),
        ("metric.loss.min < 0.1", 3),
        ("metric.loss.max == 1", 6),
        ("duration >= 0", 7),
        ("started > 2000-01-01", 7),
        ("fail == yes", 1),
    ],
)
def test_each_operator_and_kind_of_key_selects_as_an_override_would_read_the_value(grid, expyrun, condition, count):
    assert len(rows_of(expyrun, grid, "--where", condition)) == count, condition


def test_sort_descending_puts_runs_without_the_key_last_and_top_keeps_the_first(grid, expyrun):
    rows = rows_of(expyrun, grid, "--sort", "-result")
    assert [r["result"] for r in rows] == [7.0, 6.0, 5.0, 3.0, 2.0, 1.0, None]
    rows = rows_of(expyrun, grid, "--sort", "metric.loss", "--top", "2")
    assert [r["result"] for r in rows] == [7.0, 6.0]


def test_group_by_gives_count_mean_std_min_max_of_result_and_metrics(grid, expyrun):
    args = ("--group-by", "lr", "--metrics", "loss", "--status", "completed")
    result = listing(expyrun, grid, *args, "--format", "json")
    groups = json.loads(result.stdout)
    assert [g["lr"] for g in groups] == [0.1, 0.5]
    first = groups[0]
    assert first["count"] == 3
    assert first["result.mean"] == pytest.approx(2.0) and first["result.std"] == pytest.approx(1.0)
    assert (first["result.min"], first["result.max"]) == (1.0, 3.0)
    assert first["metric.loss.mean"] == pytest.approx((1 / 2 + 1 / 3 + 1 / 4) / 3)
    best_first = json.loads(listing(expyrun, grid, "--group-by", "lr", "--sort", "-result", "--format", "json").stdout)
    assert [g["lr"] for g in best_first] == [0.5, 0.1]


def test_group_by_table_shows_mean_plus_minus_std(grid, expyrun):
    lines = listing(expyrun, grid, "--group-by", "seed", "--status", "completed").stderr.splitlines()
    assert lines[0].split()[:4] == ["seed", "count", "result", "mean±std"]
    assert lines[1].split()[:5] == ["0", "2", "3", "±", "2.82843"]
    assert lines[-1] == f"3 groups of 6 runs (7 in {grid})"


def test_csv_and_json_hold_the_same_columns_as_asked(grid, expyrun):
    args = ("--columns", "lr,seed,model.name", "--metrics", "loss", "--where", "seed == 0", "--sort", "lr")
    table = list(csv.reader(io.StringIO(listing(expyrun, grid, *args, "--format", "csv").stdout)))
    assert table[0] == ["run_dir", "name", "status", "lr", "seed", "model.name", "metric.loss"]
    assert [row[3] for row in table[1:]] == ["0.1", "0.1", "0.5"]
    assert table[1][0] == str(grid / "demo" / "exp.0")
    rows = json.loads(listing(expyrun, grid, *args, "--format", "json").stdout)
    assert [list(r) for r in rows] == [table[0]] * 3
    people = listing(expyrun, grid, *args).stderr.splitlines()
    assert people[0].split() == ["run", "status", "lr", "seed", "model.name", "metric.loss"]
    assert people[-1] == f"3 of 7 runs in {grid}"


def test_default_csv_has_run_fields_and_the_config_keys_that_differ(grid, expyrun):
    header = next(csv.reader(io.StringIO(listing(expyrun, grid, "--format", "csv").stdout)))
    assert header[:8] == ["run_dir", "name", "status", "started", "duration", "commit", "result", "tags"]
    assert {"lr", "seed", "fail"} <= set(header[8:])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--where", "lr"], "not KEY OP VALUE"),
        (["--where", "lr <"], "not KEY OP VALUE"),
        (["--where", "lrr < 0.1"], "did you mean `lr`?"),
        (["--where", "model.nme == cnn"], "did you mean `model.name`?"),
        (["--where", "metric.los < 1"], "did you mean `metric.loss`?"),
        (["--where", "lr < abc"], "expected float"),
        (["--where", "status == complete"], "did you mean `completed`?"),
        (["--where", "tags < best"], "tags take ==, != or ~"),
        (["--sort", "-reslt"], "did you mean `result`?"),
        (["--group-by", "sed"], "did you mean `seed`?"),
        (["--columns", "lr,sede"], "did you mean `seed`?"),
        (["--metrics", "los"], "did you mean `loss`?"),
        (["--status", "complete"], "did you mean `completed`?"),
        (["--tag", "a b"], "not a tag"),
        (["--top", "0"], "not a positive whole number"),
        (["--top", "ten"], "not a positive whole number"),
        (["--format", "xml"], "invalid choice"),
        (["--json", "--format", "csv"], "give one"),
    ],
)
def test_every_bad_input_is_one_line_and_exit_2(grid, expyrun, args, message):
    result = expyrun("list", str(grid), *args)
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    assert len(result.stderr.splitlines()) == 1 and message in result.stderr, result.stderr


def test_tags_are_added_removed_listed_and_queried(grid, expyrun):
    first, second = grid / "demo" / "exp.0", grid / "demo" / "exp.1"
    assert expyrun("tag", str(first), str(second), "+best", "+baseline").returncode == 0
    assert expyrun("tag", str(second), "-baseline", "-never-there").returncode == 0
    assert json.loads((first / "annotations.json").read_text())["tags"] == ["best", "baseline"]
    assert [r["run_dir"] for r in rows_of(expyrun, grid, "--tag", "best")] == [str(first), str(second)]
    assert [r["tags"] for r in rows_of(expyrun, grid, "--where", "tags ~ base*")] == [["best", "baseline"]]
    assert len(rows_of(expyrun, grid, "--where", "tags != best")) == 5
    table = listing(expyrun, grid).stderr.splitlines()
    assert "tags" in table[0].split()
    assert "best baseline" in next(line for line in table if line.startswith("demo/exp.0"))


def test_a_note_is_set_appended_and_appended_to(grid, expyrun):
    run = grid / "demo" / "exp.2"
    assert expyrun("note", str(run), "lr too high?").returncode == 0
    assert expyrun("note", str(run), "no: seed", "--append").returncode == 0
    assert json.loads((run / "annotations.json").read_text())["note"] == "lr too high?\nno: seed"
    assert expyrun("note", str(run), "replaced").returncode == 0
    assert json.loads((run / "annotations.json").read_text())["note"] == "replaced"


@pytest.mark.parametrize(
    "args", [["tag", "{outputs}", "+best"], ["note", "{outputs}", "text"], ["tag", "{outputs}/nowhere", "+a"]]
)
def test_tag_or_note_on_a_folder_that_is_not_a_run_is_one_line_and_changes_nothing(grid, expyrun, args):
    before = sorted(p.name for p in grid.rglob("*"))
    result = expyrun(*[arg.format(outputs=grid) for arg in args])
    assert result.returncode == 2 and len(result.stderr.splitlines()) == 1, result.stderr
    assert "not a run folder" in result.stderr
    assert sorted(p.name for p in grid.rglob("*")) == before


def test_tag_with_one_bad_run_among_good_ones_tags_none(grid, expyrun):
    result = expyrun("tag", str(grid / "demo" / "exp.0"), str(grid / "demo"), "+x")
    assert result.returncode == 2
    assert not (grid / "demo" / "exp.0" / "annotations.json").exists()


def test_twenty_concurrent_tag_processes_on_one_run_lose_no_tag(grid):
    run = grid / "demo" / "exp.0"
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "expyrun", "tag", str(run), f"+t{i}"],
            env=clean_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for i in range(20)
    ]
    failures = [p.communicate(timeout=60)[1] for p in processes if p.wait(timeout=60) != 0]
    assert not failures, failures
    tags = json.loads((run / "annotations.json").read_text())["tags"]
    assert sorted(tags) == sorted(f"t{i}" for i in range(20))
    assert not [p.name for p in run.iterdir() if p.name.endswith(".tmp")]


def test_tags_set_at_launch_are_inherited_by_sweep_points(project, expyrun):
    write(
        project / "s.yml",
        RUN_SECTION.replace("demo", "tagged") + "  __tags__: [nightly, cnn]\nlr: 0.1\n"
        "__sweep__:\n  grid:\n    lr: [0.1, 0.2]\n",
    )
    result = expyrun("s.yml")
    assert result.returncode == 0, result.stderr
    points = sorted((project / "outputs" / "tagged").rglob("annotations.json"))
    assert len(points) == 2, list((project / "outputs").rglob("*"))
    assert all(json.loads(p.read_text())["tags"] == ["nightly", "cnn"] for p in points)


def test_run_json_keeps_where_each_value_came_from(project, expyrun, monkeypatch):
    write(project / "c.yml", RUN_SECTION + "lr: 0.1\nseed: 0\nwhere: ${HOME_DIR:-/tmp}\n")
    result = expyrun("c.yml", "--seed", "3", env={"HOME_DIR": "/data"})
    assert result.returncode == 0, result.stderr
    record = json.loads((project / "outputs" / "demo" / "exp.0" / "run.json").read_text())
    provenance = record["provenance"]
    assert provenance["lr"] == "c.yml:5" and provenance["seed"] == "cli"
    assert provenance["where"].startswith("env $HOME_DIR")
    explained = expyrun("c.yml", "--seed", "3", "--explain", env={"HOME_DIR": "/data"}).stderr
    assert all(origin in explained for origin in provenance.values())


def test_diff_names_each_changed_keys_origin_on_both_sides(project, expyrun):
    write(project / "c.yml", RUN_SECTION + "lr: 0.1\nseed: 0\n")
    assert expyrun("c.yml", "--lr", "0.5").returncode == 0
    write(project / "c.yml", RUN_SECTION + "lr: 0.1\nseed: 7\n")
    assert expyrun("c.yml").returncode == 0
    outputs = project / "outputs" / "demo"
    lines = expyrun("diff", str(outputs / "exp.0"), str(outputs / "exp.1")).stderr.splitlines()
    assert "~ lr: 0.5 -> 0.1  (cli -> c.yml:5)" in lines
    assert "~ seed: 0 -> 7  (c.yml:6 -> c.yml:6)" in lines


def test_diff_code_prints_a_unified_diff_of_the_two_snapshots(project, expyrun):
    write(project / "c.yml", RUN_SECTION + "lr: 0.1\n")
    assert expyrun("c.yml").returncode == 0
    write(project / "pkg" / "main.py", "def main(name, config):\n    return 2\n")
    write(project / "pkg" / "extra.py", "X = 1\n")
    assert expyrun("c.yml").returncode == 0
    outputs = project / "outputs" / "demo"
    result = expyrun("diff", str(outputs / "exp.0"), str(outputs / "exp.1"), "--code")
    assert result.returncode == 0, result.stderr
    code = result.stderr.split("# code\n", 1)[1]
    assert "--- /dev/null\n+++ b/pkg/extra.py\n@@ -0,0 +1 @@\n+X = 1\n" in code
    assert "--- a/pkg/main.py\n+++ b/pkg/main.py\n" in code and "+    return 2\n" in code
    same = expyrun("diff", str(outputs / "exp.1"), str(outputs / "exp.1"), "--code").stderr
    assert same.endswith("# code\n(same)\n")
    assert "# code" not in expyrun("diff", str(outputs / "exp.0"), str(outputs / "exp.1")).stderr


def test_show_prints_tags_and_note(grid, expyrun):
    run = grid / "demo" / "exp.0"
    assert expyrun("tag", str(run), "+best", "+baseline").returncode == 0
    assert expyrun("note", str(run), "first line").returncode == 0
    assert expyrun("note", str(run), "second line", "--append").returncode == 0
    shown = expyrun("show", str(run)).stderr.splitlines()
    assert "tags         best baseline" in shown
    assert "note         first line" in shown and "             second line" in shown


STUDY_ENTRY = """
import expyrun


def main(name, config):
    return (config["x"] - 1) ** 2
"""


def test_a_study_ends_with_one_line_naming_its_best_trial_and_show_lists_trials_best_first(project, expyrun):
    write(project / "pkg" / "main.py", STUDY_ENTRY)
    write(
        project / "tune.yml",
        RUN_SECTION.replace("demo", "tune")
        + "x: 0.0\n__optuna__:\n  n_trials: 4\n  sampler: {name: TPESampler, seed: 1}\n"
        "  search_space:\n    x: {type: float, low: -4, high: 4}\n",
    )
    result = expyrun("tune.yml")  # stdout and stderr are pipes
    assert result.returncode == 0, result.stderr
    study_dir = project / "outputs" / "tune" / "exp.0"
    summary = json.loads((study_dir / "study.json").read_text())
    best = summary["best"]
    lines = [line for line in result.stdout.splitlines() if line.startswith("best trial")]
    assert len(lines) == 1, result.stdout
    assert lines[0].startswith(f"best trial {best['number']}: ")
    assert f"x={best['params']['x']:.6g}" in lines[0] and lines[0].endswith(best["run_dir"])
    shown = expyrun("show", str(study_dir)).stderr.splitlines()
    start = next(i for i, line in enumerate(shown) if line.startswith("# trials (4)"))
    assert shown[start + 1].split()[:5] == ["trial", "state", "values", "params", "run"]
    rows = [line.split() for line in shown[start + 2 : start + 6]]
    assert int(rows[0][0]) == best["number"]
    values = [json.loads((project / row[-1] / "run.json").read_text())["trial"]["values"][0] for row in rows]
    assert values == sorted(values) and all(row[1] == "COMPLETE" for row in rows)


def test_study_trials_inherit_launch_tags_and_record_trial_values_as_such(project, expyrun):
    write(project / "pkg" / "main.py", STUDY_ENTRY)
    write(
        project / "tune.yml",
        RUN_SECTION.replace("demo", "tune") + "  __tags__: [search]\nx: 0.0\n__optuna__:\n  n_trials: 2\n"
        "  search_space:\n    x: {type: float, low: -4, high: 4}\n",
    )
    result = expyrun("tune.yml")
    assert result.returncode == 0, result.stderr
    study_dir = project / "outputs" / "tune" / "exp.0"
    assert json.loads((study_dir / "annotations.json").read_text())["tags"] == ["search"]
    trials = sorted((study_dir / "trials").iterdir())
    assert len(trials) == 2
    for trial in trials:
        assert json.loads((trial / "annotations.json").read_text())["tags"] == ["search"]
        assert json.loads((trial / "run.json").read_text())["provenance"]["x"] == "trial"


def test_tag_where_annotations_cannot_be_written_is_one_line(grid, expyrun):
    run = grid / "demo" / "exp.0"
    (run / "annotations.json").mkdir()  # as a read-only folder would (root writes into those)
    result = expyrun("tag", str(run), "+best")
    assert result.returncode == 2 and len(result.stderr.splitlines()) == 1, result.stderr
    assert "cannot write annotations.json" in result.stderr and "internal error" not in result.stderr
