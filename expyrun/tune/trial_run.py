"""One trial: its folder, its config, and the entry point run in a forked child or inline."""

from __future__ import annotations

import contextlib
import faulthandler
import json
import numbers
import os
import signal
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from expyrun.config import ResolvedConfig
from expyrun.config.dump import dump_yaml
from expyrun.config.resolve import interpolate
from expyrun.config.tree import copy_tree, set_at
from expyrun.run.child import flush_all
from expyrun.run.entry_point import call_entry_point
from expyrun.run.record import now, start_record, write_json_atomic
from expyrun.tune.current import set_trial
from expyrun.tune.spec import StudySpec


@dataclass
class TrialOutcome:
    state: str  # COMPLETE, PRUNED or FAIL
    values: list[float] | None = None
    error: dict[str, str] | None = None


class ObjectiveError(Exception):
    """The entry point returned something that is not an objective."""


def objective_values(value: Any, directions: tuple[str, ...]) -> list[float]:
    def is_number(x: Any) -> bool:
        return isinstance(x, numbers.Real) and not isinstance(x, bool)

    if len(directions) == 1 and is_number(value):
        return [float(value)]
    sequence = isinstance(value, (list, tuple)) and len(value) == len(directions) > 1
    if sequence and all(is_number(x) for x in value):
        return [float(x) for x in value]
    expected = "a number" if len(directions) == 1 else f"a sequence of {len(directions)} numbers (one per direction)"
    raise ObjectiveError(
        f"the entry point returned {value!r} ({type(value).__name__}); the objective must be {expected}"
    )


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
class TrialContext:
    """What every trial of one study needs."""

    resolved: ResolvedConfig
    spec: StudySpec
    study_dir: Path
    import_root: Path
    reload_study: Callable[[], Any] | None  # a fresh Study for a forked child; None: the inherited one works

    def prepare(self, trial: Any, params: dict[str, Any]) -> tuple[Path, ResolvedConfig, dict[str, Any]]:
        trial_dir = self.study_dir / "trials" / f"trial.{trial.number}"
        trial_dir.mkdir(parents=True, exist_ok=True)
        config = trial_config(self.resolved, params, self.spec, self.study_dir)
        (trial_dir / "raw_config.yml").write_text(dump_yaml(config.raw), encoding="utf-8")
        (trial_dir / "config.yml").write_text(dump_yaml(config.for_disk()), encoding="utf-8")
        record = start_record(config.run.name, trial_dir, False, [], self.study_dir)
        record["config"] = config.user_config_for_disk()
        record["trial"] = {"study": self.spec.study_name, "number": trial.number, "params": params,
                           "state": "RUNNING", "values": None}  # fmt: skip
        write_json_atomic(trial_dir / "run.json", record)
        return trial_dir, config, record

    def finish(self, trial_dir: Path, record: dict[str, Any], outcome: TrialOutcome, started: float) -> None:
        status = {"COMPLETE": "completed", "PRUNED": "pruned"}.get(outcome.state, "failed")
        exception = self.resolved.scrub(outcome.error)
        record.update(status=status, ended_at=now(), duration_s=round(time.monotonic() - started, 3),
                      exit_code=0 if status != "failed" else 1, exception=exception)  # fmt: skip
        record["result"] = outcome.values[0] if outcome.values and len(outcome.values) == 1 else outcome.values
        record["trial"].update(state=outcome.state, values=outcome.values)
        write_json_atomic(trial_dir / "run.json", record)


def evaluate(context: TrialContext, live_trial: Any, config: ResolvedConfig) -> TrialOutcome:
    """Call the entry point for one trial and classify the result (runs where the trial runs)."""
    import optuna

    set_trial(live_trial)
    try:
        value = call_entry_point(config.run, context.import_root, config.user_config())
        return TrialOutcome("COMPLETE", objective_values(value, context.spec.directions))
    except optuna.TrialPruned:
        return TrialOutcome("PRUNED")
    except ObjectiveError as error:
        print(f"expyrun: {error}", flush=True)
        return TrialOutcome("FAIL", error={"type": "ObjectiveError", "message": str(error)})
    except Exception as error:
        traceback.print_exc()
        return TrialOutcome("FAIL", error={"type": type(error).__name__, "message": str(error)})
    finally:
        set_trial(None)


@contextlib.contextmanager
def _output_to(log: Path) -> Iterator[None]:
    """fds 1 and 2 into the trial's log for the duration (inline, one job at a time)."""
    import sys

    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    try:
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        os.close(saved[0])
        os.close(saved[1])


def run_inline(context: TrialContext, trial: Any, config: ResolvedConfig, trial_dir: Path) -> TrialOutcome:
    redirect = _output_to(trial_dir / "outputs.log") if context.spec.n_jobs == 1 else contextlib.nullcontext()
    with redirect:
        return evaluate(context, trial, config)


def run_in_child(context: TrialContext, trial: Any, config: ResolvedConfig, trial_dir: Path) -> TrialOutcome:
    """Fork a child for the trial; a crash (segfault, kill) is a failed trial, not a failed study."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.close(read_end)
            fd = os.open(trial_dir / "outputs.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            os.dup2(fd, 1)
            os.dup2(fd, 2)
            os.close(fd)
            faulthandler.enable()
            os.chdir(trial_dir)
            os.environ["EXPYRUN_RUN_DIR"] = str(trial_dir)
            import optuna

            # A journal storage works across fork as it is; a database engine's pooled connections do not.
            live = (
                trial if context.reload_study is None else optuna.trial.Trial(context.reload_study(), trial._trial_id)
            )
            outcome = evaluate(context, live, config)
            with os.fdopen(write_end, "w") as pipe:
                json.dump(outcome.__dict__, pipe)
            code = 0
        except BaseException:
            traceback.print_exc()
        finally:
            flush_all()
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        payload = pipe.read()
    _, status = os.waitpid(pid, 0)
    if payload:
        return TrialOutcome(**json.loads(payload))
    if os.WIFSIGNALED(status):
        name = signal.Signals(os.WTERMSIG(status)).name
        if os.WTERMSIG(status) == signal.SIGINT:
            raise KeyboardInterrupt
        return TrialOutcome("FAIL", error={"type": "Signal", "message": f"the trial was killed by {name}"})
    return TrialOutcome("FAIL", error={"type": "Exit", "message": f"the trial exited with {os.WEXITSTATUS(status)}"})
