"""Objectives as users return them, named objectives and batches of trials, run by the real
`expyrun` on real storages (journal file, SQLite file, PostgreSQL server). Every wait has a
deadline and fails saying what it saw."""

from __future__ import annotations

import itertools
import json
import signal
import subprocess
import time
import uuid
from pathlib import Path

import optuna  # the test extra installs it: a missing one is a failure, not a skip
import pytest
import yaml
from conftest import RUN_SECTION, run_expyrun, run_in_terminal, start_expyrun, write
from conftest import trial_records as records

ENTRY = """
import json, os, time
import numpy as np
import expyrun


class Tensor:
    '''What a 0-d torch tensor is to expyrun: `.item()` gives a Python number.'''

    def __init__(self, value):
        self.value = value

    def item(self):
        return self.value

    def __repr__(self):
        return f"tensor({self.value})"


MAKERS = {
    "float": float,
    "np64": np.float64,
    "np32": np.float32,
    "npint": lambda x: np.int64(round(x * 100)),
    "zero_d": np.array,
    "tensor": Tensor,
    "nan": lambda x: float("nan"),
    "np_nan": lambda x: np.float64("nan"),
    "vector": lambda x: np.array([x, x]),
    "np_bool": lambda x: np.bool_(True),
    "none": lambda x: None,
    "text": lambda x: f"loss={x}",
    "mapping": lambda x: {"loss": x},
}


def _log(**fields):
    with open(os.path.join(os.environ["EXPYRUN_CWD"], "calls.txt"), "a") as f:
        f.write(json.dumps(fields) + "\\n")


def main(name, config):
    trial = expyrun.trial()
    assert expyrun.trials() == [trial]
    x = (config["x"] - 1) ** 2
    if config["named"]:
        value = {"loss": np.float64(x), "epochs": 3, "lr_used": config["x"], "note": "text is not a metric"}
        if config["named"] == "two":
            value["accuracy"] = Tensor(1 / (1 + x))
        return value
    kind = config["returns"].get(f"t{trial.number}", config["default"])
    return MAKERS[kind](x)


def batch(name, configs):
    assert expyrun.trial() is None  # several trials: which one would it be?
    trials = expyrun.trials()
    numbers = [t.number for t in trials]
    assert len(trials) == len(configs)
    start = time.time()
    print(f"batch of {len(configs)}: trials {numbers}", flush=True)
    first = configs[0]
    if first["raise_on"] in numbers:
        raise RuntimeError(f"the batch of trials {numbers} raised")
    time.sleep(first["sleep"])
    x = np.array([c["x"] for c in configs])  # every setting in one array operation
    losses = (x - 1) ** 2
    if first["nan_on"] in numbers:
        losses[numbers.index(first["nan_on"])] = np.nan
    _log(numbers=numbers, pid=os.getpid(), gpu=os.environ.get("CUDA_VISIBLE_DEVICES"), cwd=os.getcwd(),
         start=start, end=time.time())
    if first["short_on"] in numbers:
        return list(losses[:1])
    if first["named"]:
        return [{"loss": loss, "accuracy": 1 / (1 + loss), "epochs": 3} for loss in losses]
    return losses
"""


def study_config(optuna_extra: str, top: str = "", function: str = "main", storage: str = "") -> str:
    return (
        RUN_SECTION.replace("demo", "objectives").replace("pkg.main:main", f"pkg.main:{function}")
        + top
        + f"""\
x: 0.0
sleep: 0.0
named: false
returns: {{}}
default: np64
raise_on: -1
short_on: -1
nan_on: -1
__optuna__:
  sampler: {{name: RandomSampler, seed: 0}}
{storage}{optuna_extra}  search_space:
    x: {{type: float, low: -4, high: 4}}
"""
    )


