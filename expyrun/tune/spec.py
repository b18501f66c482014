"""The `__optuna__` section, validated before anything is created."""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from pathlib import Path as FsPath
from typing import Any, Literal

from expyrun.config.overrides import misread_number
from expyrun.config.tree import Path, all_keys, dotted, lookup
from expyrun.errors import ConfigError, did_you_mean

Direction = Literal["minimize", "maximize"]
DIRECTIONS: tuple[Direction, ...] = ("minimize", "maximize")
TYPES = ("float", "int", "categorical")
# Stexus's (and Optuna 2's `suggest_uniform`...) names, read as the float parameters they are
ALIASES = {"uniform": "float", "loguniform": "float", "discrete_uniform": "float"}
_FIELDS = {"type", "low", "high", "log", "step", "choices", "q"}
_DOTTED_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")
_KNOWN = {
    "study_name", "storage", "direction", "directions", "n_trials", "n_jobs", "timeout", "isolation",
    "max_consecutive_failures", "sampler", "pruner", "search_space", "heartbeat_interval", "grace_period",
    "max_retry", "objectives", "batch_size",
}  # fmt: skip


@dataclass(frozen=True)
class Param:
    key: str
    path: Path
    kind: str
    low: Any = None
    high: Any = None
    log: bool = False
    step: Any = None
    choices: tuple = ()

    def suggest(self, trial: Any) -> Any:
        if self.kind == "float":
            return trial.suggest_float(self.key, self.low, self.high, log=self.log, step=self.step)
        if self.kind == "int":
            return trial.suggest_int(self.key, self.low, self.high, log=self.log, step=self.step or 1)
        return trial.suggest_categorical(self.key, list(self.choices))


@dataclass(frozen=True)
class StudySpec:
    study_name: str
    storage: str | None
    directions: tuple[Direction, ...]
    n_trials: int | None
    n_jobs: int
    timeout: float | None
    isolation: str
    max_consecutive_failures: int
    sampler: dict = field(default_factory=dict)
    pruner: dict = field(default_factory=dict)
    params: tuple[Param, ...] = ()
    heartbeat_interval: int = 10
    grace_period: int | None = None
    max_retry: int = 3
    objective_names: tuple[str, ...] | None = None  # `objectives: {name: direction}`, in their order
    batch_size: int | None = None  # given (even 1): one call per batch, `function(name, configs)`

    @property
    def labels(self) -> tuple[str, ...]:
        """A name per objective, for messages, plots and the progress bar: the given names, else
        `value` (one objective) or `value 0`, `value 1`..."""
        if self.objective_names is not None:
            return self.objective_names
        return ("value",) if len(self.directions) == 1 else tuple(f"value {i}" for i in range(len(self.directions)))

    @property
    def batched(self) -> bool:
        return self.batch_size is not None

    @property
    def is_rdb(self) -> bool:
        return self.storage is not None and "://" in self.storage

    @property
    def is_sqlite(self) -> bool:
        return self.storage is not None and self.storage.startswith("sqlite")


def sqlite_path(url: str) -> FsPath | None:
    """The database file of a SQLite URL (relative paths are relative to the current directory);
    None for an in-memory database. Here, beside `is_sqlite`, so that checking a spec and opening its
    storage (`storage.py`) read a URL alike without importing each other."""
    from sqlalchemy.engine import make_url

    database = make_url(url).database
    if not database or database == ":memory:" or database.startswith("file::memory:"):
        return None
    return FsPath(database).expanduser().absolute()


def _err(key: str, message: str, hint: str | None = None) -> ConfigError:
    return ConfigError(f"`__optuna__.{key}`: {message}", hint)


def _number(section: dict, key: str, default: Any, kind: type, minimum: float | None = None) -> Any:
    value = section.get(key, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float) if kind is float else int):
        raise _err(key, f"expected {'a number' if kind is float else 'an integer'}, got {value!r}")
    if minimum is not None and value < minimum:
        raise _err(key, f"must be at least {minimum:g}, got {value!r}")
    return value


def _named(section: dict, key: str, module: str, code: FsPath | None) -> dict:
    """`{name: Class, **keyword arguments}` naming a class of `module` (`TPESampler`) or one of the
    user's (`package.module:Class`, found in `__code__` or installed)."""
    value = section.get(key) or {}
    if isinstance(value, str):
        value = {"name": value}
    if not isinstance(value, dict) or ("name" not in value and value):
        raise _err(key, f"expected {{name: ClassName, ...keyword arguments}}, got {value!r}")
    if value and isinstance(value["name"], str) and ":" in value["name"]:
        _check_user_class(key, value["name"], code, [k for k in value if k != "name"])
    elif value:
        import importlib

        namespace = importlib.import_module(module)
        if not isinstance(value["name"], str) or not hasattr(namespace, value["name"]):
            names = [n for n in dir(namespace) if n[0].isupper() and not n.startswith("Base")]
            close = difflib.get_close_matches(str(value["name"]), names, n=3)
            hint = f"did you mean {', '.join(close)}?" if close else f"one of {', '.join(names)}"
            hint += ", or a class of yours as package.module:Class"
            raise _err(f"{key}.name", f"{module} has no {value['name']!r}", hint)
        _check_keywords(key, getattr(namespace, value["name"]), [k for k in value if k != "name"])
    return dict(value)


