"""Command-line overrides: `--a.b VALUE`, `--a.b=VALUE`, `--+new.key VALUE`.

A value is converted to the type of the value it replaces, so `--epochs 10` stays an int and
`--epochs ten` is refused before anything runs (an int widens to a float, never the reverse). The
value a whole reference copies (`eval_batch: "{batch}"`) gives that type. Sweep values, which YAML
already read, are checked and converted the same way (`conform`).
"""

# No `from __future__ import annotations` here: typing.NamedTuple turns string annotations into
# ForwardRefs, compiling each (~15 us a field, at every launch); these evaluate as written.
import re
import sys
from typing import TYPE_CHECKING, Any, NamedTuple

import yaml

from expyrun.config.interpolation import convert_env_text, only_environment, self_reference
from expyrun.config.tree import Path, all_keys, dotted, lookup, set_at, split_dotted, step
from expyrun.errors import ConfigError, UsageError

if TYPE_CHECKING:
    import datetime

_TRUE = {"true", "yes", "1"}
_FALSE = {"false", "no", "0"}
# Patterns as text, compiled on first use through `re`'s own cache: a launch without overrides or a
# sweep reads no number, and compiling them cost every launch 0.25 ms.
_DECIMAL_INT = r"[-+]?[0-9]+"
_DECIMAL_FLOAT = r"[-+]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?"
_EXPONENT = r"[-+]?([0-9]+\.?[0-9]*|\.[0-9]+)[eE][-+]?[0-9]+"
ENVIRONMENT_TEXT = object()  # see `referenced`
_NULLS = {"null", "Null", "NULL", "~"}
_SPECIAL_FLOATS = {".inf", "+.inf", "-.inf", ".nan"}


class Override(NamedTuple):
    key: str
    text: str
    new: bool = False

    @property
    def flag(self) -> str:
        return f"--{'+' if self.new else ''}{self.key}"


def parse_overrides(tokens: list[str]) -> list[Override]:
    """Pair `--key value` / `--key=value` tokens into overrides."""
    overrides: list[Override] = []
    position = 0
    while position < len(tokens):
        token = tokens[position]
        if not token.startswith("--") or len(token) == 2:
            raise UsageError(f"unexpected argument `{token}`", "overrides are written --dotted.key VALUE")
        name, has_value, text = token[2:].partition("=")
        if not has_value:
            if position + 1 >= len(tokens):
                raise UsageError(f"{token}: missing value", f"write {token} VALUE or {token}=VALUE")
            position += 1
            text = tokens[position]
        new = name.startswith("+")
        key = name[1:] if new else name
        if not key or any(not part for part in split_dotted(key)):
            raise UsageError(f"{token}: `{key}` is not a dotted key")
        overrides.append(Override(key, text, new))
        position += 1
    return overrides


def apply_overrides(data: dict, overrides: list[Override]) -> set[Path]:
    """Apply overrides in place, in order; returns the paths they set."""
    touched: set[Path] = set()
    for override in overrides:
        if override.new:
            touched.add(add_key(data, override.key, read_value(override.text, override.flag), override.flag))
            continue
        path, old = existing_key(data, override.key, override.flag)
        model = referenced(data, old)
        if _is_setting(path) and override.text.strip() in _NULLS:
            set_at(data, path, None)  # `--__optuna__.direction null`: not given, as in a config file
        elif model is ENVIRONMENT_TEXT:
            set_at(data, path, convert_env_text(override.text))
        else:
            set_at(data, path, convert(model, override.text, override.flag))
        touched.add(path)
    return touched


def _is_setting(path: Path) -> bool:
    """A setting of a reserved section (`__optuna__.direction`), whose null means "not given"."""
    return len(path) > 1 and isinstance(path[0], str) and path[0].startswith("__") and path[0].endswith("__")