class Storage:
    """One storage kind for a test: the `__optuna__` lines naming it, and the study in it."""

    def __init__(self, kind: str, project: Path, url: str | None) -> None:
        self.kind = kind
        self.project = project
        self.name = f"objectives_{uuid.uuid4().hex[:8]}"  # one PostgreSQL database serves every test
        self.url = {"journal": None, "sqlite": f"sqlite:///{project / 'study.db'}", "postgresql": url}[kind]

    def lines(self) -> str:
        storage = f"  storage: {self.url}\n" if self.url else ""
        return f"  study_name: {self.name}\n{storage}"

    def study(self) -> optuna.Study:
        if self.url is not None:
            return optuna.load_study(study_name=self.name, storage=self.url)
        from optuna.storages.journal import JournalFileBackend

        backend = JournalFileBackend(str(self.project / "outputs" / "objectives" / "study.journal"))
        return optuna.load_study(study_name=self.name, storage=optuna.storages.JournalStorage(backend))


@pytest.fixture(params=["journal", "sqlite", "postgresql"])
def storage(request: pytest.FixtureRequest, project: Path) -> Storage:
    url = request.getfixturevalue("postgres_url") if request.param == "postgresql" else None
    return Storage(request.param, project, url)


@pytest.fixture
def entry(project: Path) -> Path:
    write(project / "pkg" / "main.py", ENTRY)
    return project


