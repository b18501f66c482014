"""One trial: its folder (prepared `queued`, then `running`, then its end status), its config, and
the call of the entry point that evaluates it, wherever that runs (a worker process or inline); or
a batch of trials evaluated by one call (`batch_size`), each trial keeping its folder and record.
"""

from __future__ import annotations

import base64
import contextlib
import os
import pickle
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from expyrun.config import ResolvedConfig, RunSection
from expyrun.config.dump import dump_yaml
from expyrun.config.resolve import interpolate
from expyrun.config.tree import copy_tree, set_at
from expyrun.console import visible  # objective names and values are the config's and the run's
from expyrun.current import TRIAL_SECTION, set_trial, set_trials
from expyrun.run.entry_point import ConfigMismatch, call_entry_point
from expyrun.run.outcome import Outcome
from expyrun.run.prepare import CODE_FOLDER, RESERVE_FILE, reserve_space
from expyrun.run.record import mark_outcome, mark_started, start_record, write_record
from expyrun.run.status import TRIAL_STATUS, Status, TrialState, signal_exit
from expyrun.run.tracebacks import print_user_traceback
from expyrun.track.metrics import finish_fields
from expyrun.tune.objective import Objective, ObjectiveError, read_batch, read_objective
from expyrun.tune.spec import StudySpec


@dataclass
class TrialOutcome:
    """How a trial ended, in the terms Optuna is told (and a worker's reply carries); its record
    is finished from `as_outcome`, the run-level type every execution ends with."""

    state: TrialState
    values: list[float] | None = None
    error: dict[str, str] | None = None
    interrupted: str | None = None  # SIGINT / SIGTERM: the trial was stopped with the study
    metrics: dict[str, float | None] | None = None  # named objectives: the other numbers returned
    log_error: str | None = None  # the trial's outputs.log could not be written (a full disk)

    def as_reply(self) -> dict[str, Any]:
        return asdict(self)

    def as_outcome(self) -> Outcome:
        """The end of the trial's run: `completed`/`pruned`/`failed`, the exit code a run stopped
        the same way gives (130/143 for a trial stopped with its study), the exception, the result."""
        status = TRIAL_STATUS.get(self.state, Status.FAILED)
        exit_code = 0 if status != Status.FAILED else signal_exit(self.interrupted, 1)
        result = self.values[0] if self.values and len(self.values) == 1 else self.values
        return Outcome(status, exit_code, result=result, exception=self.error, log_error=self.log_error)

    @classmethod
    def from_reply(cls, reply: dict[str, Any]) -> TrialOutcome:
        return cls(
            reply["state"], reply.get("values"), reply.get("error"), reply.get("interrupted"), reply.get("metrics"),
            reply.get("log_error"),
        )  # fmt: skip

    @classmethod
    def completed(cls, objective: Objective) -> TrialOutcome:
        return cls("COMPLETE", objective.values, metrics=objective.metrics)

    @classmethod
    def failed(cls, kind: str, message: str, interrupted: str | None = None) -> TrialOutcome:
        return cls("FAIL", error={"type": kind, "message": message}, interrupted=interrupted)


def trial_config(resolved: ResolvedConfig, params: dict[str, Any], spec: StudySpec, code: Path) -> ResolvedConfig:
    """The config of one trial: the raw config with the trial's values, interpolated again."""
    raw = copy_tree(resolved.raw)
    raw.pop("__optuna__", None)
    for param in spec.params:
        set_at(raw, param.path, params[param.key])
    if resolved.run.is_command:  # the study folder's copy of the scripts (the original in --debug)
        code = code / CODE_FOLDER if (code / CODE_FOLDER).is_dir() else resolved.run.code
    raw["__run__"]["__code__"] = str(code)
    provenance = resolved.provenance.copy()  # the study's config is shared by every trial: not changed
    provenance.trial_paths = {param.path for param in spec.params}
    return interpolate(raw, provenance, Path(resolved.run.output_dir), os.environ, [])


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
        config = base64.b64encode(blob).decode("ascii")
        return {"trial_id": self.trial._trial_id, "number": self.number, "config": config}


@dataclass
class PreparedBatch:
    """The trials of one batch call (`batch_size`): each keeps its own folder, configs and record;
    the call runs in `batches/batch.{index}/`, where its output goes (`outputs.log`)."""

    index: int
    run_dir: Path
    members: list[PreparedTrial]

    @property
    def number(self) -> int:
        """The key of the batch among running tasks: its first trial's number (unique)."""
        return self.members[0].number

    def task(self) -> dict[str, Any]:
        """What a worker process needs to evaluate the batch: its trials and their configs."""
        configs = [member.config.user_config() for member in self.members]
        blob = pickle.dumps((self.members[0].config.run, configs), protocol=pickle.HIGHEST_PROTOCOL)
        trial_ids = [m.trial._trial_id for m in self.members]
        return {"trial_ids": trial_ids, "number": self.number, "config": base64.b64encode(blob).decode()}


