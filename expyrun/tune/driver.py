"""The study driver: asks Optuna for trials, has them executed, tells the results, writes study.json.

It runs as the body of an ordinary run (the study folder is one run: one snapshot, frozen
requirements, git state, run.json and outputs.log). One thread dispatches: it asks for a trial
(count-then-ask under the study's lock, so `n_trials` is exact across processes), prepares its
folder (`queued`), hands it to a free slot of an executor (`running`) and, as trials end, records
and tells them. Executors: reused worker processes (`isolation: process`, see
expyrun/execute/trial_workers.py) or the driver itself (`isolation: inline`). Asking stops when the
study holds `n_trials` counted trials, the timeout passes, the sampler has no point left
(GridSampler), or `max_consecutive_failures` trials failed in a row; running trials then finish.
With `batch_size`, a slot executes a batch: N trials asked at once (under the same lock, so the last
batch is smaller when `n_trials` says so), each prepared in its own folder, evaluated by one call
`function(name, configs)` in `batches/batch.{k}/`, then recorded and told one by one.

The loop is the one every way of running points shares (expyrun/campaign/loop.py), with the study
as its proposer (expyrun/tune/proposer.py) and the pool wrapped in the Executor contract
(expyrun/execute/trial_executor.py). Its stop signals only set a flag, so a signal never lands in
the middle of a storage write: no unit is taken after one, the running trials (which received the
signal with the process group) get a grace period, then are recorded failed in the storage and
their run.json and queued again; study.json is written and the signal's exception raised, so the
run exits 130/143. Trials left RUNNING by a driver that died without a word are found by liveness
(expyrun/tune/liveness.py, or Optuna's heartbeat on a database server), failed and retried.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from expyrun.campaign.loop import Proposer, run_points
from expyrun.config import ResolvedConfig
from expyrun.console import visible
from expyrun.errors import ConfigError, Quiet
from expyrun.execute.launch_spec import LaunchSpec
from expyrun.execute.trial_executor import TrialExecutor, TrialPool
from expyrun.execute.trial_workers import Finished
from expyrun.run.child import Terminated
from expyrun.run.outcome import Outcome
from expyrun.run.status import Status
from expyrun.tune import optuna_compat as compat
from expyrun.tune import seeds
from expyrun.tune.claims import Claims
from expyrun.tune.heartbeat import Heartbeat
from expyrun.tune.liveness import Liveness
from expyrun.tune.optuna_logs import escape_optuna_logs
from expyrun.tune.progress import Progress
from expyrun.tune.proposer import StudyProposer
from expyrun.tune.reclaim import reclaim_dead_trials, settle_left_trials
from expyrun.tune.spec import StudySpec
from expyrun.tune.storage import absolute_sqlite_url, journal_path, make_storage, storage_file, study_lock
from expyrun.tune.study_record import write_summary
from expyrun.tune.trial_run import (
    PreparedBatch,
    PreparedTrial,
    TrialContext,
    TrialOutcome,
    Unit,
    evaluate,
    evaluate_batch,
)

# Running trials get this long to end after a signal: less than the 10 s after which the launcher
# kills the run's whole process group, so the driver still records them and writes study.json.
STOP_GRACE_S = 8.0


class NoCompletedTrial(Quiet, Exception):
    """The study ended without a single completed trial (exit 1; the trials' lines say why)."""


class StudyStopped(Quiet, KeyboardInterrupt):
    """The study was stopped by SIGINT after recording its trials (exit 130, no traceback)."""


class Driver:
    def __init__(
        self, resolved: ResolvedConfig, spec: StudySpec, study_home: Path, interactive: bool, launch: LaunchSpec
    ) -> None:
        """Checks that need the launch spec too, before anything is created (exit 2)."""
        if spec.isolation == "inline" and launch.gpus is not None and len(launch.gpus) > 1:
            raise ConfigError(
                f"`__launch__.gpus`: inline trials share the driver's process, which sees one set of GPUs; "
                f"got {len(launch.gpus)} ids",
                "use isolation: process (one worker per GPU), or give one id",
            )
        if spec.is_sqlite and launch.jobs > 1:
            raise ConfigError(
                "`__optuna__.storage`: SQLite cannot be shared by several workers (n_jobs > 1): writes would fail "
                "with 'database is locked'",
                "use the default journal storage, a .journal file, or a PostgreSQL URL",
            )
        if spec.is_sqlite and spec.storage is not None:  # relative to where expyrun was launched
            spec = dataclasses.replace(spec, storage=absolute_sqlite_url(spec.storage))
        self.resolved = resolved
        self.launch = launch
        self.spec = spec
        self.journal = journal_path(spec, study_home)
        self.interactive = interactive
        self.slots = launch.slots
        self.deadline = math.inf
        self.ended: str | None = None  # why no more trials are asked for
        self.failures = 0
        self.inflight: dict[int, Unit] = {}
        self.batches = 0  # batches prepared by this driver: the next one is batches/batch.{self.batches}
        self.liveness: Liveness | None = None
        self.last_reclaim = -math.inf
        self.storage: Any = None
        self.claims = Claims(spec, None, None)  # with the storage and liveness once the study is open
        self.progress: Progress | None = None
        self.sampler_seed = seeds.given_seed(spec.sampler)  # this launch's (see expyrun/tune/seeds.py)
        self.seeded = False  # the launch's sampler gets its seed when it asks for its first new trial

    # -- storage ---------------------------------------------------------------------------------

    def create_study(self) -> Any:
        """The storage and the study, created once under the study's lock (two launches on a fresh
        SQLite file would otherwise both create its tables)."""
        import optuna

        escape_optuna_logs()
        with study_lock(self.spec, self.journal):
            self.storage = make_storage(self.spec, self.journal)
            study = optuna.create_study(
                study_name=self.spec.study_name,
                storage=self.storage,
                directions=list(self.spec.directions),
                sampler=compat.build_named(self.spec.sampler, optuna.samplers),
                pruner=compat.build_named(self.spec.pruner, optuna.pruners),
                load_if_exists=True,
            )
            stored = [d.name.lower() for d in study.directions]
            if stored != list(self.spec.directions):  # a rerun with other objectives: never mix them
                raise ConfigError(
                    f"study {self.spec.study_name!r} is stored with directions {stored}, this config asks for "
                    f"{list(self.spec.directions)}",
                    "give this study its own study_name (or storage)",
                )
            if self.spec.objective_names is not None:  # Optuna's plots and optuna-dashboard show them
                compat.set_metric_names(study, list(self.spec.objective_names))
            return study

    def _lock(self) -> Any:
        engine = getattr(self.storage, "engine", None)
        return study_lock(self.spec, self.journal, engine)

    # -- the run ---------------------------------------------------------------------------------

    def run(self, run_dir: Path, import_root: Path) -> dict[str, Any]:
        if self.spec.isolation == "inline" and self.launch.gpus is not None:
            os.environ["CUDA_VISIBLE_DEVICES"] = self.launch.gpus[0]
        if str(import_root) not in sys.path:  # a `package.module:Class` sampler or pruner is the user's
            sys.path.insert(0, str(import_root))  # (trial workers start with this sys.path)
        study = self.create_study()
        compat.enter_driver_loop(study)
        if self.spec.storage is None and self.journal is not None:  # the study folder shows its journal
            link = run_dir / self.journal.name
            if not link.is_symlink():  # already there when a requeued Slurm job runs the folder again
                link.symlink_to(os.path.relpath(self.journal, run_dir))
        anchor = storage_file(self.spec, self.journal)
        if anchor is not None:
            self.liveness = Liveness(anchor, self.spec.heartbeat_interval, self.spec.grace_period)
        self.claims = Claims(self.spec, self.liveness, self.storage)
        context = TrialContext(self.resolved, self.spec, run_dir, import_root)
        self.deadline = math.inf if self.spec.timeout is None else time.monotonic() + self.spec.timeout
        executor: TrialExecutor | None = None
        heartbeat = Heartbeat(self.spec.heartbeat_interval, self.claims.beat)
        try:
            self.progress = Progress.open(self.spec, study) if self.interactive else None
            executor = TrialExecutor(self._executor(run_dir, import_root))
            heartbeat.start()
            self._reclaim(study, force=True)
            proposer: Proposer[Unit] = StudyProposer(self, study, context, executor)
            result = run_points(proposer, executor, grace_s=STOP_GRACE_S)
            stopped_by = result.stopped_by
        finally:
            heartbeat.stop()
            if executor is not None:
                executor.close()
            if self.progress:
                self.progress.close()
            summary = write_summary(study, run_dir, self.spec, self.sampler_seed)
        from expyrun.track.studies import best_line

        best = best_line(summary)  # SPEC 12.3: one line naming the best trial, on a terminal or not
        if best is not None:
            print(visible(best), flush=True)
        if stopped_by is not None:
            raise StudyStopped() if stopped_by == signal.SIGINT else Terminated()
        if not summary["counts"].get("COMPLETE"):
            raise NoCompletedTrial("the study has no completed trial")
        return summary["best"]

    def settle(self, run_dir: Path, outcome: Outcome) -> None:
        """In the launcher, once the study's process ended: trials it left `queued` or `running`
        (it died: an inline trial's `os._exit` or segfault, a kill) are recorded failed saying why,
        then failed in the storage and retried as the next launch would (expyrun/tune/reclaim.py)."""
        if outcome.status == Status.COMPLETED:
            return
        how = (outcome.exception or {}).get("message") or f"it ended {outcome.status}"
        if not settle_left_trials(run_dir, how, inline=self.spec.isolation == "inline"):
            return
        try:
            study = self.create_study()
            anchor = storage_file(self.spec, self.journal)
            spec = self.spec
            liveness = None if anchor is None else Liveness(anchor, spec.heartbeat_interval, spec.grace_period)
            reclaim_dead_trials(study, spec, liveness, self._lock)
        except Exception as error:  # the storage is out of reach: the next launch reclaims them
            print(visible(f"expyrun: the trials left running are failed by the next launch ({error})"), flush=True)

    def _executor(self, run_dir: Path, import_root: Path) -> TrialPool:
        if self.spec.isolation == "inline":
            from expyrun.execute.inline_pool import InlinePool

            gpu = self.launch.gpus[0] if self.launch.gpus is not None else None
            return InlinePool(self.slots, signal.raise_signal, gpu)  # the loop hears a trial's Ctrl-C
        import base64
        import pickle

        from expyrun.execute.trial_workers import WorkerPool

        hello = {
            "runner": "expyrun.tune.trial_run:WorkerRunner",
            "no_bytecode": import_root == run_dir,  # the snapshot stays as copied
            "init": {
                "spec": base64.b64encode(pickle.dumps(self.spec)).decode("ascii"),
                "journal": None if self.journal is None else str(self.journal),
                "import_root": str(import_root),
            },
        }
        return WorkerPool(self.slots, hello, run_dir, self.launch.gpus)

    @property
    def inline(self) -> bool:
        return self.spec.isolation == "inline"

    def next_unit(self, study: Any, context: TrialContext) -> Unit | None:
        """The next trial unit for the loop (expyrun/tune/proposer.py); None when there is none now
        (`self.ended` says why when asking has ended)."""
        if not self.ended and time.monotonic() >= self.deadline:
            self.ended = "timeout"
        return None if self.ended else self._next(study, context)

    def started(self, unit: Unit, context: TrialContext, pid: int, gpu: str | None) -> None:
        """Its trials' records say `running`, in the process `pid`, with the GPU it was given."""
        for prepared in _members(unit):
            context.start(prepared, pid, gpu)

    def conclude(
        self, study: Any, context: TrialContext, unit: Unit, finished: Finished, stopped_by: str | None
    ) -> None:
        """A unit ended (or was never started): its trials recorded, told and logged (`_conclude`
        finds the unit by its number)."""
        self.inflight[unit.number] = unit
        self._conclude(study, context, dataclasses.replace(finished, key=unit.number), stopped_by)

    def tick(self, study: Any) -> None:
        self._reclaim(study)

    def _next(self, study: Any, context: TrialContext) -> Unit | None:
        """The next trial (or batch of trials), prepared; None when none is to be asked for now."""
        while not self.ended:
            self._reclaim(study)
            asked = self._ask(study)
            if not asked:
                return None
            context.sampler_seed = self.sampler_seed
            suggested = []
            for trial in asked:
                try:
                    suggested.append((trial, {param.key: param.suggest(trial) for param in self.spec.params}))
                except Exception as error:  # a trial value the config cannot take...
                    self._unprepared(study, trial, error)
            if not self.spec.batched:
                for trial, params in suggested:
                    try:
                        return context.prepare(trial, params)
                    except Exception as error:  # a full disk...
                        self._unprepared(study, trial, error)
                continue
            members = self._prepare_batch(study, context, suggested)
            if members:
                self.batches += 1
                return PreparedBatch(self.batches - 1, context.batch_folder(self.batches - 1), members)
        return None

    def _ask(self, study: Any) -> list[Any]:
        """Up to `batch_size` new trials (1 without batches), asked under the study's lock after
        counting, so `n_trials` is exact across processes: the last batch may be smaller. Retries
        waiting to run are asked for first (Optuna hands them out) and are counted already."""
        import optuna

        asked: list[Any] = []
        with self._lock():
            trials = study.get_trials(deepcopy=False)  # once: reading a journal back costs per call
            self._seed_launch(study, len(trials))  # the number the next new trial gets
            waiting = sum(1 for t in trials if t.state == optuna.trial.TrialState.WAITING)  # retries to run
            room = self.spec.batch_size or 1
            if self.spec.n_trials is not None:
                room = min(room, waiting + max(0, self.spec.n_trials - compat.counted_trials(trials)))
            while len(asked) < room:
                if len(asked) >= waiting and compat.has_finite_points(study):  # a new point: any left?
                    current = study.get_trials(deepcopy=False) if asked else trials
                    if not compat.sampler_has_points_left(study, current):
                        break
                trial = study.ask()
                self.claims.claim(study, trial._trial_id)
                asked.append(trial)
        return asked

    def _seed_launch(self, study: Any, first_number: int) -> None:
        """Give this launch's sampler its own seed, derived from the given one and the number of its
        first new trial (expyrun/tune/seeds.py), before it asks for that trial: a resumed study and
        launches sharing it never replay one another's points. Once per launch."""
        if self.seeded or self.sampler_seed is None:
            return
        import optuna

        self.seeded = True
        seed = seeds.launch_seed(self.spec.sampler, first_number)
        if seed != self.sampler_seed:
            study.sampler = compat.build_named(seeds.seeded(self.spec.sampler, seed), optuna.samplers)
            self.sampler_seed = seed

    def _prepare_batch(
        self, study: Any, context: TrialContext, suggested: list[tuple[Any, dict[str, Any]]]
    ) -> list[PreparedTrial]:
        index = self.batches
        batch = {
            "index": index,
            "trials": [trial.number for trial, _ in suggested],
            "dir": str(context.study_dir / "batches" / f"batch.{index}"),
        }
        members = []
        for trial, params in suggested:
            try:
                members.append(context.prepare(trial, params, batch))
            except Exception as error:  # a full disk...
                self._unprepared(study, trial, error)
        return members

    def _unprepared(self, study: Any, trial: Any, error: Exception) -> None:
        """A trial that could not be prepared fails (and counts as a failure)."""
        why = f"{type(error).__name__}: {error}"
        print(visible(f"expyrun: trial {trial.number} could not be prepared: {why}"), flush=True)
        compat.tell(study, trial, None, "FAIL")
        self.claims.release(trial._trial_id)
        self._count_failure(True)

    def evaluate_inline(self, unit: Unit, context: TrialContext) -> dict[str, Any]:
        if isinstance(unit, PreparedBatch):
            configs = [member.config.user_config() for member in unit.members]
            run = unit.members[0].config.run
            outcomes = evaluate_batch([m.trial for m in unit.members], run, context.import_root, configs, self.spec)
            return {"outcomes": [outcome.as_reply() for outcome in outcomes]}
        config = unit.config
        return evaluate(unit.trial, config.run, context.import_root, config.user_config(), self.spec).as_reply()

    def _conclude(self, study: Any, context: TrialContext, finished: Finished, stopped_by: str | None = None) -> None:
        """Record, tell and log the trial(s) of a task that ended. `stopped_by`: the study is stopping
        (SIGINT or SIGTERM); a trial that ended because of it is failed and queued again. A batch
        whose every trial failed counts as one failure towards `max_consecutive_failures`."""
        unit = self.inflight.pop(finished.key)
        members = _members(unit)
        outcomes = _outcomes(finished, len(members))
        sampler_done = False
        for prepared, outcome in zip(members, outcomes, strict=True):
            sampler_done = self._conclude_trial(study, context, prepared, outcome, finished, stopped_by) or sampler_done
        if stopped_by is None:
            self._count_failure(all(outcome.state == "FAIL" for outcome in outcomes))
            if sampler_done and not self.ended:
                self.ended = "the sampler has no point left"
        if self.progress:
            self.progress.update(study)

    def _conclude_trial(
        self,
        study: Any,
        context: TrialContext,
        prepared: PreparedTrial,
        outcome: TrialOutcome,
        finished: Finished,
        stopped_by: str | None,
    ) -> bool:
        """One trial that ended; True when the sampler asked the study to stop."""
        requeue = stopped_by is not None and outcome.state == "FAIL" and bool(outcome.interrupted or finished.killed)
        if requeue:
            assert stopped_by is not None
            detail = (outcome.error or {}).get("message", "")
            outcome.error = {"type": "Interrupted", "message": f"the study was stopped ({stopped_by}): {detail}"}
            outcome.interrupted = outcome.interrupted or stopped_by
        context.finish(prepared, outcome, _suggested_in_trial(study, prepared))
        sampler_done = False
        changed = compat.stored_state(study, prepared.trial._trial_id)
        try:
            if changed not in (None, "RUNNING"):  # finished by someone else while it ran
                raise compat.TrialNotRunning(str(changed))
            for key, value in (outcome.metrics or {}).items():  # extra metrics of named objectives
                if key != "run_dir":
                    prepared.trial.set_user_attr(key, value)
            sampler_done = compat.tell(study, prepared.trial, outcome.values, outcome.state)
            if requeue:
                compat.retry(study, study._storage.get_trial(prepared.trial._trial_id), self.spec.max_retry)
        except compat.TrialNotRunning as error:  # the dashboard marked it, or another host reclaimed it
            context.changed_in_storage(prepared, error.state, outcome)
            self.claims.release(prepared.trial._trial_id)
            note = f"(marked {error.state} in the storage while it ran; ended here as {outcome.state})"
            print(visible(f"trial {prepared.number}: {error.state} {note} {json.dumps(prepared.params, default=str)}",
                          one_line=True), flush=True)  # fmt: skip
            return False
        self.claims.release(prepared.trial._trial_id)
        self._log(prepared.number, outcome, prepared.params)
        return sampler_done

    def _count_failure(self, failed: bool) -> None:
        self.failures = self.failures + 1 if failed else 0
        if self.failures >= self.spec.max_consecutive_failures and not self.ended:
            print(f"expyrun: stopping the study: {self.failures} trials failed in a row", flush=True)
            self.ended = "failures"

    def _reclaim(self, study: Any, force: bool = False) -> None:
        """Fail and retry RUNNING trials whose driver died (expyrun/tune/reclaim.py): at start and
        then at most once per heartbeat interval."""
        if not force and time.monotonic() - self.last_reclaim < self.spec.heartbeat_interval:
            return
        self.last_reclaim = time.monotonic()
        reclaim_dead_trials(study, self.spec, self.liveness, self._lock)

    def _log(self, number: int, outcome: TrialOutcome, params: dict[str, Any]) -> None:
        detail: Any = outcome.values if outcome.state == "COMPLETE" else (outcome.error or {}).get("message", "")
        if outcome.state == "COMPLETE" and outcome.values and self.spec.objective_names is not None:
            detail = " ".join(f"{k}={v:.6g}" for k, v in zip(self.spec.objective_names, outcome.values, strict=True))
        line = f"trial {number}: {outcome.state} {detail} {json.dumps(params, default=str)}"
        print(visible(line, one_line=True), flush=True)  # objective names and error texts: the config's, the run's


def _members(unit: Unit) -> list[PreparedTrial]:
    return unit.members if isinstance(unit, PreparedBatch) else [unit]


def _outcomes(finished: Finished, count: int) -> list[TrialOutcome]:
    """One outcome per trial of the task: a batch's reply holds one each; a worker that died (or
    a single reply, such as a stopped batch's) ends every trial of the task the same way."""
    if finished.reply is not None and "outcomes" in finished.reply:
        log_error = finished.reply.get("log_error")  # a batch's one log
        return [dataclasses.replace(TrialOutcome.from_reply(reply), log_error=log_error)
                for reply in finished.reply["outcomes"]]  # fmt: skip
    outcomes = []
    for _ in range(count):
        if finished.reply is not None:
            outcomes.append(TrialOutcome.from_reply(finished.reply))
        else:
            kind = "Interrupted" if finished.interrupted or finished.killed else "Crash"
            outcomes.append(TrialOutcome.failed(kind, finished.failure or "no answer", finished.interrupted))
    return outcomes


def _suggested_in_trial(study: Any, prepared: PreparedTrial) -> dict[str, Any]:
    """What the trial suggested itself (`expyrun.trial().suggest_*()`), read back from the storage:
    a trial worker wrote it there."""
    try:
        stored = study._storage.get_trial(prepared.trial._trial_id).params
    except Exception:  # the storage is unreachable: the trial is recorded without them
        return {}
    return {key: value for key, value in stored.items() if key not in prepared.params}
