"""What an entry point returns, read as a trial's objective(s).

Users return what their code computes: a Python float, a NumPy scalar, a 0-d array or a tensor
(anything whose `.item()` is a number), a sequence of them (one per direction), or, with named
objectives (`objectives: {loss: minimize, accuracy: maximize}`), a mapping holding those keys whose
other numeric keys are kept as the trial's metrics. A batch call returns a list of such objectives.
Anything else, and NaN or an infinity, fails the trial with a message saying what was returned:
a wrong return must never stop the study nor be stored as a number it is not.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, MappingView
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from typing import Any

from expyrun.tune.spec import StudySpec

_SHOWN = 200  # characters of a returned value quoted in a message (a large array's repr is long)


class ObjectiveError(Exception):
    """The entry point returned something that is not an objective."""


@dataclass(frozen=True)
class Objective:
    values: list[float]  # one per direction, finite
    metrics: dict[str, float | None] = field(default_factory=dict)  # other numeric keys (None: NaN or inf)


def as_number(value: Any) -> float | None:
    """`value` as a float when it is a real number: Python and NumPy scalars, 0-d arrays and tensors
    (anything whose `.item()` gives one); None otherwise (booleans are not numbers here)."""
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


def shown(value: Any) -> str:
    """`repr(value)` and its type, shortened for a one-line message."""
    text = repr(value)
    if len(text) > _SHOWN:
        text = text[: _SHOWN - 3] + "..."
    return f"{text} ({type(value).__module__}.{type(value).__qualname__})".replace("(builtins.", "(")


def as_sequence(value: Any) -> list[Any] | None:
    """The items of a list, tuple, 1-d array or tensor; None for a mapping, a string or a scalar
    (a 0-d array has no `len`), and for a set: its order is not the order of the directions or
    configs, so no item can be matched to one."""
    if isinstance(value, (str, bytes, Mapping)) or unordered(value):
        return None
    try:
        len(value)
        return list(value)
    except TypeError:
        return None


def unordered(value: Any) -> bool:
    """A set or frozenset (any `Set` but a dict's ordered views): sized and iterable, but in an order
    of its own, not the one its items were computed in."""
    return isinstance(value, AbstractSet) and not isinstance(value, MappingView)


def _unordered_hint(value: Any) -> str:
    return f"; a {type(value).__name__} has no order, so its items cannot be matched" if unordered(value) else ""


def _finite(values: list[float], labels: tuple[str, ...], value: Any) -> list[float]:
    for label, number in zip(labels, values, strict=True):
        if not math.isfinite(number):
            where = "" if len(labels) == 1 else f" (objective `{label}` is {number})"
            raise ObjectiveError(
                f"the entry point returned {shown(value)}{where}; the objective must be finite (not NaN or inf)"
            )
    return values


def read_objective(value: Any, spec: StudySpec) -> Objective:
    """The objective(s) in `value` for `spec`'s directions; ObjectiveError saying what was returned."""
    names = spec.objective_names
    count = len(spec.directions)
    if names is not None:
        return _named(value, names, spec)
    if isinstance(value, Mapping):
        raise ObjectiveError(
            f"the entry point returned a mapping {shown(value)}; name the objectives in `__optuna__` "
            f"(objectives: {{name: minimize, ...}}) to return one, or return "
            f"{'a number' if count == 1 else f'{count} numbers'}"
        )
    items = [value] if count == 1 else as_sequence(value)
    found = [as_number(item) for item in items] if items is not None and len(items) == count else None
    if found is None or any(number is None for number in found):
        expected = "a number" if count == 1 else f"a sequence of {count} numbers (one per direction)"
        raise ObjectiveError(
            f"the entry point returned {shown(value)}{_unordered_hint(value)}; the objective must be {expected}"
        )
    return Objective(_finite([n for n in found if n is not None], spec.labels, value))


def _named(value: Any, names: tuple[str, ...], spec: StudySpec) -> Objective:
    keys = ", ".join(f"`{name}`" for name in names)
    if not isinstance(value, Mapping):
        number = as_number(value) if len(names) == 1 else None
        if number is not None:  # one named objective: a bare number is that objective
            return Objective(_finite([number], names, value))
        raise ObjectiveError(f"the entry point returned {shown(value)}; the objective must be a mapping with {keys}")
    missing = [name for name in names if name not in value]
    if missing:
        raise ObjectiveError(
            f"the entry point returned {shown(value)} without {', '.join(f'`{m}`' for m in missing)}; "
            f"the objective must be a mapping with {keys}"
        )
    values = []
    for name in names:
        number = as_number(value[name])
        if number is None:
            raise ObjectiveError(f"objective `{name}` is {shown(value[name])}; it must be a number")
        values.append(number)
    metrics: dict[str, float | None] = {}
    for key, item in value.items():
        number = as_number(item)
        if key not in names and number is not None:
            metrics[str(key)] = number if math.isfinite(number) else None  # JSON has no NaN
    return Objective(_finite(values, spec.labels, value), metrics)


def read_batch(value: Any, count: int, spec: StudySpec) -> list[Objective | ObjectiveError]:
    """The objective of each of the `count` trials of a batch call, or why it has none. A return
    that is not a list of `count` items fails the whole batch (ObjectiveError raised)."""
    items = as_sequence(value)
    if items is None:
        raise ObjectiveError(
            f"the batch entry point returned {shown(value)}{_unordered_hint(value)} to the configs; it must "
            f"return a list of {count} objectives, one per config, in the order of the configs"
            if unordered(value)
            else f"the batch entry point returned {shown(value)}; it must return a list of {count} objectives, "
            "one per config"
        )
    if len(items) != count:
        raise ObjectiveError(
            f"the batch entry point returned {len(items)} objective{'s' if len(items) != 1 else ''} for a batch "
            f"of {count} trials; it must return one per config"
        )
    results: list[Objective | ObjectiveError] = []
    for item in items:
        try:
            results.append(read_objective(item, spec))
        except ObjectiveError as error:
            results.append(error)
    return results