Unit = PreparedTrial | PreparedBatch  # what one slot executes: a trial, or a batch of them in one call


@dataclass
class TrialContext:
    """What every trial of one study needs."""

    resolved: ResolvedConfig
    spec: StudySpec
    study_dir: Path
    import_root: Path
    sampler_seed: int | None = None  # the seed of the launch's sampler, once it has one (seeds.py)

    def batch_folder(self, index: int) -> Path:
        """`batches/batch.{index}/`, where a batch call runs and logs."""
        folder = self.study_dir / "batches" / f"batch.{index}"
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def prepare(self, trial: Any, params: dict[str, Any], batch: dict[str, Any] | None = None) -> PreparedTrial:
        """`trials/trial.{n}/` with both configs and `run.json` status `queued`. A trial of a batch
        records it (`batch`: index, trial numbers, folder) and its `outputs.log` is a link to the
        batch's log, which holds what the call wrote for every trial of it."""
        trial_dir = self.study_dir / "trials" / f"trial.{trial.number}"
        trial_dir.mkdir(parents=True, exist_ok=True)
        if batch is not None:
            log = trial_dir / "outputs.log"
            if not log.is_symlink():
                log.symlink_to(os.path.relpath(Path(batch["dir"]) / "outputs.log", trial_dir))
        trial.set_user_attr("run_dir", str(trial_dir))  # the dashboard shows where each trial's files are
        config = trial_config(self.resolved, params, self.spec, self.study_dir)
        (trial_dir / "raw_config.yml").write_text(config.raw_text(), encoding="utf-8")
        (trial_dir / "config.yml").write_text(config.config_text(), encoding="utf-8")
        if config.run.templates:  # rendered with the trial's values (a command reads them from its folder)
            from expyrun.run.templates import render_templates

            render_templates(config, config.run.code, into=trial_dir)
        launch = config.values.get("__launch__")  # a Slurm study's trials run in its array tasks
        launcher = str(launch.get("launcher") or "local") if isinstance(launch, dict) else "local"
        record = start_record(config.run.name, trial_dir, False, [], self.study_dir, launcher=launcher)
        record["config"] = config.user_config_for_disk()
        from expyrun.config.explain import origins
        from expyrun.track.annotations import write_launch_tags

        record["provenance"] = origins(config)  # SPEC 12.3: `trial` for the values the trial received
        write_launch_tags(trial_dir, config.values["__run__"].get("__tags__"))
        record["trial"] = {"study": self.spec.study_name, "number": trial.number, "params": params,
                           "state": "RUNNING", "values": None}  # fmt: skip
        if self.sampler_seed is not None:
            record["trial"]["sampler_seed"] = self.sampler_seed
        from expyrun.run.resume import retried_trial_folder

        retry_of = retried_trial_folder(trial, self.study_dir / "trials")
        if retry_of is not None:  # SPEC 14: its EXPYRUN_RETRY_OF (the attempt it retries, its checkpoint)
            record["retry_of"] = retry_of
        if batch is not None:
            record["batch"] = batch
        write_record(trial_dir, record)
        # the space of the last record, as a run keeps it: a trial that fills the disk is still recorded
        reserve_space(trial_dir / RESERVE_FILE, (trial_dir / "run.json").stat().st_size + 16 * 1024)
        return PreparedTrial(trial, trial.number, params, trial_dir, config, record)

    def start(self, prepared: PreparedTrial, pid: int, gpu: str | None) -> None:
        """`running`, in the process `pid`, with the GPU it was given."""
        mark_started(prepared.record, pid, gpu)
        prepared.started = time.monotonic()
        write_record(prepared.run_dir, prepared.record)

    def finish(self, prepared: PreparedTrial, outcome: TrialOutcome, suggested: dict[str, Any] | None = None) -> None:
        """The trial's end in its `run.json`; `suggested`: the values it suggested itself, recorded
        in `trial.params` and in its configs (see `record_suggested`)."""
        if suggested:
            record_suggested(prepared, suggested, self.spec.study_name)
        ended = outcome.as_outcome()
        ended.exception = self.resolved.scrub(outcome.error)
        record = prepared.record
        record["trial"].update(state=outcome.state, values=outcome.values)
        names = self.spec.objective_names
        if names is not None:  # the objectives by name, and the other numbers the entry point returned
            named = dict(zip(names, outcome.values, strict=True)) if outcome.values else None
            record["trial"].update(objectives=named, metrics=outcome.metrics or {})
            ended.result = None if named is None else {**named, **(outcome.metrics or {})}
        mark_outcome(record, ended, time.monotonic() - prepared.started)
        # `metrics`: what the trial logged (SPEC 11.1); its tee is given no patterns (execute/trial_log.py):
        # `__metrics__` read from its log
        record.update(finish_fields(prepared.run_dir, prepared.config.run.metrics))
        _write_last_record(prepared)

    def changed_in_storage(self, prepared: PreparedTrial, state: str, outcome: TrialOutcome) -> None:
        """The trial was finished in the storage by someone else while it ran (marked Fail in
        optuna-dashboard, or failed and retried by another host that judged this study process
        dead): Optuna keeps that state, so its `run.json` says so, with how it ended here (its
        `result` and `exit_code` stay those of the call). Called after `finish`."""
        ended = outcome.state if outcome.state != "FAIL" else f"FAIL ({(outcome.error or {}).get('message', '')})"
        message = (
            f"the trial was marked {state} in the storage while it ran (by optuna-dashboard, or by another "
            f"study process that judged this one dead); it ended here as {ended}, which was not told to Optuna"
        )
        record = prepared.record
        record["status"] = TRIAL_STATUS.get(state, Status.FAILED)
        record["exception"] = self.resolved.scrub({"type": "TrialStateChanged", "message": message})
        record["trial"]["state"] = state
        _write_last_record(prepared)