def run(project: Path, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    result = run_expyrun(["tune.yml", *args], project, timeout=timeout)
    assert result.returncode in (0, 1), result.stderr
    return result


def calls(project: Path) -> list[dict]:
    path = project / "calls.txt"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


STUDY_DIR = Path("outputs") / "objectives" / "exp.0"


# -- named objectives ----------------------------------------------------------------------------


def test_named_objectives_end_to_end(entry, expyrun, storage):
    extra = "  n_trials: 6\n  objectives: {loss: minimize, accuracy: maximize}\n"
    write(entry / "tune.yml", study_config(extra, storage=storage.lines()).replace("named: false", "named: two"))
    result = run(entry)
    assert result.returncode == 0, result.stderr
    study_dir = entry / STUDY_DIR
    summary = json.loads((study_dir / "study.json").read_text())
    assert summary["objectives"] == {"loss": "minimize", "accuracy": "maximize"}
    assert summary["directions"] == ["minimize", "maximize"] and summary["counts"] == {"COMPLETE": 6}
    front = summary["pareto_front"]
    assert front and all(set(t["objectives"]) == {"loss", "accuracy"} for t in front)
    assert all(t["metrics"]["epochs"] == 3 and Path(t["run_dir"]).is_dir() for t in front)
    found = records(study_dir)
    assert sorted(found) == list(range(6))
    for number, record in found.items():
        trial = record["trial"]
        x = trial["params"]["x"]
        assert trial["objectives"] == {
            "loss": pytest.approx((x - 1) ** 2),
            "accuracy": pytest.approx(1 / (1 + (x - 1) ** 2)),
        }
        assert trial["values"] == [trial["objectives"]["loss"], trial["objectives"]["accuracy"]]
        assert trial["metrics"] == {"epochs": 3, "lr_used": pytest.approx(x)}  # "note" is text: not a metric
        assert record["result"] == {**trial["objectives"], **trial["metrics"]}, number
    study = storage.study()
    assert study.metric_names == ["loss", "accuracy"]
    for trial in study.trials:  # extra metrics and the trial's folder, as Optuna user attributes
        assert trial.user_attrs["epochs"] == 3 and trial.user_attrs["lr_used"] == trial.params["x"]
        assert trial.user_attrs["run_dir"] == str(study_dir / "trials" / f"trial.{trial.number}")
    assert (study_dir / "plots" / "pareto_front.html").stat().st_size > 1000
    assert (study_dir / "plots" / "optimization_history.loss.html").exists()
    assert (study_dir / "plots" / "optimization_history.accuracy.html").exists()
    assert "loss=" in (study_dir / "outputs.log").read_text()

    listing = expyrun("list", "outputs")
    assert listing.returncode == 0, listing.stderr
    rows = {line.split()[0]: line for line in listing.stderr.splitlines()[1:] if line.startswith("objectives")}
    loss = found[2]["trial"]["objectives"]["loss"]
    assert f"loss={loss:.6g} accuracy=" in rows["objectives/exp.0/trials/trial.2"]
    assert f"{len(front)} on the Pareto front" in rows["objectives/exp.0"]


def test_one_named_objective_takes_a_mapping_or_a_number_and_names_the_progress_bar(entry):
    extra = "  n_trials: 3\n  objectives: {loss: minimize}\n"
    write(entry / "tune.yml", study_config(extra).replace("named: false", "named: one"))
    code, shown = run_in_terminal(["tune.yml"], entry)
    assert code == 0, shown.decode(errors="replace")
    assert b"3/3" in shown and b"best loss " in shown
    summary = json.loads((entry / STUDY_DIR / "study.json").read_text())
    assert (
        summary["objectives"] == {"loss": "minimize"}
        and summary["best"]["objectives"]["loss"] == summary["best"]["value"]
    )
    assert summary["best"]["metrics"] == {"epochs": 3, "lr_used": summary["best"]["params"]["x"]}
    write(entry / "tune.yml", study_config("  n_trials: 3\n  objectives: {loss: minimize}\n", top="").replace(
        "__name__: objectives", "__name__: bare"))  # fmt: skip
    bare = run_expyrun(["tune.yml"], entry, timeout=120)  # returns np.float64: a bare number is `loss`
    assert bare.returncode == 0, bare.stderr
    assert {r["status"] for r in records(entry / "outputs" / "bare" / "exp.0").values()} == {"completed"}


def test_named_objectives_refuse_what_does_not_hold_them(entry):
    extra = "  n_trials: 4\n  objectives: {loss: minimize, accuracy: maximize}\n  max_consecutive_failures: 10\n"
    returns = "returns: {t0: mapping, t1: np64, t2: text, t3: none}"
    write(entry / "tune.yml", study_config(extra).replace("returns: {}", returns))
    result = run(entry)
    assert result.returncode == 1  # no trial completed
    found = records(entry / STUDY_DIR)
    messages = {n: r["exception"]["message"] for n, r in found.items()}
    assert messages[0].startswith("the entry point returned {'loss': ") and "(dict) without `accuracy`" in messages[0]
    assert "must be a mapping with `loss`, `accuracy`" in messages[1] and "(numpy.float64)" in messages[1]
    assert "'loss=" in messages[2] and "(str)" in messages[2]
    assert messages[3].startswith("the entry point returned None (NoneType)")


# -- numbers as users return them ----------------------------------------------------------------


def test_numbers_as_users_return_them(entry):
    kinds = ["float", "np64", "np32", "npint", "zero_d", "tensor", "nan", "np_nan", "vector", "np_bool", "none",
             "text", "mapping"]  # fmt: skip
    returns = "returns: {" + ", ".join(f"t{i}: {kind}" for i, kind in enumerate(kinds)) + "}"
    extra = f"  n_trials: {len(kinds)}\n  max_consecutive_failures: 20\n"
    write(entry / "tune.yml", study_config(extra).replace("returns: {}", returns))
    result = run(entry)
    assert result.returncode == 0, result.stderr
    found = records(entry / STUDY_DIR)
    by_kind = {kind: found[i] for i, kind in enumerate(kinds)}
    for kind in ("float", "np64", "np32", "npint", "zero_d", "tensor"):
        record = by_kind[kind]
        assert record["status"] == "completed", (kind, record["exception"])
        x = (record["trial"]["params"]["x"] - 1) ** 2
        expected = round(x * 100) if kind == "npint" else x
        assert record["trial"]["values"][0] == pytest.approx(expected, rel=1e-6), kind
        assert type(record["result"]) is float
    message = {kind: (r["exception"] or {}).get("message", "") for kind, r in by_kind.items()}
    assert "returned nan (float); the objective must be finite (not NaN or inf)" in message["nan"]
    assert "(numpy.float64); the objective must be finite" in message["np_nan"]
    assert "array([" in message["vector"] and "(numpy.ndarray); the objective must be a number" in message["vector"]
    assert "(numpy.bool); the objective must be a number" in message["np_bool"] or "numpy.bool_" in message["np_bool"]
    assert message["none"].startswith("the entry point returned None (NoneType); the objective must be a number")
    assert "'loss=" in message["text"] and "(str)" in message["text"]
    assert "name the objectives in `__optuna__`" in message["mapping"]
    for kind in ("nan", "np_nan", "vector", "np_bool", "none", "text", "mapping"):
        assert by_kind[kind]["status"] == "failed" and by_kind[kind]["exception"]["type"] == "ObjectiveError"
    number = kinds.index("vector")
    assert (
        "the objective must be a number"
        in (entry / STUDY_DIR / "trials" / f"trial.{number}" / "outputs.log").read_text()
    )


# -- bad definitions -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        (
            "  objectives: {loss: minimise}\n",
            "`__optuna__.objectives.loss`: expected minimize or maximize, got 'minimise'",
        ),
        ("  objectives: {loss: minimize}\n  direction: minimize\n", "give one of `objectives`, `direction` or"),
        ("  objectives: {loss: minimize}\n  directions: [minimize]\n", "not objectives and directions"),
        ("  objectives: {}\n", "`__optuna__.objectives`: expected a mapping of names"),
        ("  objectives: [loss, accuracy]\n", "`__optuna__.objectives`: expected a mapping of names"),
        ("  batch_size: 0\n", "`__optuna__.batch_size`: must be at least 1, got 0"),
        ("  batch_size: four\n", "`__optuna__.batch_size`: expected an integer, got 'four'"),
        ("  batch_size: 2.5\n", "`__optuna__.batch_size`: expected an integer"),
    ],
)
def test_bad_definitions_exit_2_with_nothing_created(entry, extra, fragment):
    write(entry / "tune.yml", study_config("  n_trials: 4\n" + extra))
    result = run_expyrun(["tune.yml"], entry)
    assert result.returncode == 2, result.stderr
    assert fragment in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (entry / "outputs").exists()
    dry = run_expyrun(["tune.yml", "--dry-run"], entry)
    assert dry.returncode == 2 and fragment in dry.stderr and dry.stdout == ""