def referenced(data: dict, old: Any) -> Any:
    """The value whose type a new value for `old` takes: `old`, or, when `old` is one whole self
    reference (`eval_batch: "{batch}"`), the value it copies with its type (followed through chains;
    a reference to no key, or a cycle, is text); `ENVIRONMENT_TEXT` when that value is made only of
    environment references (`workers: ${N_WORKERS:-4}`), whose type is read from the text."""
    seen: set[str] = set()
    while isinstance(old, str) and (match := self_reference().fullmatch(old)) and match.group(1) not in seen:
        seen.add(match.group(1))
        found = lookup(data, match.group(1))
        if found is None:
            break
        old = found[1]
    return ENVIRONMENT_TEXT if isinstance(old, str) and only_environment(old) else old


def existing_key(data: dict, key: str, label: str) -> tuple[Path, Any]:
    """The path and value of `key`, or an error naming it with the closest existing keys."""
    found = lookup(data, key)
    if found is None:
        raise ConfigError(f"{label}: unknown key `{key}`", _suggest(data, key))
    return found


def add_key(data: dict, key: str, value: Any, label: str) -> Path:
    """Set `key` to `value`, creating the mappings on the way (a new key on purpose: `--+a.b`)."""
    node: Any = data
    path: list = []
    parts = split_dotted(key)
    for part in parts[:-1]:
        typed, child = step(node, part)
        if not isinstance(child, (dict, list)):
            if isinstance(node, list) or (part in node and node[part] is not None):
                raise ConfigError(f"{label}: `{dotted((*path, typed))}` is not a mapping")
            child = node[part] = {}
        path.append(typed)
        node = child
    typed, _ = step(node, parts[-1])
    if isinstance(node, list) and not (isinstance(typed, int) and typed < len(node)):
        raise ConfigError(f"{label}: cannot add `{parts[-1]}` to a list")
    node[typed] = value
    return (*path, typed)


def _suggest(data: dict, key: str) -> str | None:
    keys = [dotted(path) for path in all_keys(data)]
    import difflib

    close = difflib.get_close_matches(key, keys, n=3, cutoff=0.6)
    if close:
        return f"did you mean {', '.join(f'`{k}`' for k in close)}?"
    return f"use --+{key} VALUE to add a new key on purpose"


def _read_yaml_value(text: str, flag: str) -> Any:
    try:
        return yaml.safe_load(text) if text.strip() else text
    except yaml.YAMLError:
        raise ConfigError(f"{flag}: `{text}` is not a valid YAML value") from None


def read_value(text: str, flag: str) -> Any:
    """A value with no type to follow: the YAML reading, except numbers read the way people write them.

    YAML 1.1 reads `1e-4` as a string, `010` as octal 8 and `1_000` or `1:20` as ints; expyrun 0.2.1
    and users mean 0.0001, 10 and the texts `1_000` and `1:20`.
    """
    stripped = text.strip()
    if re.fullmatch(_DECIMAL_INT, stripped):
        return int(stripped, 10)
    if re.fullmatch(_DECIMAL_FLOAT, stripped):
        return float(stripped)
    value = _read_yaml_value(text, flag)
    if isinstance(value, (int, float)) and not isinstance(value, bool) and stripped.lower() not in _SPECIAL_FLOATS:
        return text  # hexadecimal, octal, underscores, sexagesimal: not how people write a number
    return value


def convert(old: Any, text: str, flag: str) -> Any:
    """Convert `text` to the type of `old`, the value it replaces."""
    if old is None:
        return read_value(text, flag)
    if isinstance(old, bool):
        lowered = text.strip().lower()
        if lowered in _TRUE or lowered in _FALSE:
            return lowered in _TRUE
        raise ConfigError(f"{flag}: expected bool, got {text!r}", "use true/false, yes/no or 1/0")
    if isinstance(old, (int, float)):
        return _convert_number(old, text, flag)
    if isinstance(old, str):
        return text
    if isinstance(old, list):
        return _convert_list(old, text, flag)
    dates = sys.modules.get("datetime")  # a date in the config means YAML imported it already
    if dates is not None and isinstance(old, dates.date):
        return _convert_date(old, text, flag)
    value = _read_yaml_value(text, flag)
    if not isinstance(value, dict):
        raise ConfigError(f"{flag}: expected a mapping, got {text!r}", "write a YAML flow mapping: {a: 1, b: 2}")
    return value


