"""The study driver: asks Optuna for trials, runs them, tells the results, writes study.json.

It runs as the body of an ordinary run (the study folder is one run: one snapshot, frozen
requirements, git state, run.json and outputs.log), with `n_jobs` worker threads each looping
ask -> run -> tell until the study holds `n_trials` trials, the timeout passes, or
`max_consecutive_failures` trials failed in a row.
"""

from __future__ import annotations

import fcntl
import json
import math
import os
import threading
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from expyrun.config import ResolvedConfig
from expyrun.execute.launch_spec import LaunchSpec
from expyrun.run.record import write_json_atomic
from expyrun.tune.spec import StudySpec
from expyrun.tune.storage import advisory_lock, journal_path, make_storage
from expyrun.tune.trial_run import TrialContext, TrialOutcome, run_in_child, run_inline

STUDY_FILE = "study.json"


class NoCompletedTrial(Exception):
    """The study ended without a single completed trial."""


class Driver:
    def __init__(
        self, resolved: ResolvedConfig, spec: StudySpec, study_home: Path, interactive: bool, launch: LaunchSpec
    ) -> None:
        self.resolved = resolved
        self.launch = launch
        self.spec = spec
        self.journal = journal_path(spec, study_home)
        self.lock_file = Path(f"{self.journal}.expyrun-lock") if self.journal else None
        self.interactive = interactive
        self.stop = threading.Event()
        self.failures = 0
        self.mutex = threading.Lock()

    def load_study(self) -> Any:
        import optuna

        return optuna.load_study(study_name=self.spec.study_name, storage=make_storage(self.spec, self.journal))

    def create_study(self) -> Any:
        import optuna

        def build(section: dict, module: Any) -> Any:
            if not section:
                return None
            kwargs = {k: v for k, v in section.items() if k != "name"}
            return getattr(module, section["name"])(**kwargs)

        self.storage = make_storage(self.spec, self.journal)
        return optuna.create_study(
            study_name=self.spec.study_name,
            storage=self.storage,
            directions=list(self.spec.directions),
            sampler=build(self.spec.sampler, optuna.samplers),
            pruner=build(self.spec.pruner, optuna.pruners),
            load_if_exists=True,
        )

    @contextmanager
    def _ask_lock(self) -> Iterator[None]:
        """Count-then-ask is atomic across the workers of a study, so n_trials is exact.

        A file lock beside a journal; an advisory lock on PostgreSQL; SQLite has one worker.
        """
        if self.spec.storage is not None and self.spec.storage.startswith("postgresql"):
            with self.mutex, self._advisory_lock():
                yield
            return
        if self.lock_file is None:
            with self.mutex:
                yield
            return
        with self.mutex, open(self.lock_file, "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _advisory_lock(self) -> Any:
        return advisory_lock(self.storage.engine, f"expyrun:ask:{self.spec.study_name}")

    def _next_trial(self, study: Any) -> Any | None:
        import optuna

        if self.stop.is_set():
            return None
        if self.spec.is_rdb and not self.spec.is_sqlite:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                optuna.storages.fail_stale_trials(study)
        with self._ask_lock():
            if self.spec.n_trials is not None:
                trials = study.get_trials(deepcopy=False)
                waiting = any(t.state == optuna.trial.TrialState.WAITING for t in trials)  # retries to run
                if not waiting and len(trials) >= self.spec.n_trials:
                    return None
            return study.ask()

    def run(self, run_dir: Path, import_root: Path) -> dict[str, Any]:
        study = self.create_study()
        if self.spec.storage is None and self.journal is not None:  # the study folder shows its journal
            (run_dir / self.journal.name).symlink_to(os.path.relpath(self.journal, run_dir))
        reload = self.load_study if self.journal is None else None
        context = TrialContext(self.resolved, self.spec, run_dir, import_root, reload)
        deadline = math.inf if self.spec.timeout is None else time.monotonic() + self.spec.timeout
        progress = _Progress.open(self.spec, study) if self.interactive else None
        errors: list[BaseException] = []

        def worker() -> None:
            try:
                while time.monotonic() < deadline:
                    trial = self._next_trial(study)
                    if trial is None:
                        return
                    self._run_one(study, context, trial)
                    if progress:
                        progress.update(study)
            except BaseException as error:
                self.stop.set()
                errors.append(error)

        try:
            if self.spec.n_jobs == 1:
                worker()
            else:
                threads = [threading.Thread(target=worker, daemon=True) for _ in range(self.spec.n_jobs)]
                for thread in threads:
                    thread.start()
                for thread in threads:
                    while thread.is_alive():
                        thread.join(0.2)
            if errors:
                raise errors[0]
        finally:
            if progress:
                progress.close()
            summary = write_summary(study, run_dir, self.spec)
        if not summary["counts"].get("COMPLETE"):
            raise NoCompletedTrial("the study has no completed trial")
        return summary["best"]

    def _run_one(self, study: Any, context: TrialContext, trial: Any) -> None:
        import optuna

        params = {param.key: param.suggest(trial) for param in self.spec.params}
        trial_dir, config, record = context.prepare(trial, params)
        started = time.monotonic()
        try:
            with self._heartbeats(study, trial):
                if self.spec.isolation == "inline":
                    outcome = run_inline(context, trial, config, trial_dir)
                else:
                    outcome = run_in_child(context, trial, config, trial_dir)
        except KeyboardInterrupt:
            outcome = TrialOutcome("FAIL", error={"type": "KeyboardInterrupt", "message": "interrupted"})
            context.finish(trial_dir, record, outcome, started)
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            raise
        context.finish(trial_dir, record, outcome, started)
        state = getattr(optuna.trial.TrialState, outcome.state)
        study.tell(trial, outcome.values if state == optuna.trial.TrialState.COMPLETE else None, state=state)
        self._log(trial.number, outcome, params)
        with self.mutex:
            self.failures = self.failures + 1 if outcome.state == "FAIL" else 0
            if self.failures >= self.spec.max_consecutive_failures:
                print(f"expyrun: stopping the study: {self.failures} trials failed in a row", flush=True)
                self.stop.set()

    @contextmanager
    def _heartbeats(self, study: Any, trial: Any) -> Iterator[None]:
        """With a database storage, a thread records the trial's heartbeat while it runs, so the
        other workers can tell a running trial from the trial of a dead worker."""
        if not self.spec.is_rdb or self.spec.is_sqlite:
            yield
            return
        done = threading.Event()

        def beat() -> None:
            while True:
                study._storage.record_heartbeat(trial._trial_id)
                if done.wait(self.spec.heartbeat_interval):
                    return

        thread = threading.Thread(target=beat, daemon=True, name=f"heartbeat-{trial.number}")
        thread.start()
        try:
            yield
        finally:
            done.set()
            thread.join()

    def _log(self, number: int, outcome: TrialOutcome, params: dict[str, Any]) -> None:
        detail = outcome.values if outcome.state == "COMPLETE" else (outcome.error or {}).get("message", "")
        print(f"trial {number}: {outcome.state} {detail} {json.dumps(params, default=str)}", flush=True)


def write_summary(study: Any, run_dir: Path, spec: StudySpec) -> dict[str, Any]:
    """study.json (best trial or Pareto front, counts by state) and, with plotly, plots/."""
    trials = study.get_trials(deepcopy=False)
    counts: dict[str, int] = {}
    for trial in trials:
        counts[trial.state.name] = counts.get(trial.state.name, 0) + 1

    def describe(trial: Any) -> dict[str, Any]:
        return {"number": trial.number, "values": trial.values, "params": trial.params}

    best: Any = None
    if counts.get("COMPLETE"):
        if len(spec.directions) == 1:
            best = {**describe(study.best_trial), "value": study.best_value}
        else:
            best = [describe(t) for t in study.best_trials]
    summary = {
        "study_name": spec.study_name,
        "directions": list(spec.directions),
        "n_trials": len(trials),
        "counts": counts,
        "best": best,
    }
    if len(spec.directions) > 1:
        summary["pareto_front"] = best
    write_json_atomic(run_dir / STUDY_FILE, summary)
    _plots(study, run_dir, spec, counts)
    return summary


def _plots(study: Any, run_dir: Path, spec: StudySpec, counts: dict[str, int]) -> None:
    try:
        import plotly  # noqa: F401
    except ImportError:
        return
    from optuna import visualization

    plots = run_dir / "plots"
    plots.mkdir(exist_ok=True)
    if len(spec.directions) == 1 and counts.get("COMPLETE"):
        visualization.plot_optimization_history(study).write_html(plots / "optimization_history.html")
    if counts.get("COMPLETE", 0) >= 2 and len(spec.params) >= 1:
        try:
            target = None if len(spec.directions) == 1 else (lambda t: t.values[0])
            visualization.plot_param_importances(study, target=target).write_html(plots / "param_importances.html")
        except (ValueError, RuntimeError) as error:  # e.g. all parameters constant
            print(f"expyrun: no parameter importances: {error}", flush=True)
    elif len(spec.directions) > 1 and counts.get("COMPLETE"):
        visualization.plot_pareto_front(study).write_html(plots / "pareto_front.html")


class _Progress:
    """A rich progress bar on the terminal: trials done / total and the best value so far."""

    def __init__(self, spec: StudySpec, study: Any) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        # Straight to the terminal: the bar is for the person watching, not for outputs.log.
        self.terminal = open("/dev/tty", "w")  # noqa: SIM115 (closed in close())
        self.progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            TextColumn("{task.fields[best]}"), console=Console(file=self.terminal, force_terminal=True),
            redirect_stdout=False, redirect_stderr=False,  # prints belong in outputs.log
        )  # fmt: skip
        self.single = len(spec.directions) == 1
        self.task = self.progress.add_task(spec.study_name, total=spec.n_trials, best="")
        self.progress.start()
        self.update(study)

    @classmethod
    def open(cls, spec: StudySpec, study: Any) -> _Progress | None:
        try:
            return cls(spec, study)
        except OSError:  # no controlling terminal after all
            return None

    def update(self, study: Any) -> None:
        trials = study.get_trials(deepcopy=False)
        finished = sum(1 for t in trials if t.state.is_finished())
        best = ""
        if self.single and any(t.state.name == "COMPLETE" for t in trials):
            best = f"best {study.best_value:.6g}"
        self.progress.update(self.task, completed=finished, best=best)

    def close(self) -> None:
        self.progress.stop()
        self.terminal.close()