# -- batches -------------------------------------------------------------------------------------


def check_batches(project: Path, study_dir: Path, sizes: list[int]) -> dict[int, dict]:
    """Every trial has its folder and a `batch` naming its batch; each batch has its log."""
    found = records(study_dir)
    batches: dict[int, list[int]] = {}
    for number, record in found.items():
        batch = record["batch"]
        batches.setdefault(batch["index"], batch["trials"])
        assert batches[batch["index"]] == batch["trials"] and number in batch["trials"]
        assert Path(batch["dir"]) == study_dir / "batches" / f"batch.{batch['index']}"
        config = yaml.safe_load((study_dir / "trials" / f"trial.{number}" / "config.yml").read_text())
        assert config["x"] == record["trial"]["params"]["x"] and "__optuna__" not in config
        assert f"trials {batch['trials']}" in (study_dir / "trials" / f"trial.{number}" / "outputs.log").read_text()
    assert sorted(len(numbers) for numbers in batches.values()) == sorted(sizes)
    assert sorted(itertools.chain(*batches.values())) == sorted(found)
    for index, numbers in batches.items():
        log = (study_dir / "batches" / f"batch.{index}" / "outputs.log").read_text()
        assert f"batch of {len(numbers)}: trials {numbers}" in log
    return found


@pytest.mark.parametrize("jobs", [1, 2])
def test_batches_of_four_make_exactly_n_trials(entry, storage, jobs):
    extra = f"  n_trials: 10\n  batch_size: 4\n  n_jobs: {jobs}\n"
    if storage.kind == "sqlite" and jobs > 1:  # SQLite's writers lock each other out: refused, batches or not
        write(entry / "tune.yml", study_config(extra, function="batch", storage=storage.lines()))
        refused = run_expyrun(["tune.yml"], entry)
        assert refused.returncode == 2 and "SQLite cannot be shared" in refused.stderr
        assert not (entry / "outputs").exists()
        return
    write(
        entry / "tune.yml",
        study_config(extra, function="batch", storage=storage.lines()).replace("sleep: 0.0", "sleep: 1.0"),
    )
    result = run(entry)
    assert result.returncode == 0, result.stderr
    study_dir = entry / STUDY_DIR
    found = check_batches(entry, study_dir, [4, 4, 2])
    assert sorted(found) == list(range(10)) and {r["status"] for r in found.values()} == {"completed"}
    for record in found.values():
        assert record["trial"]["values"][0] == pytest.approx((record["trial"]["params"]["x"] - 1) ** 2)
    made = calls(entry)
    assert sorted(len(c["numbers"]) for c in made) == [2, 4, 4]
    assert {Path(c["cwd"]).name for c in made} == {"batch.0", "batch.1", "batch.2"}
    for call in made:  # every trial of a batch ran in the process that made the call
        assert {found[n]["pid"] for n in call["numbers"]} == {call["pid"]}
    if jobs == 2:  # two batches at once, in two worker processes
        spans = sorted((c["start"], c["end"]) for c in made)
        assert any(a[1] > b[0] for a, b in itertools.pairwise(spans)), spans
        assert len({c["pid"] for c in made}) == 2
    study = storage.study()
    assert len(study.trials) == 10 and all(t.state.name == "COMPLETE" for t in study.trials)
    summary = json.loads((study_dir / "study.json").read_text())
    assert summary["batch_size"] == 4 and summary["counts"] == {"COMPLETE": 10}


