"""Configuration engine: YAML with line marks, inheritance, overrides, interpolation, provenance."""

from expyrun.config.overrides import Override, parse_overrides
from expyrun.config.resolve import RESERVED_SECTIONS, ResolvedConfig, RunSection, resolve_config
from expyrun.config.tree import Path, dotted, flatten, unflatten

__all__ = [
    "RESERVED_SECTIONS",
    "Override",
    "Path",
    "ResolvedConfig",
    "RunSection",
    "dotted",
    "flatten",
    "parse_overrides",
    "resolve_config",
    "unflatten",
]