def conform(old: Any, value: Any, label: str) -> Any:
    """A value YAML already read (a sweep's) set where `old` was, converted and checked as the same
    text given on the command line is: `[2, ten]` for an int key fails as `--depth ten` does.

    A null is taken as it is (as in a child config), a mapping or list must replace its own kind,
    and a number YAML 1.1 read as text (`1.0e10`) is refused with the fix, not guessed at.
    """
    if value is None or (isinstance(old, str) and isinstance(value, str)):
        return value
    fix = misread_number(value)
    if fix is not None and not isinstance(old, str):
        raise ConfigError(f"{label}: {fix}")
    if old is None or old is ENVIRONMENT_TEXT:
        return value
    if isinstance(value, (dict, list)):
        if isinstance(old, type(value)):
            return value
        raise ConfigError(f"{label}: expected {_kind(old)}, got {value!r}")
    dates = sys.modules.get("datetime")
    if dates is not None and isinstance(value, dates.date) and isinstance(old, dates.date):
        return value
    return convert(old, _as_text(value), label)


def misread_number(value: Any) -> str | None:
    """What to say when YAML 1.1 read a number as text: `1e-4` and `1.0e10` are strings to it (it
    needs a dot and a signed exponent: `1.0e-4`, `1.0e+10`); None for any other value."""
    if not isinstance(value, str) or not re.fullmatch(_EXPONENT, value.strip()):
        return None
    mantissa, exponent = re.split("[eE]", value.strip())
    if "." not in mantissa:
        mantissa += ".0"
    if exponent[0] not in "+-":
        exponent = f"+{exponent}"
    if f"{mantissa}e{exponent}" == value.strip().replace("E", "e"):  # quoted on purpose: YAML reads it so
        return None
    return (
        f"`{value}` is read by YAML as text, not a number "
        f"(write {mantissa}e{exponent}: YAML 1.1 needs a dot and a signed exponent)"
    )


def _as_text(value: Any) -> str:
    """A YAML scalar as a user would have typed it on the command line."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value) if isinstance(value, float) else str(value)


def _kind(value: Any) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return type(value).__name__


def _convert_number(old: int | float, text: str, flag: str) -> int | float:
    """An int stays an int when the text is one, and widens to a float (`weight_decay: 0` then
    `--weight_decay 1e-4`), as inheritance and sweeps allow; a float never narrows to an int."""
    try:
        return int(text) if isinstance(old, int) else float(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        kind = "int" if isinstance(old, int) else "float"
        raise ConfigError(f"{flag}: expected {kind}, got {text!r}") from None


def _convert_list(old: list, text: str, flag: str) -> list:
    if text.lstrip().startswith("["):
        value = _read_yaml_value(text, flag)
        if not isinstance(value, list):
            raise ConfigError(f"{flag}: expected a list, got {text!r}")
        return value
    if not text:
        return []
    items = text.split(",")
    if not old:
        return [read_value(item, flag) for item in items]
    models = old if len(old) == len(items) else [old[0]] * len(items)
    return [convert(model, item, flag) for model, item in zip(models, items, strict=False)]


def _convert_date(old: "datetime.date", text: str, flag: str) -> "datetime.date":
    """A YAML date (`2024-05-01`) or timestamp (`2024-05-01 12:30:00`), as the value it replaces."""
    import datetime

    value = _read_yaml_value(text, flag)
    if isinstance(value, datetime.datetime):
        return value
    if isinstance(value, datetime.date):
        return datetime.datetime.combine(value, datetime.time()) if isinstance(old, datetime.datetime) else value
    kind = "timestamp" if isinstance(old, datetime.datetime) else "date"
    raise ConfigError(
        f"{flag}: expected a {kind}, got {text!r}", "write it as YYYY-MM-DD (a timestamp: YYYY-MM-DD HH:MM:SS)"
    )
