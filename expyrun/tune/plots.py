"""The study's HTML plots (`plots/`), drawn by Optuna's visualization with plotly when it is installed.

Apart from study.json so that plotly and Optuna's visualization are imported only where plots are
drawn. A plot that cannot be drawn or written is skipped with a line: plots never fail a study.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from expyrun.console import visible
from expyrun.tune.spec import StudySpec


def write_plots(study: Any, run_dir: Path, spec: StudySpec, counts: dict[str, int]) -> None:
    """HTML plots: the optimisation history and parameter importances of each objective (one file
    per objective, named after it, for several) and the Pareto front for two or three objectives.
    A plot Optuna cannot draw (constant parameters, too many objectives) is skipped with a line."""
    try:
        import plotly  # noqa: F401
    except ImportError:
        return
    from optuna import visualization

    completed = counts.get("COMPLETE", 0)
    if not completed:
        return
    plots = run_dir / "plots"
    try:
        plots.mkdir(exist_ok=True)
    except OSError as error:  # a full disk
        print(visible(f"expyrun: no plots: {error.strerror or error}"), flush=True)
        return
    several = len(spec.directions) > 1
    for index, label in enumerate(spec.labels):
        suffix = f".{_file_part(label)}" if several else ""
        for name, draw in (
            ("optimization_history", visualization.plot_optimization_history),
            ("param_importances", visualization.plot_param_importances),
        ):
            if name == "param_importances" and (completed < 2 or not spec.params):
                continue
            # Importances are computed for reaching low target values: a maximised objective is negated.
            sign = -1.0 if name == "param_importances" and spec.directions[index] == "maximize" else 1.0
            target = (lambda t, i=index, s=sign: s * t.values[i]) if several else None
            try:
                with warnings.catch_warnings():  # "computes the importances ... to achieve low `target`": it does
                    warnings.filterwarnings("ignore", message=".*low `target` values")
                    figure = draw(study, target=target, target_name=label)
                figure.write_html(plots / f"{name}{suffix}.html")
            except (ValueError, RuntimeError, OSError) as error:  # e.g. all parameters constant, a full disk
                what = f"{name.replace('_', ' ')} plot{f' for {label}' if several else ''}"
                print(visible(f"expyrun: no {what}: {error}"), flush=True)
    if several:
        try:
            figure = visualization.plot_pareto_front(study, target_names=list(spec.labels))
            figure.write_html(plots / "pareto_front.html")
        except (ValueError, RuntimeError, OSError) as error:  # Optuna draws two or three objectives
            print(visible(f"expyrun: no Pareto front plot: {error}"), flush=True)


def _file_part(label: str) -> str:
    """An objective name as part of a file name."""
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in label) or "objective"