def _check_user_class(key: str, name: str, code: FsPath | None, keywords: list[str]) -> None:
    """`package.module:Class` names a class defined in a module of `__code__` (checked without
    importing it: `--dry-run` never runs user code; the study imports it from its snapshot) or of an
    installed package."""
    import importlib.util

    from expyrun.run.entry_point import defined_at_top, module_file  # the entry point's own static check

    module, _, cls = name.partition(":")
    if not _DOTTED_NAME.fullmatch(module) or not cls.isidentifier():
        raise _err(f"{key}.name", f"{name!r} is not package.module:Class")
    path = module_file(code, module) if code is not None else None
    if path is not None:
        source = path.read_bytes()
        if not defined_at_top(source, cls):
            raise _err(f"{key}.name", f"`{cls}` is not defined in {path}")
        accepted = _init_keywords(source, cls)
        unknown = [keyword for keyword in keywords if accepted is not None and keyword not in accepted]
        if accepted is not None and unknown:
            hint = did_you_mean(unknown[0], accepted, f"it takes {', '.join(accepted) or 'no arguments'}")
            raise _err(f"{key}.{unknown[0]}", f"{cls} takes no argument {unknown[0]!r}", hint)
        return
    try:
        found = importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        raise _err(f"{key}.name", f"module `{module}` not found in {code} (`__run__.__code__`) nor installed")


def _init_keywords(source: bytes, cls: str) -> list[str] | None:
    """The keyword arguments the `__init__` written in class `cls` of `source` takes; None when they
    cannot be known without running the module (no `__init__` of its own, `**kwargs`, not a class)."""
    import ast

    for node in ast.parse(source).body:
        if not isinstance(node, ast.ClassDef) or node.name != cls:
            continue
        for item in node.body:
            if isinstance(item, ast.FunctionDef) and item.name == "__init__":
                arguments = item.args
                if arguments.kwarg is not None:
                    return None
                named = arguments.args if arguments.posonlyargs else arguments.args[1:]  # not `self`
                return [a.arg for a in (*named, *arguments.kwonlyargs)]
        return None if node.bases else []
    return None


