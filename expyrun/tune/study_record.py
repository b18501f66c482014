"""study.json, the study's summary: one writer of the file (best trial or Pareto front, counts by
state, the seed of the launch's sampler), written by each launch when it ends.

A study folder is one run, whose run.json is the run record's; study.json is what the study
adds. It is rewritten whole at the end of each launch (its counts are the storage's, shared by every
launch). A disk too full for it is said on the study's log; the study's own record still ends.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from expyrun.console import visible
from expyrun.run.record import write_json_atomic
from expyrun.tune import optuna_compat as compat
from expyrun.tune.plots import write_plots
from expyrun.tune.spec import StudySpec

STUDY_FILE = "study.json"


def write_summary(study: Any, run_dir: Path, spec: StudySpec, sampler_seed: int | None = None) -> dict[str, Any]:
    """study.json (best trial or Pareto front, counts by state, the seed of this launch's sampler)
    and, with plotly, plots/."""
    trials = study.get_trials(deepcopy=False)
    counts: dict[str, int] = {}
    for trial in trials:
        counts[trial.state.name] = counts.get(trial.state.name, 0) + 1
    names = spec.objective_names

    def describe(trial: Any) -> dict[str, Any]:
        described = {"number": trial.number, "values": trial.values, "params": trial.params}
        if names is not None:
            described["objectives"] = dict(zip(names, trial.values, strict=True))
            described["metrics"] = {k: v for k, v in trial.user_attrs.items() if k != "run_dir"}
        described["run_dir"] = trial.user_attrs.get("run_dir")
        return described

    best: Any = None
    if counts.get("COMPLETE"):
        if len(spec.directions) == 1:
            best = {**describe(study.best_trial), "value": study.best_value}
        else:
            best = [describe(t) for t in study.best_trials]
    summary: dict[str, Any] = {"study_name": spec.study_name, "directions": list(spec.directions)}
    if names is not None:
        summary["objectives"] = dict(zip(names, spec.directions, strict=True))
    summary.update(n_trials=len(trials), counted_trials=compat.counted_trials(trials), counts=counts, best=best)
    if spec.batched:
        summary["batch_size"] = spec.batch_size
    if sampler_seed is not None:
        summary["sampler_seed"] = sampler_seed
    if len(spec.directions) > 1:
        summary["pareto_front"] = best
    try:
        write_json_atomic(run_dir / STUDY_FILE, summary)
    except OSError as error:  # a full disk (a trial's log filled it): the study's run still ends
        print(visible(f"expyrun: cannot write {run_dir / STUDY_FILE}: {error.strerror or error}"), flush=True)
    write_plots(study, run_dir, spec, counts)
    return summary
