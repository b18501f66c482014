"""A run's result as one table cell, for `expyrun list` and `expyrun show SWEEP`.

Results used to be cut at 24 characters of their JSON, so a mapping result (`{"validation_loss":
0.12, "accuracy": 0.98}`) or a study's best trial never showed a single value. Here every value is
shown whole (numbers to 6 significant digits); what gives way when a cell grows long is the keys,
abbreviated word by word (`validation_loss` -> `val_loss`), and past `MAX_CHARS` the pairs that do
not fit, counted (`+3 more`; `show RUN` and `list --json` hold the whole result).
"""

from __future__ import annotations

import json
import re
from typing import Any

LONG_CHARS = 48  # pairs longer than this together have their keys abbreviated
MAX_CHARS = 100  # pairs past this are counted, not shown
TEXT_CHARS = 24  # a string, or a list inside a mapping, is cut here: it is not a measurement
MAX_NUMBERS = 8  # a longer list of numbers (a returned array) is cut like text
_WORDS = re.compile(r"[._\-]")
_ENCODE = json.JSONEncoder(default=str, check_circular=False).encode  # records hold no cycles


def result_text(value: Any) -> str:
    """The cell: `-` for none, a number, `[n, n]` for objectives, `key=value ...` for a mapping."""
    if isinstance(value, dict):
        if "number" in value and "params" in value and ("value" in value or "values" in value):
            return _best_trial(value)
        return pairs_text(_leaves(value, ""))
    if isinstance(value, list) and 0 < len(value) <= MAX_NUMBERS and all(_is_number(v) for v in value):
        return "[" + ", ".join(scalar_text(v) for v in value) + "]"
    return scalar_text(value)


def pairs_text(items: list[tuple[str, Any]]) -> str:
    """`key=value` pairs, every value whole; long pairs get abbreviated keys, too many are counted."""
    values = [scalar_text(value) for _, value in items]
    keys = [key for key, _ in items]
    if len(" ".join(f"{k}={v}" for k, v in zip(keys, values, strict=True))) > LONG_CHARS:
        keys = _abbreviated(keys)
    shown: list[str] = []
    length = 0
    for key, value in zip(keys, values, strict=True):
        pair = f"{key}={value}"
        if shown and length + 1 + len(pair) > MAX_CHARS:
            return " ".join([*shown, f"+{len(items) - len(shown)} more"])
        shown.append(pair)
        length += len(pair) + (1 if length else 0)
    return " ".join(shown)


def scalar_text(value: Any, width: int = TEXT_CHARS) -> str:
    """One value: a float to 6 significant digits, anything but a number cut at `width`."""
    kind = type(value)
    if value is None:
        return "-"
    if kind is float:
        return f"{value:.6g}"
    if kind is bool:
        return "true" if value else "false"
    if kind is int:
        return str(value)
    text = value if kind is str else _ENCODE(value)
    return text if len(text) <= width else text[: width - 1] + "…"


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _best_trial(best: dict[str, Any]) -> str:
    """A study's best trial (`study.json`'s `best`): its objectives by name, else its value(s)."""
    named = best.get("objectives")
    if isinstance(named, dict) and named:
        return pairs_text(list(named.items()))
    shown = best.get("value") if "value" in best else best.get("values")
    return f"{result_text(shown)} (trial {best.get('number')})"


def _leaves(mapping: dict[Any, Any], prefix: str) -> list[tuple[str, Any]]:
    """The mapping's leaves under dotted keys (`metrics.loss`); an empty mapping is one leaf."""
    items: list[tuple[str, Any]] = []
    for key, value in mapping.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            items.extend(_leaves(value, dotted + "."))
        else:
            items.append((dotted, value))
    return items


def _abbreviated(keys: list[str]) -> list[str]:
    """Every word of a key but the last cut to 3 letters (`validation_loss` -> `val_loss`); a key
    whose abbreviation another key shares stays whole, so two values never look like one."""
    short = [_abbreviate(key) for key in keys]
    return [s if short.count(s) == 1 else key for key, s in zip(keys, short, strict=True)]


def _abbreviate(key: str) -> str:
    words = _WORDS.split(key)
    separators = _WORDS.findall(key)
    out = [word[:3] for word in words[:-1]] + [words[-1]]
    return "".join(word + sep for word, sep in zip(out, [*separators, ""], strict=True))
