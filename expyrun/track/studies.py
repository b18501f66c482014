"""A study's answer for people (SPEC 12.3): the one line naming its best trial, printed at the end of
every study on a terminal or not, and its trials as a table for `expyrun show STUDY_RUN`.

Both read what the study recorded (`study.json`'s summary, each trial's `run.json`), never the
Optuna storage: `show` works on a copied folder, without optuna installed.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from expyrun.text.results import pairs_text, result_text, scalar_text


def _params(params: Any) -> str:
    return pairs_text(list(params.items())) if isinstance(params, dict) and params else "-"


def _values(trial: dict[str, Any]) -> str:
    named = trial.get("objectives")
    if isinstance(named, dict) and named:
        return pairs_text(list(named.items()))
    values = trial.get("values")
    if isinstance(values, list) and len(values) == 1:
        return scalar_text(values[0])
    return result_text(values if values is not None else trial.get("value"))


def best_line(summary: dict[str, Any]) -> str | None:
    """`best trial 3: 0.25 (x=0.5 kind=a) in outputs/tune/exp.0/trials/3`, or the Pareto front's
    size and members for several objectives; None when no trial completed."""
    best = summary.get("best")
    if isinstance(best, dict):
        folder = f" in {best['run_dir']}" if best.get("run_dir") else ""
        return f"best trial {best.get('number')}: {_values(best)} ({_params(best.get('params'))}){folder}"
    if isinstance(best, list) and best:
        numbers = ", ".join(str(t.get("number")) for t in best if isinstance(t, dict))
        return f"Pareto front: {len(best)} trial{'s' if len(best) != 1 else ''} ({numbers})"
    return None


_STATE_ORDER = {"COMPLETE": 0, "PRUNED": 1, "RUNNING": 2, "FAIL": 3}


def trial_rows(study_dir: Path, directions: list[str]) -> list[dict[str, Any]]:
    """Every trial's `run.json` `trial` (with its folder), best first: completed trials by their
    first objective in the study's direction, then pruned, running and failed ones by number."""
    trials = []
    folder = study_dir / "trials"
    names = sorted(os.listdir(folder)) if folder.is_dir() else []
    for name in names:
        try:
            record = json.loads((folder / name / "run.json").read_text(encoding="utf-8"))
        except (OSError, ValueError, RecursionError):
            continue
        trial = record.get("trial") if isinstance(record, dict) else None
        if isinstance(trial, dict):
            trials.append({**trial, "run_dir": str(folder / name), "status": record.get("status")})
    sign = -1.0 if directions[:1] == ["maximize"] else 1.0

    def order(trial: dict[str, Any]) -> tuple[int, float, int]:
        values = trial.get("values")
        first = values[0] if isinstance(values, list) and values else None
        number = trial["number"] if isinstance(trial.get("number"), int) else 0
        if trial.get("state") == "COMPLETE" and isinstance(first, (int, float)) and not math.isnan(first):
            return (0, sign * first, number)
        return (1 + _STATE_ORDER.get(str(trial.get("state")), 4), 0.0, number)

    return sorted(trials, key=order)


def trial_table(study_dir: Path) -> str:
    """The trials of a study as `show` prints them: number, state, values, params, run folder."""
    from expyrun.text.table import render

    try:
        summary = json.loads((study_dir / "study.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        summary = {}
    summary = summary if isinstance(summary, dict) else {}
    directions = summary.get("directions")
    rows = trial_rows(study_dir, [str(d) for d in directions] if isinstance(directions, list) else ["minimize"])
    table = [
        [str(t.get("number")), str(t.get("state")), _values(t), _params(t.get("params")), t["run_dir"]] for t in rows
    ]
    styles = [{"FAIL": "red", "PRUNED": "yellow"}.get(str(t.get("state"))) for t in rows]
    line = best_line(summary)
    head = f"# trials ({len(rows)}){': ' + line if line else ''}\n"
    return head + render(("trial", "state", "values", "params", "run"), table, styles)
