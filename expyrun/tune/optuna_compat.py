"""The few places where expyrun drives Optuna by hand rather than through `Study.optimize`.

expyrun asks and tells itself (trials execute in worker processes), so what `optimize` does for
its caller is done here, in one place, instead of private calls scattered around the driver:
samplers that stop the study (GridSampler) call `Study.stop`, which raises outside `optimize`;
retries of trials failed by expyrun itself are the trials Optuna's own heartbeat callback makes.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

RETRY_HISTORY = "retry_history"  # the system attribute Optuna's RetryHeartbeatStaleTrialCallback writes
OWN_ATTRIBUTE_PREFIX = "expyrun:"


def enter_driver_loop(study: Any) -> None:
    """Mark this thread as running an optimisation loop, as `optimize` does: `Study.stop` (called by
    GridSampler.after_trial) then sets a flag instead of raising, and asking with a heartbeat storage
    does not warn. Only the thread that asks and tells needs it."""
    study._thread_local.in_optimize_loop = True


class TrialNotRunning(Exception):
    """The trial was finished in the storage by someone else while it ran: marked Fail in
    optuna-dashboard, or failed and retried by another host that judged its study process dead.
    Optuna refuses to be told about it (`Cannot tell a FAIL trial`); the study goes on."""

    def __init__(self, state: str) -> None:
        super().__init__(f"the trial is {state} in the storage")
        self.state = state


def stored_state(study: Any, trial_id: int) -> str | None:
    """The trial's state as the storage has it now (`RUNNING`, `FAIL`...); None when unreadable."""
    try:
        return str(study._storage.get_trial(trial_id).state.name)
    except Exception:  # the storage is unreachable: the caller's own error says more
        return None


def tell(study: Any, trial: Any, values: Sequence[float] | None, state_name: str) -> bool:
    """Tell Optuna how `trial` ended; True when the sampler asked the study to stop (its points are
    done). A value Optuna refuses fails the trial instead of leaving it RUNNING. Raises
    TrialNotRunning when the storage already holds the trial finished by someone else."""
    import optuna

    state = getattr(optuna.trial.TrialState, state_name)
    study._stop_flag = False
    try:
        study.tell(trial, list(values) if state_name == "COMPLETE" and values is not None else None, state=state)
    except (ValueError, optuna.exceptions.UpdateFinishedTrialError):
        changed = stored_state(study, trial._trial_id)
        if changed is not None and changed != "RUNNING":  # finished by someone else while it ran
            raise TrialNotRunning(changed) from None
        if state_name != "COMPLETE":
            raise
        # e.g. a value that is not finite: never leave the trial RUNNING
        study.tell(trial, state=optuna.trial.TrialState.FAIL, skip_if_finished=True)
    stopped = bool(getattr(study, "_stop_flag", False))
    study._stop_flag = False
    return stopped


def set_system_attrs(study: Any, trial_id: int, attrs: dict[str, Any]) -> None:
    for key, value in attrs.items():
        study._storage.set_trial_system_attr(trial_id, key, value)


def retried_numbers(trials: Iterable[Any]) -> set[int]:
    """Numbers of the failed trials that another trial retries (with the same parameters)."""
    numbers: set[int] = set()
    for trial in trials:
        numbers.update(trial.system_attrs.get(RETRY_HISTORY, ()))
    return numbers


def counted_trials(trials: Sequence[Any]) -> int:
    """The trials that count towards `n_trials`: all of them, except failed trials that were retried
    (their retry, waiting, running or done, counts in their place)."""
    import optuna

    retried = retried_numbers(trials)
    return sum(1 for t in trials if t.state != optuna.trial.TrialState.FAIL or t.number not in retried)


def retry(study: Any, trial: Any, max_retry: int) -> bool:
    """Queue a new trial with the parameters of `trial` (which failed through no fault of its own:
    a stopped or dead study process), as Optuna's RetryHeartbeatStaleTrialCallback does; False when
    the trial was retried `max_retry` times already."""
    import optuna

    kept = {k: v for k, v in trial.system_attrs.items() if not k.startswith(OWN_ATTRIBUTE_PREFIX)}
    system_attrs: dict[str, Any] = {"failed_trial": trial.number, RETRY_HISTORY: [], **kept}
    system_attrs[RETRY_HISTORY] = [*system_attrs[RETRY_HISTORY], trial.number]
    if len(system_attrs[RETRY_HISTORY]) > max_retry:
        return False
    user_attrs = {k: v for k, v in trial.user_attrs.items() if k != "run_dir"}
    study.add_trial(
        optuna.create_trial(
            state=optuna.trial.TrialState.WAITING,
            params=trial.params,
            distributions=trial.distributions,
            user_attrs=user_attrs,
            system_attrs=system_attrs,
        )
    )
    return True


def has_finite_points(study: Any) -> bool:
    """Whether the study's sampler can run out of points (GridSampler): only then is it worth
    reading the trials back to ask it."""
    import optuna

    return isinstance(study.sampler, optuna.samplers.GridSampler)


def sampler_has_points_left(study: Any, trials: Sequence[Any]) -> bool:
    """False when the sampler has nothing left to propose: every GridSampler point is done or being
    evaluated (asking again would evaluate a point twice). Other samplers always have points."""
    import optuna

    sampler = study.sampler
    if not isinstance(sampler, optuna.samplers.GridSampler):
        return True
    total = len(getattr(sampler, "_all_grids", ()))
    if not total:
        return not sampler.is_exhausted(study)
    started = set()
    for trial in trials:
        grid_id = trial.system_attrs.get("grid_id")
        same_space = sampler._same_search_space(trial.system_attrs.get("search_space", {}))
        if grid_id is not None and same_space and (trial.state.is_finished() or trial.state.name == "RUNNING"):
            started.add(grid_id)
    return len(started) < total


def build_named(section: dict[str, Any], module: Any) -> Any:
    """A sampler or pruner from `{name: Class, **keyword arguments}`; None for an empty section."""
    if not section:
        return None
    kwargs = {k: v for k, v in section.items() if k != "name"}
    return named_class(section["name"], module)(**kwargs)


def named_class(name: str, module: Any) -> Any:
    """`module`'s class `name`, or the user's `package.module:Class` (imported as the entry point is:
    its folder is on `sys.path` in the study process and in the trial workers it starts)."""
    if ":" not in name:
        return getattr(module, name)
    import importlib

    module_name, _, class_name = name.partition(":")
    return getattr(importlib.import_module(module_name), class_name)


def set_metric_names(study: Any, names: list[str]) -> None:
    """Name the study's objectives (`Study.set_metric_names`, experimental since Optuna 3.2) unless
    they already have these names: plots and optuna-dashboard then label values by name."""
    import warnings

    import optuna

    if study.metric_names == names:
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names(names)