def test_a_raising_batch_fails_its_trials_and_a_wrong_length_fails_them_saying_so(entry):
    extra = "  n_trials: 14\n  batch_size: 4\n"
    config = study_config(extra, function="batch")
    config = config.replace("raise_on: -1", "raise_on: 4").replace("short_on: -1", "short_on: 8")
    write(entry / "tune.yml", config.replace("nan_on: -1", "nan_on: 13"))
    result = run(entry)
    assert result.returncode == 0, result.stderr
    study_dir = entry / STUDY_DIR
    found = check_batches(entry, study_dir, [4, 4, 4, 2])
    status = {n: r["status"] for n, r in found.items()}
    assert status == {
        **dict.fromkeys(range(14), "completed"),
        **dict.fromkeys([4, 5, 6, 7, 8, 9, 10, 11, 13], "failed"),
    }
    for number in (4, 5, 6, 7):
        assert found[number]["exception"] == {
            "type": "RuntimeError",
            "message": "the batch of trials [4, 5, 6, 7] raised",
        }
    assert "Traceback" in (study_dir / "batches" / "batch.1" / "outputs.log").read_text()
    for number in (8, 9, 10, 11):
        assert (
            "returned 1 objective for a batch of 4 trials; it must return one per config"
            in (found[number]["exception"]["message"])
        )
    assert "must be finite" in found[13]["exception"]["message"] and found[12]["status"] == "completed"
    summary = json.loads((study_dir / "study.json").read_text())
    assert summary["counts"] == {"COMPLETE": 5, "FAIL": 9}


def test_batches_each_run_on_one_gpu(entry):
    top = "__launch__: {gpus: [0, 1], jobs: 2}\n"
    config = study_config("  n_trials: 12\n  batch_size: 3\n", top=top, function="batch")
    write(entry / "tune.yml", config.replace("sleep: 0.0", "sleep: 0.3"))
    result = run(entry)
    assert result.returncode == 0, result.stderr
    found = records(entry / STUDY_DIR)
    made = calls(entry)
    assert len(made) == 4 and {c["gpu"] for c in made} == {"0", "1"}
    for gpu in ("0", "1"):  # one batch at a time on a GPU
        spans = sorted((c["start"], c["end"]) for c in made if c["gpu"] == gpu)
        assert all(a[1] <= b[0] for a, b in itertools.pairwise(spans)), (gpu, spans)
    for call in made:
        assert {found[n]["gpu"] for n in call["numbers"]} == {call["gpu"]}


@pytest.mark.parametrize("jobs", [1, 2])
def test_inline_batches(entry, jobs):
    extra = f"  n_trials: 7\n  batch_size: 3\n  isolation: inline\n  n_jobs: {jobs}\n"
    objectives = "  objectives: {loss: minimize, accuracy: maximize}\n"
    write(entry / "tune.yml", study_config(extra + objectives, function="batch").replace("named: false", "named: two"))
    result = run(entry)
    assert result.returncode == 0, result.stderr
    found = check_batches(entry, entry / STUDY_DIR, [3, 3, 1])
    assert {r["status"] for r in found.values()} == {"completed"}
    assert all(r["trial"]["metrics"] == {"epochs": 3} for r in found.values())


