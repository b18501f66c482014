"""A run's last verify verdict, for `list` and `show`: `RUN/last_verdict.json`, a copy of the newest
`verify.{k}/verdict.json` written by `verify/run.py` (this module owns the file's name and reading).

Why a copy beside `run.json`: `list` reads 10,000 runs in under a second, one open each; finding the
newest `verify.{k}/` would list every run folder. Costs one failed open per never-verified run.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

LAST_VERDICT_FILE = "last_verdict.json"


def last_verdict(run_dir: str | Path) -> dict[str, Any] | None:
    """The run's last verdict (verdict.json's fields); None when it was never verified."""
    try:
        with open(os.path.join(run_dir, LAST_VERDICT_FILE), encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, ValueError, RecursionError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("verdict"), str) else None


def last_verdict_word(run_dir: str | Path) -> str | None:
    """`identical`, `within tolerance`, `differs` or `environment differs`; None: never verified."""
    data = last_verdict(run_dir)
    return None if data is None else str(data["verdict"])


def verdict_line(data: dict[str, Any]) -> str:
    """`identical (verify.2, 2026-...)`: a verdict as `show` prints it."""
    from expyrun.verify.compare import describe

    where = Path(str(data.get("rerun", ""))).name
    return f"{describe(str(data['verdict']), data.get('difference'))} ({where}, {data.get('checked_at')})"
