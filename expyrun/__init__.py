"""expyrun: run Python experiments from YAML configs and keep everything needed to reproduce them."""

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
    if name in ("log", "log_text", "log_figure", "runs", "sweep"):
        import importlib

        where = "expyrun.reading.api" if name in ("runs", "sweep") else "expyrun.track.logging"
        module = importlib.import_module(where)
        value = globals()[name] = getattr(module, name)  # later calls find it without this function
        return value
    raise AttributeError(f"module 'expyrun' has no attribute {name!r}")
