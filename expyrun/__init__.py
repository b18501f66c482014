"""expyrun: run Python experiments from YAML configs and keep everything needed to reproduce them."""

from expyrun.errors import ConfigError, EntryPointError, ExpyrunError, UsageError
from expyrun.tune.current import trial

__version__ = "1.0.0.dev0"

__all__ = ["ConfigError", "EntryPointError", "ExpyrunError", "UsageError", "__version__", "trial"]
