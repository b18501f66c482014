"""`--explain`: every leaf key, its final value and where it came from."""

from __future__ import annotations

import json
from typing import Any

from expyrun.config.resolve import ResolvedConfig
from expyrun.config.tree import dotted, flatten
from expyrun.console import visible


def _show(value: Any) -> str:
    if isinstance(value, dict):
        return "{}"
    if isinstance(value, list):
        return "[]"
    return json.dumps(value, ensure_ascii=False)


def origins(resolved: ResolvedConfig) -> dict[str, str]:
    """Where each leaf key's value came from, as `--explain` says it (`file.yml:LINE`, `cli`,
    `env $VAR (...)`, `sweep`, `trial`, `default`): kept in `run.json` `provenance` so `diff`
    can tell a value changed on the command line from one edited in a file, long after the run."""
    origin = resolved.provenance.origin
    return {dotted(path): origin(path) for path in flatten(resolved.for_disk())}


def explain(resolved: ResolvedConfig) -> str:
    """One line per leaf: keys, values and file names are the config's, shown with control
    characters escaped (JSON leaves DEL and C1 controls such as the one-byte CSI as they are)."""
    rows = [
        tuple(visible(text, one_line=True) for text in (dotted(path), _show(value), resolved.provenance.origin(path)))
        for path, value in flatten(resolved.for_disk()).items()
    ]
    key_width = max((len(key) for key, _, _ in rows), default=0)
    value_width = min(max((len(value) for _, value, _ in rows), default=0), 40)
    return "".join(f"{key:<{key_width}}  {value:<{value_width}}  {origin}\n" for key, value, origin in rows)