def _check_keywords(key: str, cls: type, keywords: list[str]) -> None:
    """Keyword arguments the class does not take are found now, not after the study folder exists."""
    import inspect

    try:
        parameters = inspect.signature(cls).parameters
    except (TypeError, ValueError):  # no signature to check against
        return
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return
    accepted = [n for n, p in parameters.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    for keyword in keywords:
        if keyword not in accepted:
            close = difflib.get_close_matches(keyword, accepted, n=3)
            hint = f"did you mean {', '.join(close)}?" if close else f"it takes {', '.join(accepted) or 'no arguments'}"
            raise _err(f"{key}.{keyword}", f"{cls.__name__} takes no argument {keyword!r}", hint)


def _param(key: str, definition: Any, raw: dict) -> Param:
    where = f"search_space.{key}"
    found = lookup(raw, key)
    if found is None:
        keys = [dotted(p) for p in all_keys({k: v for k, v in raw.items() if k != "__optuna__"})]
        close = difflib.get_close_matches(key, keys, n=3)
        raise _err(where, f"`{key}` is not a key of the config", f"did you mean {', '.join(close)}?" if close else None)
    kind = _kind(where, definition)
    unknown = set(definition) - _FIELDS
    if unknown:
        raise _err(where, f"unknown field {sorted(unknown)[0]!r}", did_you_mean(sorted(unknown)[0], _FIELDS))
    if kind == "categorical":
        choices = definition.get("choices")
        if not isinstance(choices, list) or not choices:
            raise _err(where, "a categorical parameter needs a non-empty `choices` list")
        return Param(key, found[0], kind, choices=tuple(choices))
    return Param(key, found[0], kind, *_range(where, definition, kind))


def _range(where: str, definition: dict, kind: str) -> tuple[Any, Any, bool, Any]:
    """`low`, `high`, `log` and `step` of a float or int parameter (`loguniform`: log; `discrete_uniform`:
    step `q`), checked as Optuna would check them, but now, before the study folder exists."""
    if "q" in definition and (definition["type"] != "discrete_uniform" or "step" in definition):
        raise _err(f"{where}.q", "`q` is the step of a discrete_uniform parameter", "write `step` once, not `q`")
    low, high = _bound(where, "low", definition, kind), _bound(where, "high", definition, kind)
    if low > high:
        raise _err(where, f"low ({low}) is greater than high ({high})")
    log = bool(definition.get("log", definition["type"] == "loguniform"))
    step_name = "q" if "q" in definition else "step"
    step = None if definition.get(step_name) is None else _bound(where, step_name, definition, kind)
    if definition["type"] == "discrete_uniform" and step is None:
        raise _err(where, "a discrete_uniform parameter needs its step `q`")
    if log and low <= 0:
        raise _err(where, "a log scale needs low > 0")
    if log and step is not None:
        raise _err(where, "`step` and `log: true` cannot be combined")
    if step is not None and step <= 0:
        raise _err(f"{where}.{step_name}", f"expected a positive {'int' if kind == 'int' else 'number'}, got {step!r}")
    return low, high, log, step


def _kind(where: str, definition: Any) -> str:
    """`float`, `int` or `categorical`, Stexus's `uniform`, `loguniform` and `discrete_uniform`
    being floats (a log scale, a step `q`)."""
    if not isinstance(definition, dict):
        raise _err(where, f"expected {{type: {'|'.join(TYPES)}, ...}}, got {definition!r}")
    kind = definition.get("type")
    if kind in TYPES:
        return str(kind)
    if kind in ALIASES:
        return ALIASES[kind]
    if kind is None:
        raise _err(where, f"no `type`: expected {{type: {'|'.join(TYPES)}, ...}}")
    raise _err(
        f"{where}.type",
        f"unknown type {kind!r}",
        did_you_mean(str(kind), (*TYPES, *ALIASES), f"use {', '.join((*TYPES, *ALIASES))}"),
    )


def _bound(where: str, name: str, definition: dict, kind: str) -> Any:
    """A number of the definition (`low`, `high`, `step`): an int for an int parameter."""
    value = definition.get(name)
    if isinstance(value, bool) or not isinstance(value, int if kind == "int" else (int, float)):
        fix = misread_number(value)
        if fix is not None:
            raise _err(f"{where}.{name}", fix)
        raise _err(f"{where}.{name}", f"expected {'an int' if kind == 'int' else 'a number'}, got {value!r}")
    return value


def _directions(section: dict) -> tuple[tuple[str, ...] | None, list[Direction]]:
    """The objective names (None when unnamed) and directions, from `objectives: {name: direction}`
    or `direction` / `directions`; giving two of them is an error (which one would win?). A null
    is not given: a child config unsets its parent's `direction` with `direction: null`."""
    given = [key for key in ("objectives", "direction", "directions") if section.get(key) is not None]
    if len(given) > 1:
        raise _err(given[1], f"give one of `objectives`, `direction` or `directions`, not {' and '.join(given)}")
    if section.get("objectives") is not None:
        objectives = section["objectives"]
        if not isinstance(objectives, dict) or not objectives:
            raise _err("objectives", f"expected a mapping of names to minimize or maximize, got {objectives!r}")
        for name in objectives:
            if not isinstance(name, str) or not name:
                raise _err("objectives", f"an objective name must be a non-empty string, got {name!r}")
        checked = [_direction(f"objectives.{name}", direction) for name, direction in objectives.items()]
        return tuple(objectives), checked
    if section.get("directions") is not None:
        directions = section["directions"]
        if not isinstance(directions, list) or not directions:
            raise _err("directions", f"expected a list of minimize or maximize, got {directions!r}")
        return None, [_direction(f"directions.{index}", direction) for index, direction in enumerate(directions)]
    direction = section.get("direction")
    return None, [_direction("direction", "minimize" if direction is None else direction)]


def _direction(key: str, value: Any) -> Direction:
    if value not in DIRECTIONS:
        hint = did_you_mean(str(value), DIRECTIONS) if isinstance(value, str) else None
        raise _err(key, f"expected minimize or maximize, got {value!r}", hint)
    return "maximize" if value == "maximize" else "minimize"


def parse_spec(section: Any, raw: dict, default_name: str) -> StudySpec:
    """Validate `__optuna__` (the resolved section) against the raw config it tunes."""
    if not isinstance(section, dict):
        raise ConfigError(f"`__optuna__` must be a mapping, got {section!r}")
    unknown = sorted(set(section) - _KNOWN)
    if unknown:
        raise _err(unknown[0], "unknown setting", did_you_mean(unknown[0], _KNOWN))
    # a null setting is not given (a child config unsets its parent's); only `n_trials: null` says
    # something: no cap on the number of trials
    section = {key: value for key, value in section.items() if value is not None or key == "n_trials"}
    names, directions = _directions(section)
    space = section.get("search_space")
    if isinstance(space, dict):  # a null parameter is not tuned: a child config unsets its parent's
        space = {key: definition for key, definition in space.items() if definition is not None}
    if not isinstance(space, dict) or not space:
        raise _err("search_space", "expected a mapping of dotted keys to parameter definitions")
    storage = section.get("storage")
    if storage is not None and not isinstance(storage, str):
        raise _err("storage", f"expected a .journal path or a database URL, got {storage!r}")
    isolation = section.get("isolation", "process")
    if isolation not in ("process", "inline"):
        raise _err("isolation", f"expected process or inline, got {isolation!r}")
    spec = StudySpec(
        study_name=str(section.get("study_name") or default_name),
        storage=storage,
        directions=tuple(directions),
        n_trials=_number(section, "n_trials", 50, int, 1),
        n_jobs=_number(section, "n_jobs", 1, int, 1),
        timeout=_number(section, "timeout", None, float, 0),
        isolation=isolation,
        max_consecutive_failures=_number(section, "max_consecutive_failures", 5, int, 1),
        sampler=_named(section, "sampler", "optuna.samplers", _code(raw)),
        pruner=_named(section, "pruner", "optuna.pruners", _code(raw)),
        params=tuple(_param(str(key), definition, raw) for key, definition in space.items()),
        heartbeat_interval=_number(section, "heartbeat_interval", 10, int, 1),
        grace_period=_number(section, "grace_period", None, int, 1),
        max_retry=_number(section, "max_retry", 3, int, 0),
        objective_names=names,
        batch_size=_number(section, "batch_size", None, int, 1),
    )
    _check_heartbeat(spec)
    run_section = raw.get("__run__")
    if spec.batched and isinstance(run_section, dict) and run_section.get("__command__") is not None:
        raise _err(
            "batch_size",
            "a command run evaluates one config; a batch needs a Python entry point taking a list of configs",
            "leave batch_size out",
        )
    if spec.is_sqlite and spec.n_jobs > 1:
        raise _err(
            "storage",
            "SQLite cannot be shared by several workers (n_jobs > 1): writes would fail with 'database is locked'",
            "use the default journal storage, a .journal file, or a PostgreSQL URL",
        )
    if spec.is_sqlite and storage is not None and sqlite_path(storage) is None:
        raise _err(
            "storage",
            "an in-memory SQLite database lives in one process: trial processes and other workers cannot see it",
            "name a file (sqlite:///study.db) or leave `storage` out for a journal file",
        )
    if storage is not None and "://" not in storage and not storage.endswith(".journal"):
        raise _err("storage", f"{storage!r} is neither a .journal path nor a database URL")
    if spec.is_rdb and storage is not None:
        _check_database_driver(storage)
    return spec


def _code(raw: dict) -> FsPath | None:
    """The `__code__` folder (absolute once the config is resolved) holding the user's classes."""
    run = raw.get("__run__")
    code = run.get("__code__") if isinstance(run, dict) else None
    return FsPath(code) if isinstance(code, str) else None


MAX_HEARTBEAT_S = 86400  # a dead driver's trials are noticed after a few intervals: more than a day helps nobody


def _check_heartbeat(spec: StudySpec) -> None:
    """A heartbeat interval a thread can wait (and a dead driver is noticed within days), and a grace
    period longer than it: a live trial's heartbeat is only renewed every interval, so a shorter grace
    would fail and retry trials that are running."""
    if spec.heartbeat_interval > MAX_HEARTBEAT_S:
        raise _err("heartbeat_interval", f"must be at most {MAX_HEARTBEAT_S} (a day), got {spec.heartbeat_interval!r}")
    if spec.grace_period is not None and spec.grace_period <= spec.heartbeat_interval:
        raise _err(
            "grace_period",
            f"must be longer than heartbeat_interval ({spec.heartbeat_interval}), got {spec.grace_period!r}: "
            "running trials would be taken for dead between two heartbeats",
            "leave it out (3 intervals with a journal or SQLite file, 2 on a database server) or give more",
        )


def _check_database_driver(url: str) -> None:
    """A missing driver is found now, before the study folder exists (creating an engine imports it)."""
    from sqlalchemy import create_engine
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    try:
        create_engine(url).dispose()
    except (ImportError, NoSuchModuleError) as error:
        raise _err("storage", f"no database driver for {url.split('://')[0]}: {error}",
                   "pip install 'expyrun[optuna]' (PostgreSQL drivers included)") from None  # fmt: skip
    except ArgumentError as error:
        raise _err("storage", f"invalid database URL: {error}") from None
