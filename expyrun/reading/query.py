"""The query language of runs (SPEC 12.1): one parser and one evaluator for `expyrun list`,
`expyrun.runs().where()` and the runs viewer, so a query means the same thing everywhere.

A condition is `KEY OP VALUE`. KEY is a dotted config key or one of the run fields (`name`,
`status`, `result`, `result.NAME`, `tags`, `started`, `duration`, `metric.NAME[.min|.max]`); VALUE
is read as a command-line override of the run's own value (`config/overrides.py` `convert`), so
`lr < 1e-3` compares numbers and `model == cnn` text, exactly as `--lr`/`--model` would read them.

Contract for callers: a row is a run's `run.json` record (a dict) to which the caller may add
`tags` (a list of strings, from `annotations.json`). Rows are only read, never changed. A row that
lacks the key, or whose value cannot be ordered against VALUE, does not match. Cost: the value of
VALUE is converted once per type of run value, so 10,000 runs cost one dict walk each.
"""

from __future__ import annotations

import fnmatch
import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from expyrun.errors import ConfigError, UsageError, did_you_mean
from expyrun.run.status import Status

__all__ = ["ABSENT", "FIELDS", "Condition", "known_keys", "parse", "require_keys", "select", "sort_rows", "value"]

OPERATORS = ("==", "!=", "<=", ">=", "<", ">", "~")
FIELDS = ("name", "status", "result", "tags", "started", "duration")
"""Keys that are not config keys; `metric.NAME` and `result.NAME` come on top."""
STATUSES = tuple(status.value for status in Status if status is not Status.SKIPPED)  # a run's (not a sweep point's)
_CONDITION = re.compile(r"\s*([^\s=!<>~]+)\s*(==|!=|<=|>=|<|>|~)\s*(.*?)\s*", re.DOTALL)
_METRIC_PARTS = {"min", "max"}


class _Absent:
    """The value of a key a run does not have (distinct from a null it holds)."""

    def __repr__(self) -> str:
        return "ABSENT"


ABSENT: Any = _Absent()


def value(row: dict[str, Any], key: str) -> Any:
    """The value `key` names in `row`, or `ABSENT`."""
    if key in FIELDS:
        if key == "started":
            return row.get("started_at") or ABSENT
        if key == "duration":
            duration = row.get("duration_s")
            return duration if isinstance(duration, (int, float)) else ABSENT
        if key == "tags":
            return row.get("tags") or []
        found = row.get(key, ABSENT)
        return ABSENT if found is None and key == "result" else found
    head, _, rest = key.partition(".")
    if head == "metric" and rest:
        return _metric(row, rest)
    if head == "result" and rest:
        node: Any = row.get("result")
        if not isinstance(node, dict):
            trial = row.get("trial")
            node = trial.get("objectives") if isinstance(trial, dict) else None
        return _walk(node, rest) if isinstance(node, dict) else ABSENT
    return _walk(row.get("config"), key)


