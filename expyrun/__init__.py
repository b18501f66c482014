"""expyrun: run Python experiments from YAML configs and keep everything needed to reproduce them."""

from typing import Any

from expyrun.errors import ConfigError, EntryPointError, ExpyrunError, UsageError

__version__ = "1.0.0.dev0"

__all__ = ["ConfigError", "EntryPointError", "ExpyrunError", "UsageError", "__version__", "trial"]


def __getattr__(name: str) -> Any:
    """`expyrun.trial` is imported on first use: commands that never need it do not pay for threading."""
    if name == "trial":
        from expyrun.tune.current import trial

        return trial
    raise AttributeError(f"module 'expyrun' has no attribute {name!r}")