def test_sigterm_fails_a_running_batch_and_a_rerun_retries_its_trials(entry):
    config = study_config("  n_trials: 5\n  batch_size: 3\n", function="batch").replace("sleep: 0.0", "sleep: 60")
    write(entry / "tune.yml", config)
    process = start_expyrun(["tune.yml"], entry)
    log = entry / STUDY_DIR / "batches" / "batch.0" / "outputs.log"
    deadline = time.monotonic() + 60
    while not (log.exists() and "batch of 3" in log.read_text()):
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"no batch started within 60 s; stderr: {process.communicate()[1][-2000:]}")
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    try:
        _, stderr = process.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        pytest.fail("expyrun still running 60 s after SIGTERM")
    assert process.returncode == 143, stderr
    stopped = records(entry / STUDY_DIR)
    assert sorted(stopped) == [0, 1, 2]
    assert all("the study was stopped (SIGTERM)" in r["exception"]["message"] for r in stopped.values())
    rerun = run_expyrun(["tune.yml", "--sleep", "0"], entry, timeout=180)
    assert rerun.returncode == 0, rerun.stderr
    again = records(entry / "outputs" / "objectives" / "exp.1")
    assert len(again) == 5 and {r["status"] for r in again.values()} == {"completed"}
    retried = {r["trial"]["params"]["x"] for r in again.values()}
    assert {r["trial"]["params"]["x"] for r in stopped.values()} <= retried  # same parameters, run again


def test_named_objectives_from_a_command_runs_result_file(project):
    """A command run's `__result__` mapping is read like an entry point's return value."""
    script = 'x=$(grep "^x:" config.yml | cut -d" " -f2)\n'
    script += "python3 -c \"import json; x=float($x); json.dump({'loss': (x-1)**2, 'acc': 1/(1+x*x), 'steps': 7}, "
    script += "open('result.json', 'w'))\"\n"
    write(project / "scripts" / "score.sh", script)
    config = """\
__run__:
  __command__: [bash, "{__run__.__code__}/score.sh"]
  __code__: scripts
  __result__: result.json
  __name__: scored
  __output_dir__: outputs
x: 0.0
__optuna__:
  n_trials: 3
  objectives: {loss: minimize, acc: maximize}
  sampler: {name: RandomSampler, seed: 0}
  search_space:
    x: {type: float, low: -2, high: 2}
"""
    write(project / "tune.yml", config)
    result = run_expyrun(["tune.yml"], project, timeout=120)
    assert result.returncode == 0, result.stderr
    found = records(project / "outputs" / "scored" / "exp.0")
    for record in found.values():
        x = record["trial"]["params"]["x"]
        assert record["trial"]["objectives"] == {
            "loss": pytest.approx((x - 1) ** 2),
            "acc": pytest.approx(1 / (1 + x * x)),
        }
        assert record["trial"]["metrics"] == {"steps": 7}
    write(project / "tune.yml", config.replace("  n_trials: 3\n", "  n_trials: 3\n  batch_size: 2\n"))
    for args in (["tune.yml"], ["tune.yml", "--dry-run"]):
        refused = run_expyrun(args, project)
        assert (
            refused.returncode == 2 and "`__optuna__.batch_size`: a command run evaluates one config" in refused.stderr
        )
    assert not (project / "outputs" / "scored" / "exp.1").exists()


def test_a_rerun_with_other_objectives_than_the_stored_study_fails_saying_so(entry):
    write(
        entry / "tune.yml",
        study_config("  n_trials: 2\n  objectives: {loss: minimize}\n").replace("named: false", "named: one"),
    )
    assert run(entry).returncode == 0
    write(entry / "tune.yml", study_config("  n_trials: 4\n  objectives: {loss: minimize, accuracy: maximize}\n"))
    result = run(entry)
    assert result.returncode == 1
    assert (
        "study 'objectives' is stored with directions ['minimize'], this config asks for ['minimize', 'maximize']"
        in result.stderr
    )
