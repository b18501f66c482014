"""expyrun: run Python experiments from YAML configs and keep everything needed to reproduce them."""

import sys
from types import ModuleType
from typing import Any

from expyrun.errors import ConfigError, EntryPointError, ExpyrunError, UsageError

__version__ = "1.0.0.dev0"

__all__ = [
    "ConfigError", "EntryPointError", "ExpyrunError", "UsageError", "__version__", "log", "log_figure", "log_text",
    "runs", "sweep", "trial", "trials",
]  # fmt: skip


def __getattr__(name: str) -> Any:
    """`expyrun.trial` (and `expyrun.trials`, a batch's trials), the logging calls and the reading
    API are imported on first use: commands that never need them do not pay for threading or json."""
    if name in ("trial", "trials"):
        from expyrun import current

        return getattr(current, name)
    if name in _LAZY:
        value = globals()[name] = _lazy(name)  # later calls find it without this function
        return value
    raise AttributeError(f"module 'expyrun' has no attribute {name!r}")


# The modules of the names imported on first use (`sweep` is reached through `_Package` below).
_LAZY = {"log": "track.logging", "log_text": "track.logging", "log_figure": "track.logging",
         "runs": "reading.api", "sweep": "reading.api"}  # fmt: skip


def _lazy(name: str) -> Any:
    import importlib

    return getattr(importlib.import_module("expyrun." + _LAZY[name]), name)


class _Package(ModuleType):
    """This module's type, for one name: `expyrun.sweep` is the reading API's function and also the
    package `expyrun/sweep/` (a sweep's spec and record). Importing a package binds it as an
    attribute of its parent, so once `expyrun.sweep.record` was imported (by `sweep()` itself, or by
    anything else in the process) the name was the package and `expyrun.sweep(...)` raised
    TypeError. Here the name is always the function; imports find the package in `sys.modules`."""

    @property
    def sweep(self) -> Any:
        return _lazy("sweep")

    @sweep.setter
    def sweep(self, value: Any) -> None:
        if value is not sys.modules.get("expyrun.sweep"):  # the import system binding the package: kept out
            raise AttributeError("expyrun.sweep is the reading API's function; it cannot be replaced")


sys.modules[__name__].__class__ = _Package