def _write_last_record(prepared: PreparedTrial) -> None:
    """The trial's final `run.json`, in the space kept for it at `prepare`; a record that cannot be
    written (the trial folder removed, a disk full beyond the reserve) is said on the study's log, and
    the study goes on."""
    with contextlib.suppress(OSError):
        os.unlink(prepared.run_dir / RESERVE_FILE)
    try:
        write_record(prepared.run_dir, prepared.record)
    except OSError as error:
        print(f"expyrun: trial {prepared.number}: cannot write {prepared.run_dir / 'run.json'}: {error.strerror}",
              file=sys.stderr, flush=True)  # fmt: skip


def record_suggested(prepared: PreparedTrial, suggested: dict[str, Any], study_name: str) -> None:
    """Values a trial suggested itself (`expyrun.trial().suggest_float("y", ...)`) join its params
    (`run.json` `trial.params`, the driver's log line) and are appended to its `config.yml` and
    `raw_config.yml` as `__trial__: {study, number, params}`: rerun alone, `expyrun.trial()` is then
    a FixedTrial giving the same values (expyrun/current.py). Appended, not rewritten: the
    configs stay byte for byte what the trial received, plus this section."""
    prepared.params.update(suggested)
    prepared.record["trial"]["suggested_in_trial"] = sorted(suggested)
    section = {TRIAL_SECTION: {"study": study_name, "number": prepared.number, "params": dict(prepared.params)}}
    text = dump_yaml(section)
    for name in ("config.yml", "raw_config.yml"):
        path = prepared.run_dir / name
        try:
            with path.open("a", encoding="utf-8") as config:
                config.write(text)
        except OSError as error:
            print(f"expyrun: trial {prepared.number}: could not record its own suggestions in {path}: {error}",
                  file=sys.stderr, flush=True)  # fmt: skip


def _call(run: RunSection, import_root: Path, config: Any) -> tuple[Any, TrialOutcome | None]:
    """Call the entry point (or a command run's command) once: its return value, or the outcome
    of a call that did not return one. KeyboardInterrupt and SIGTERM's exception go through: the
    caller knows whether the study is stopping."""
    import optuna

    try:
        if getattr(run, "is_command", False):
            from expyrun.run.command import run_in_place

            return run_in_place(run, Path.cwd()), None
        return call_entry_point(run, import_root, config), None
    except optuna.TrialPruned:
        return None, TrialOutcome("PRUNED")
    except (ObjectiveError, ConfigMismatch) as error:
        print(visible(f"expyrun: {error}"), file=sys.stderr, flush=True)
        return None, TrialOutcome.failed(type(error).__name__, str(error))
    except SystemExit as error:  # a trial's exit ends that trial, never the study
        code = error.code
        if isinstance(code, str):
            with contextlib.suppress(Exception):  # the entry point may have closed fd 2 (as a plain run's child)
                print(code, file=sys.stderr, flush=True)  # what Python prints when sys.exit("...") ends it
        detail = "sys.exit()" if code is None else f"sys.exit({code!r})"
        return None, TrialOutcome.failed("SystemExit", f"the trial called {detail} instead of returning an objective")
    except Exception as error:
        with contextlib.suppress(Exception):  # the entry point may have closed fd 2: the trial still fails with
            print_user_traceback()  # its exception, not with its worker's death
        return None, TrialOutcome.failed(type(error).__name__, str(error))


