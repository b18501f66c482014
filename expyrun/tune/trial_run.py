"""One trial: its folder (prepared `queued`, then `running`, then its end status), its config, and
the call of the entry point that evaluates it, wherever that runs (a worker process or inline).
"""

from __future__ import annotations

import base64
import math
import numbers
import os
import pickle
import sys
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from expyrun.config import ResolvedConfig, RunSection
from expyrun.config.dump import dump_yaml
from expyrun.config.resolve import interpolate
from expyrun.config.tree import copy_tree, set_at
from expyrun.run.entry_point import ConfigMismatch, call_entry_point
from expyrun.run.record import now, start_record, write_json_atomic
from expyrun.tune.current import set_trial
from expyrun.tune.spec import StudySpec

SIGNAL_EXIT = {"SIGINT": 130, "SIGTERM": 143}


@dataclass
class TrialOutcome:
    state: str  # COMPLETE, PRUNED or FAIL
    values: list[float] | None = None
    error: dict[str, str] | None = None
    interrupted: str | None = None  # SIGINT / SIGTERM: the trial was stopped with the study

    def as_reply(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_reply(cls, reply: dict[str, Any]) -> TrialOutcome:
        return cls(reply["state"], reply.get("values"), reply.get("error"), reply.get("interrupted"))

    @classmethod
    def failed(cls, kind: str, message: str, interrupted: str | None = None) -> TrialOutcome:
        return cls("FAIL", error={"type": kind, "message": message}, interrupted=interrupted)


class ObjectiveError(Exception):
    """The entry point returned something that is not an objective."""


def _number(value: Any) -> float | None:
    """`value` as a float when it is a real number: Python and NumPy scalars, 0-d arrays and tensors
    (anything whose `.item()` gives one); None otherwise."""
    if isinstance(value, bool):
        return None
    if isinstance(value, numbers.Real):
        return float(value)
    item = getattr(value, "item", None)
    if callable(item):
        try:
            inner = item()
        except Exception:  # not a one-element array: not a number
            return None
        if isinstance(inner, numbers.Real) and not isinstance(inner, bool):
            return float(inner)
    return None


def objective_values(value: Any, directions: tuple[str, ...]) -> list[float]:
    """The objective(s) in `value`, finite floats, one per direction; ObjectiveError saying what
    was returned otherwise (a NaN or an infinity fails the trial, not the study)."""
    expected = "a number" if len(directions) == 1 else f"a sequence of {len(directions)} numbers (one per direction)"
    if len(directions) == 1:
        candidates = [value]
    elif isinstance(value, (list, tuple)) and len(value) == len(directions):
        candidates = list(value)
    else:
        candidates = None
    numbers_found = [_number(x) for x in candidates] if candidates is not None else [None]
    if any(x is None for x in numbers_found):
        raise ObjectiveError(
            f"the entry point returned {value!r} ({type(value).__name__}); the objective must be {expected}"
        )
    found = [x for x in numbers_found if x is not None]
    if not all(math.isfinite(x) for x in found):
        raise ObjectiveError(f"the entry point returned {value!r}; the objective must be finite (not NaN or inf)")
    return found


def trial_config(resolved: ResolvedConfig, params: dict[str, Any], spec: StudySpec, code: Path) -> ResolvedConfig:
    """The config of one trial: the raw config with the trial's values, interpolated again."""
    raw = copy_tree(resolved.raw)
    raw.pop("__optuna__", None)
    for param in spec.params:
        set_at(raw, param.path, params[param.key])
    raw["__run__"]["__code__"] = str(code)
    resolved.provenance.trial_paths = {param.path for param in spec.params}
    return interpolate(raw, resolved.provenance, Path(resolved.run.output_dir), os.environ, [])


@dataclass
class PreparedTrial:
    """A trial folder written before the trial executes, and what executing it needs."""

    trial: Any  # the driver's optuna.trial.Trial
    number: int
    params: dict[str, Any]
    run_dir: Path
    config: ResolvedConfig
    record: dict[str, Any]
    started: float = field(default_factory=time.monotonic)

    def task(self) -> dict[str, Any]:
        """What a worker process needs to evaluate it. The config travels pickled: YAML gives it
        dates, bytes and sets that JSON would change."""
        blob = pickle.dumps((self.config.run, self.config.user_config()), protocol=pickle.HIGHEST_PROTOCOL)
        return {"trial_id": self.trial._trial_id, "config": base64.b64encode(blob).decode("ascii")}


@dataclass
class TrialContext:
    """What every trial of one study needs."""

    resolved: ResolvedConfig
    spec: StudySpec
    study_dir: Path
    import_root: Path

    def prepare(self, trial: Any, params: dict[str, Any]) -> PreparedTrial:
        """`trials/trial.{n}/` with both configs and `run.json` status `queued`."""
        trial_dir = self.study_dir / "trials" / f"trial.{trial.number}"
        trial_dir.mkdir(parents=True, exist_ok=True)
        trial.set_user_attr("run_dir", str(trial_dir))  # the dashboard shows where each trial's files are
        config = trial_config(self.resolved, params, self.spec, self.study_dir)
        (trial_dir / "raw_config.yml").write_text(dump_yaml(config.raw), encoding="utf-8")
        (trial_dir / "config.yml").write_text(dump_yaml(config.for_disk()), encoding="utf-8")
        record = start_record(config.run.name, trial_dir, False, [], self.study_dir)
        record["status"] = "queued"
        record["config"] = config.user_config_for_disk()
        record["trial"] = {"study": self.spec.study_name, "number": trial.number, "params": params,
                           "state": "RUNNING", "values": None}  # fmt: skip
        write_json_atomic(trial_dir / "run.json", record)
        return PreparedTrial(trial, trial.number, params, trial_dir, config, record)

    def start(self, prepared: PreparedTrial, pid: int, gpu: str | None) -> None:
        """`running`, in the process `pid`, with the GPU it was given."""
        prepared.record.update(status="running", pid=pid, started_at=now())
        if gpu is not None:
            prepared.record["gpu"] = gpu
        prepared.started = time.monotonic()
        write_json_atomic(prepared.run_dir / "run.json", prepared.record)

    def finish(self, prepared: PreparedTrial, outcome: TrialOutcome) -> None:
        status = {"COMPLETE": "completed", "PRUNED": "pruned"}.get(outcome.state, "failed")
        exit_code = 0 if status != "failed" else SIGNAL_EXIT.get(outcome.interrupted or "", 1)
        record = prepared.record
        record.update(status=status, ended_at=now(), duration_s=round(time.monotonic() - prepared.started, 3),
                      exit_code=exit_code, exception=self.resolved.scrub(outcome.error))  # fmt: skip
        record["result"] = outcome.values[0] if outcome.values and len(outcome.values) == 1 else outcome.values
        record["trial"].update(state=outcome.state, values=outcome.values)
        write_json_atomic(prepared.run_dir / "run.json", record)


def evaluate(live_trial: Any, run: RunSection, import_root: Path, config: dict, spec: StudySpec) -> TrialOutcome:
    """Call the entry point for one trial and classify how it ended. KeyboardInterrupt and
    SIGTERM's exception go through: the caller knows whether the study is stopping."""
    import optuna

    set_trial(live_trial)
    try:
        value = call_entry_point(run, import_root, config)
        return TrialOutcome("COMPLETE", objective_values(value, spec.directions))
    except optuna.TrialPruned:
        return TrialOutcome("PRUNED")
    except (ObjectiveError, ConfigMismatch) as error:
        print(f"expyrun: {error}", file=sys.stderr, flush=True)
        return TrialOutcome.failed(type(error).__name__, str(error))
    except SystemExit as error:  # a trial's exit ends that trial, never the study
        code = error.code
        if isinstance(code, str):
            print(code, file=sys.stderr, flush=True)  # what Python prints when sys.exit("...") ends it
        detail = "sys.exit()" if code is None else f"sys.exit({code!r})"
        return TrialOutcome.failed("SystemExit", f"the trial called {detail} instead of returning an objective")
    except Exception as error:
        traceback.print_exc()
        return TrialOutcome.failed(type(error).__name__, str(error))
    finally:
        set_trial(None)


class WorkerRunner:
    """The study side of a trial worker process (expyrun.execute.trial_worker_main): its own
    storage and study, opened once, and a live `Trial` per task so `report()` and `should_prune()`
    reach the storage with the study's pruner."""

    def __init__(self, init: dict[str, Any]) -> None:
        import optuna

        from expyrun.tune.optuna_compat import build_named
        from expyrun.tune.storage import make_storage

        self.spec: StudySpec = pickle.loads(base64.b64decode(init["spec"]))
        self.import_root = Path(init["import_root"])
        journal = Path(init["journal"]) if init.get("journal") else None
        self.study = optuna.load_study(
            study_name=self.spec.study_name,
            storage=make_storage(self.spec, journal, create=False),
            sampler=build_named(self.spec.sampler, optuna.samplers),
            pruner=build_named(self.spec.pruner, optuna.pruners),
        )

    def __call__(self, task: dict[str, Any]) -> dict[str, Any]:
        import optuna

        run, config = pickle.loads(base64.b64decode(task["config"]))
        live = optuna.trial.Trial(self.study, task["trial_id"])
        return evaluate(live, run, self.import_root, config, self.spec).as_reply()
