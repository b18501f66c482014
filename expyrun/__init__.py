"""expyrun: run Python experiments from YAML configs and keep everything needed to reproduce them."""

from typing import Any

from expyrun.errors import ConfigError, EntryPointError, ExpyrunError, UsageError

__version__ = "1.0.0.dev0"

__all__ = ["ConfigError", "EntryPointError", "ExpyrunError", "UsageError", "__version__", "trial", "trials"]


def __getattr__(name: str) -> Any:
    """`expyrun.trial` (and `expyrun.trials`, a batch's trials) are imported on first use: commands
    that never need them do not pay for threading."""
    if name in ("trial", "trials"):
        from expyrun.tune import current

        return getattr(current, name)
    raise AttributeError(f"module 'expyrun' has no attribute {name!r}")