def _walk(node: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return ABSENT
        node = node[part]
    return node


def _metric(row: dict[str, Any], rest: str) -> Any:
    """`metric.NAME` (last), `metric.NAME.min`, `metric.NAME.max` from `run.json` `metrics`;
    NaN and infinities written as strings are read back as floats."""
    metrics = row.get("metrics")
    if not isinstance(metrics, dict):
        return ABSENT
    name, part = rest, "last"
    if rest not in metrics and rest.rpartition(".")[2] in _METRIC_PARTS:
        name, _, part = rest.rpartition(".")
    summary = metrics.get(name)
    if not isinstance(summary, dict) or summary.get(part) is None:
        return ABSENT
    found = summary[part]
    if isinstance(found, str) and found in ("nan", "inf", "-inf"):
        return float(found)
    return found


@dataclass(frozen=True)
class Condition:
    """One `KEY OP VALUE`, as written (`text`), its parts, and VALUE converted per run value type."""

    text: str
    key: str
    op: str
    raw: str
    _converted: dict[type, Any] = field(default_factory=dict, compare=False, repr=False)

    def matches(self, row: dict[str, Any]) -> bool:
        """Whether `row` satisfies the condition; a run without the key never does."""
        found = value(row, self.key)
        if found is ABSENT:
            return False
        if self.key == "tags":
            return self._tags(found)
        if self.op == "~":
            return fnmatch.fnmatchcase(_text(found), self.raw)
        wanted = self._wanted(found)
        try:
            return bool(_COMPARE[self.op](found, wanted))
        except TypeError:  # a mapping against a number, text against a number: not comparable, no match
            return False

    def _tags(self, tags: Any) -> bool:
        names = [str(tag) for tag in tags] if isinstance(tags, list) else []
        if self.op == "~":
            return any(fnmatch.fnmatchcase(name, self.raw) for name in names)
        if self.op == "==":
            return self.raw in names
        return self.raw not in names  # `!=`: `parse` allows no other

    def _wanted(self, found: Any) -> Any:
        kind = type(found)
        if kind not in self._converted:
            from expyrun.config.overrides import convert

            try:
                self._converted[kind] = convert(found, self.raw, f"--where {self.text}")
            except ConfigError as error:
                raise UsageError(str(error)) from None
        return self._converted[kind]


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return bool(a == b)


_COMPARE: dict[str, Callable[[Any, Any], Any]] = {
    "==": _equal,
    "!=": lambda a, b: not _equal(a, b),
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
}


def _text(found: Any) -> str:
    """A value as a glob sees it: text as it is, others as a user would type them."""
    if isinstance(found, str):
        return found
    if isinstance(found, bool):
        return "true" if found else "false"
    if found is None:
        return "null"
    return str(found)


def parse(text: str) -> Condition:
    """`KEY OP VALUE` -> a `Condition`; anything else is a one-line `UsageError` saying the form."""
    match = _CONDITION.fullmatch(text)
    if match is None or not match.group(3):
        raise UsageError(
            f"--where {text!r}: not KEY OP VALUE",
            f"OP is one of {' '.join(OPERATORS)}; e.g. --where 'optim.lr < 0.1' or --where 'tags ~ best'",
        )
    key, op, raw = match.groups()
    if len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "'\"":
        raw = raw[1:-1]  # `name == 'a b'`: quotes that survived the shell
    if key == "tags" and op not in ("==", "!=", "~"):
        raise UsageError(f"--where {text!r}: tags take ==, != or ~", f"e.g. --where 'tags ~ {raw}'")
    if key == "status" and op != "~" and raw not in STATUSES:
        hint = did_you_mean(raw, STATUSES, f"a status is one of {', '.join(STATUSES)}")
        raise UsageError(f"--where {text!r}: no status `{raw}`", hint)
    return Condition(text=text, key=key, op=op, raw=raw)


def select(rows: Iterable[dict[str, Any]], conditions: Sequence[Condition | str]) -> list[dict[str, Any]]:
    """The rows that satisfy every condition (strings are parsed first)."""
    parsed = [c if isinstance(c, Condition) else parse(c) for c in conditions]
    rows = list(rows)
    require_keys(rows, [c.key for c in parsed], "--where")
    return [row for row in rows if all(c.matches(row) for c in parsed)]


def require_keys(rows: Sequence[dict[str, Any]], keys: Iterable[str], option: str) -> None:
    """Refuse a key that no row has (a typo), naming the closest key the rows do have.

    The fields every run has are always accepted; with no rows there is nothing to check against.
    """
    if not rows:
        return
    for key in keys:
        if key in FIELDS or any(value(row, key) is not ABSENT for row in rows):
            continue
        hint = did_you_mean(key, known_keys(rows), "see the keys with expyrun list --format json")
        raise UsageError(f"{option} {key}: no listed run has this key", hint)


def known_keys(rows: Iterable[dict[str, Any]]) -> list[str]:
    """Every key a query can name in these rows (for did-you-mean): fields, config leaves, metrics."""
    keys: dict[str, None] = dict.fromkeys(FIELDS)
    for row in rows:
        _leaves(row.get("config"), "", keys)
        metrics = row.get("metrics")
        if isinstance(metrics, dict):
            for name in metrics:
                keys.update(dict.fromkeys((f"metric.{name}", f"metric.{name}.min", f"metric.{name}.max")))
        result = row.get("result")
        if isinstance(result, dict):
            _leaves(result, "result.", keys)
    return list(keys)


def _leaves(node: Any, prefix: str, out: dict[str, None]) -> None:
    if not isinstance(node, dict):
        return
    for key, child in node.items():
        if isinstance(child, dict) and child:
            _leaves(child, f"{prefix}{key}.", out)
        else:
            out[f"{prefix}{key}"] = None


def sort_key(found: Any) -> tuple[int, Any]:
    """An order over values of any type: numbers, then text, then the rest as JSON-like text."""
    if isinstance(found, bool):
        return (1, int(found))
    if isinstance(found, (int, float)):
        return (0, -math.inf if math.isnan(found) else found)
    if isinstance(found, str):
        return (2, found)
    return (3, repr(found))


def sort_rows(rows: Sequence[dict[str, Any]], key: str) -> list[dict[str, Any]]:
    """`rows` sorted by `key` (`-key`: descending); rows without the key come last either way."""
    descending = key.startswith("-")
    name = key[1:] if descending else key
    keyed = [(value(row, name), row) for row in rows]
    present = [(found, row) for found, row in keyed if found is not ABSENT]
    present.sort(key=lambda pair: sort_key(pair[0]), reverse=descending)
    return [row for _, row in present] + [row for found, row in keyed if found is ABSENT]