def log_reports(live_trial: Any, spec: StudySpec, batch: bool = False) -> None:
    """`trial.report(value, step)` is also written to the trial's `metrics.jsonl` as the objective's
    name (SPEC 11.1); in a batch, to the folder of that trial, not the batch's."""
    names = spec.objective_names
    name = names[0] if names else "objective"
    report = live_trial.report

    def logged(value: float, step: int) -> None:
        report(value, step)
        from expyrun.track.logging import report_to_log

        run_dir = live_trial.user_attrs.get("run_dir") if batch else None
        report_to_log(name, value, step, run_dir)

    with contextlib.suppress(AttributeError):  # a trial class that takes no attribute: reports not logged
        live_trial.report = logged


def evaluate(live_trial: Any, run: RunSection, import_root: Path, config: dict, spec: StudySpec) -> TrialOutcome:
    """Call the entry point for one trial and classify how it ended."""
    log_reports(live_trial, spec)
    set_trial(live_trial)
    try:
        value, ended = _call(run, import_root, config)
    finally:
        set_trial(None)
    if ended is not None:
        return ended
    try:
        return TrialOutcome.completed(read_objective(value, spec))
    except ObjectiveError as error:
        print(visible(f"expyrun: {error}"), file=sys.stderr, flush=True)
        return TrialOutcome.failed("ObjectiveError", str(error))


def evaluate_batch(
    live_trials: list[Any], run: RunSection, import_root: Path, configs: list[dict], spec: StudySpec
) -> list[TrialOutcome]:
    """Call the entry point once for a batch, `function(name, configs)`, and read one objective per
    trial from the list it returns. A call that raises (or prunes) ends every trial of the batch
    the same way; a return that is not a list of one objective per config fails them all; a bad
    objective fails its trial only."""
    for live in live_trials:
        log_reports(live, spec, batch=True)
    set_trials(live_trials)
    try:
        value, ended = _call(run, import_root, configs)
    finally:
        set_trial(None)
    count = len(live_trials)
    if ended is not None:
        return [replace(ended) for _ in range(count)]
    try:
        objectives = read_batch(value, count, spec)
    except ObjectiveError as error:
        print(visible(f"expyrun: {error}"), file=sys.stderr, flush=True)
        return [TrialOutcome.failed("ObjectiveError", str(error)) for _ in range(count)]
    outcomes = []
    for live, objective in zip(live_trials, objectives, strict=True):
        if isinstance(objective, ObjectiveError):
            print(visible(f"expyrun: trial {live.number}: {objective}"), file=sys.stderr, flush=True)
            outcomes.append(TrialOutcome.failed("ObjectiveError", str(objective)))
        else:
            outcomes.append(TrialOutcome.completed(objective))
    return outcomes


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

        self._seed(task.get("number"))
        run, config = pickle.loads(base64.b64decode(task["config"]))
        if "trial_ids" in task:  # a batch: one call, one outcome per trial
            lives = [optuna.trial.Trial(self.study, trial_id) for trial_id in task["trial_ids"]]
            outcomes = evaluate_batch(lives, run, self.import_root, config, self.spec)
            return {"outcomes": [outcome.as_reply() for outcome in outcomes]}
        live = optuna.trial.Trial(self.study, task["trial_id"])
        return evaluate(live, run, self.import_root, config, self.spec).as_reply()

    def _seed(self, number: int | None) -> None:
        """A seeded study: what trial `number` suggests itself is drawn by a sampler with a seed of
        its own (expyrun/tune/seeds.py). The study process's sampler drew the config's values from
        the given seed: a worker's sampler built with that seed would replay its draws."""
        import optuna

        from expyrun.tune import seeds
        from expyrun.tune.optuna_compat import build_named

        if number is None or seeds.given_seed(self.spec.sampler) is None:
            return
        section = seeds.seeded(self.spec.sampler, seeds.in_trial_seed(self.spec.sampler, number))
        self.study.sampler = build_named(section, optuna.samplers)
