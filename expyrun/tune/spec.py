"""The `__optuna__` section, validated before anything is created."""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any

from expyrun.config.tree import Path, all_keys, dotted, lookup
from expyrun.errors import ConfigError, did_you_mean

DIRECTIONS = ("minimize", "maximize")
TYPES = ("float", "int", "categorical")
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
    directions: tuple[str, ...]
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


def _named(section: dict, key: str, module: str) -> dict:
    value = section.get(key) or {}
    if isinstance(value, str):
        value = {"name": value}
    if not isinstance(value, dict) or ("name" not in value and value):
        raise _err(key, f"expected {{name: ClassName, ...keyword arguments}}, got {value!r}")
    if value:
        import importlib

        namespace = importlib.import_module(module)
        if not isinstance(value["name"], str) or not hasattr(namespace, value["name"]):
            names = [n for n in dir(namespace) if n[0].isupper() and not n.startswith("Base")]
            close = difflib.get_close_matches(str(value["name"]), names, n=3)
            hint = f"did you mean {', '.join(close)}?" if close else f"one of {', '.join(names)}"
            raise _err(f"{key}.name", f"{module} has no {value['name']!r}", hint)
        _check_keywords(key, getattr(namespace, value["name"]), [k for k in value if k != "name"])
    return dict(value)


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
    if not isinstance(definition, dict) or definition.get("type") not in TYPES:
        raise _err(where, f"expected {{type: {'|'.join(TYPES)}, ...}}, got {definition!r}")
    kind = definition["type"]
    unknown = set(definition) - {"type", "low", "high", "log", "step", "choices"}
    if unknown:
        raise _err(where, f"unknown field {sorted(unknown)[0]!r}")
    if kind == "categorical":
        choices = definition.get("choices")
        if not isinstance(choices, list) or not choices:
            raise _err(where, "a categorical parameter needs a non-empty `choices` list")
        return Param(key, found[0], kind, choices=tuple(choices))
    low: Any = definition.get("low")  # checked to be numbers just below
    high: Any = definition.get("high")
    number = int if kind == "int" else (int, float)
    for name, bound in (("low", low), ("high", high)):
        if isinstance(bound, bool) or not isinstance(bound, number):
            raise _err(f"{where}.{name}", f"expected {'an int' if kind == 'int' else 'a number'}, got {bound!r}")
    if low > high:
        raise _err(where, f"low ({low}) is greater than high ({high})")
    log, step = bool(definition.get("log", False)), definition.get("step")
    if log and low <= 0:
        raise _err(where, "a log scale needs low > 0")
    if log and step is not None:
        raise _err(where, "`step` and `log: true` cannot be combined")
    if step is not None and (isinstance(step, bool) or not isinstance(step, number) or step <= 0):
        raise _err(f"{where}.step", f"expected a positive {'int' if kind == 'int' else 'number'}, got {step!r}")
    return Param(key, found[0], kind, low, high, log, step)


def _directions(section: dict) -> tuple[tuple[str, ...] | None, list[str]]:
    """The objective names (None when unnamed) and directions, from `objectives: {name: direction}`
    or `direction` / `directions`; giving two of them is an error (which one would win?)."""
    given = [key for key in ("objectives", "direction", "directions") if key in section]
    if len(given) > 1:
        raise _err(given[1], f"give one of `objectives`, `direction` or `directions`, not {' and '.join(given)}")
    if "objectives" in section:
        objectives = section["objectives"]
        if not isinstance(objectives, dict) or not objectives:
            raise _err("objectives", f"expected a mapping of names to minimize or maximize, got {objectives!r}")
        for name, direction in objectives.items():
            if not isinstance(name, str) or not name:
                raise _err("objectives", f"an objective name must be a non-empty string, got {name!r}")
            if direction not in DIRECTIONS:
                raise _err(f"objectives.{name}", f"expected minimize or maximize, got {direction!r}")
        return tuple(objectives), list(objectives.values())
    directions = section.get("directions") or [section.get("direction", "minimize")]
    if not isinstance(directions, list) or any(d not in DIRECTIONS for d in directions):
        raise _err("direction", f"expected minimize or maximize, got {directions!r}")
    return None, directions


def parse_spec(section: Any, raw: dict, default_name: str) -> StudySpec:
    """Validate `__optuna__` (the resolved section) against the raw config it tunes."""
    if not isinstance(section, dict):
        raise ConfigError(f"`__optuna__` must be a mapping, got {section!r}")
    unknown = sorted(set(section) - _KNOWN)
    if unknown:
        raise _err(unknown[0], "unknown setting", did_you_mean(unknown[0], _KNOWN))
    names, directions = _directions(section)
    space = section.get("search_space")
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
        sampler=_named(section, "sampler", "optuna.samplers"),
        pruner=_named(section, "pruner", "optuna.pruners"),
        params=tuple(_param(str(key), definition, raw) for key, definition in space.items()),
        heartbeat_interval=_number(section, "heartbeat_interval", 10, int, 1),
        grace_period=_number(section, "grace_period", None, int, 1),
        max_retry=_number(section, "max_retry", 3, int, 0),
        objective_names=names,
        batch_size=_number(section, "batch_size", None, int, 1),
    )
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
    if spec.is_sqlite and storage is not None:
        from expyrun.tune.storage import sqlite_path

        if sqlite_path(storage) is None:
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
