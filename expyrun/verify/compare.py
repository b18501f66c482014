"""Comparing a run with its rerun: the result key by key and every metric curve step by step.

Why its own module: the verdict's words (`identical`, `within tolerance`, `differs`) and what counts
as the first difference are decided once, here; `verify/run.py` only gathers the two sides. Metric
curves are read through `track/metrics.py` (their format's one owner). Pure functions: no I/O but
reading the two runs' `metrics.jsonl`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

IDENTICAL = "identical"
WITHIN_TOLERANCE = "within tolerance"
DIFFERS = "differs"
ENVIRONMENT_DIFFERS = "environment differs"
REPRODUCED = (IDENTICAL, WITHIN_TOLERANCE)


@dataclass
class Comparison:
    """How two runs compare: `exact` while nothing differs at all, `difference` (the first one that
    is beyond the tolerances, as verdict.json fields) once one is found."""

    rtol: float
    atol: float
    exact: bool = True
    difference: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def verdict(self) -> str:
        if self.difference is not None:
            return DIFFERS
        return IDENTICAL if self.exact else WITHIN_TOLERANCE

    def differs(self, **where: Any) -> None:
        if self.difference is None:
            self.difference = where


def close(a: Any, b: Any, rtol: float, atol: float) -> bool:
    """Two numbers within the tolerances (`|a - b| <= atol + rtol * |b|`, numpy's rule); NaN equals NaN."""
    a, b = float(a), float(b)
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    if math.isinf(a) or math.isinf(b):
        return a == b
    return abs(a - b) <= atol + rtol * abs(b)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _same(a: Any, b: Any) -> bool:
    if _number(a) and _number(b):
        return a == b or (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b))
    return bool(a == b) and type(a) is type(b)


def compare_values(found: Any, expected: Any, comparison: Comparison, key: str = "result") -> None:
    """Walk `expected` (the run's) and `found` (the rerun's) together; the first key beyond the
    tolerances is the difference (its dotted key, both values)."""
    if comparison.difference is not None:
        return
    if isinstance(expected, dict) and isinstance(found, dict):
        for name in expected:
            if name not in found:
                comparison.differs(key=f"{key}.{name}", run=expected[name], rerun="(missing)")
                return
            compare_values(found[name], expected[name], comparison, f"{key}.{name}")
        for name in found:
            if name not in expected:
                comparison.differs(key=f"{key}.{name}", run="(missing)", rerun=found[name])
        return
    if isinstance(expected, list) and isinstance(found, list):
        if len(expected) != len(found):
            comparison.differs(key=key, run=f"{len(expected)} items", rerun=f"{len(found)} items")
            return
        for index, (a, b) in enumerate(zip(found, expected, strict=True)):
            compare_values(a, b, comparison, f"{key}[{index}]")
        return
    if _same(found, expected):
        return
    comparison.exact = False
    if _number(found) and _number(expected) and close(found, expected, comparison.rtol, comparison.atol):
        return
    comparison.differs(key=key, run=expected, rerun=found)


def compare_metrics(rerun_dir: Path, run_dir: Path, comparison: Comparison) -> None:
    """Every metric the run logged, step by step, against the rerun's; the first metric and step
    beyond the tolerances (or the first metric one of them lacks) is the difference."""
    from expyrun.track.metrics import read_metrics

    expected = read_metrics(run_dir)
    found = read_metrics(rerun_dir)
    for name in sorted(expected):
        if comparison.difference is not None:
            return
        if name not in found:
            comparison.differs(metric=name, step=None, run=f"{len(expected[name])} steps", rerun="(not logged)")
            return
        _compare_curve(name, found[name], expected[name], comparison)
    for name in sorted(found):
        if name not in expected:
            comparison.differs(metric=name, step=None, run="(not logged)", rerun=f"{len(found[name])} steps")
            return


def _compare_curve(name: str, found: list[tuple[int, float]], expected: list[tuple[int, float]],
                   comparison: Comparison) -> None:  # fmt: skip
    for (step, value), (rerun_step, rerun_value) in zip(expected, found, strict=False):
        if step != rerun_step:
            comparison.differs(metric=name, step=min(step, rerun_step), run=f"step {step}", rerun=f"step {rerun_step}")
            return
        if _same(rerun_value, value):
            continue
        comparison.exact = False
        if not close(rerun_value, value, comparison.rtol, comparison.atol):
            comparison.differs(metric=name, step=step, run=value, rerun=rerun_value)
            return
    if len(found) != len(expected):
        shorter = found if len(found) < len(expected) else expected
        step = (expected if shorter is found else found)[len(shorter)][0]
        comparison.differs(metric=name, step=step, run=f"{len(expected)} steps", rerun=f"{len(found)} steps")


def describe(verdict: str, difference: dict[str, Any] | None) -> str:
    """The verdict in one line: `differs: metric loss at step 3 (run 0.5, rerun 0.6)`."""
    if difference is None:
        return verdict
    if "reason" in difference:
        return f"{verdict}: {difference['reason']}"
    if "metric" in difference:
        where = f"metric {difference['metric']}" + (
            f" at step {difference['step']}" if difference.get("step") is not None else ""
        )
    else:
        where = str(difference.get("key"))
    return f"{verdict}: {where} (run {difference.get('run')!r}, rerun {difference.get('rerun')!r})"
