"""`expyrun.log`, `expyrun.log_text`, `expyrun.log_figure`: what a run measures along the way (SPEC 11.1).

Which run is logging? The run folder in `EXPYRUN_RUN_DIR` (set by the run child, the `__python__`
bootstrap's environment, a command run's environment, trial workers), or a folder a thread was
bound to (`bind`: inline trials running in threads of one process, where the environment is shared).
A batch call names one of its trials with `index=` (its position in `configs`). Outside a run
(a notebook) nothing is set and every call returns at once, doing nothing.

Cost: a `Writer` per run folder, created on the first call; each call after is a dictionary lookup,
a lock and one `os.write` (`benchmarks/bench_metrics.py` measures it against that floor).
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import threading
from pathlib import Path
from typing import Any

from expyrun.track.metrics import Writer

__all__ = ["bind", "log", "log_figure", "log_text", "report_to_log"]

_writers: dict[str, Writer] = {}
_mutex = threading.Lock()
_bound: contextvars.ContextVar[str | None] = contextvars.ContextVar("expyrun_run_dir", default=None)
_environ = os.environ
# The environment's own mapping of encoded names to encoded values (CPython's `os.environ._data`,
# kept current by `os.environ[...] = ...`): one dictionary lookup per call instead of `environ.get`'s
# encoding, a third of a call's cost. Writers found this way are kept by the encoded folder.
_data: dict[Any, Any] | None = getattr(os.environ, "_data", None)
_RUN_DIR_KEY: Any = os.environ.encodekey("EXPYRUN_RUN_DIR") if hasattr(os.environ, "encodekey") else None
_by_encoded: dict[Any, Writer] = {}


def bind(run_dir: str | Path | None) -> None:
    """The calling thread (and asyncio task) logs into `run_dir` (None: as the environment says)."""
    _bound.set(None if run_dir is None else str(run_dir))


def _writer(index: int | None = None) -> Writer | None:
    run_dir = _bound.get() or _environ.get("EXPYRUN_RUN_DIR")
    if index is not None:
        run_dir = _batch_member(index) or run_dir
    return _writer_of(run_dir) if run_dir else None


def _writer_of(run_dir: str) -> Writer:
    writer = _writers.get(run_dir)
    if writer is None:
        with _mutex:
            writer = _writers.get(run_dir)
            if writer is None:
                writer = _writers[run_dir] = Writer(run_dir, _started(run_dir))
    return writer


def log(step: int | None = None, *, index: int | None = None, **values: Any) -> int | None:
    """Log scalars: one line of `metrics.jsonl`, on disk (in the operating system) when this returns.

    `step`: the step; without it, the previous call's plus one (0 first). Values are numbers (not
    `bool`); anything else is a TypeError naming the key. `index`: in a batch call, the position of
    the config whose trial this is for. Returns the step used (None outside a run).
    """
    writer = None
    if index is None and _data is not None and _bound.get() is None:
        encoded = _data.get(_RUN_DIR_KEY)
        writer = _by_encoded.get(encoded)
        if writer is None and encoded:
            writer = _writer()
            if writer is not None:
                _by_encoded[encoded] = writer
    if writer is None:
        writer = _writer(index)
        if writer is None:
            _check(values)
            return None
    return writer.log(step, values)


def log_text(tag: str, text: str, step: int | None = None, *, index: int | None = None) -> None:
    """One line of `texts.jsonl`: `tag`, `text`, and the step (the last `log` step when not given)."""
    writer = _writer(index)
    if writer is not None:
        writer.log_text(tag, text, step)


def log_figure(tag: str, figure: Any, step: int | None = None, *, index: int | None = None) -> Path | None:
    """`figures/{tag}/{step}.png` (a matplotlib figure) or `.json` (a plotly figure); returns the path."""
    writer = _writer(index)
    return None if writer is None else writer.log_figure(tag, figure, step)


def report_to_log(name: str, value: Any, step: Any, run_dir: str | None = None) -> None:
    """A trial's `trial.report(value, step)`, also written to its `metrics.jsonl` as `name`
    (`run_dir`: the trial's folder when it is not the one this thread logs into: a batch's trial)."""
    writer = _writer() if not run_dir else _writer_of(run_dir)
    if writer is None:
        return
    with contextlib.suppress(TypeError, ValueError, OSError):  # report() checks its own: logging never breaks it
        writer.log(None if step is None else int(step), {name: value})


def _check(values: dict[str, Any]) -> None:
    """Outside a run a call does nothing, but a wrong value is a mistake wherever it is made."""
    from expyrun.track.metrics import _key, number

    for key, value in values.items():
        _key(key)
        number(key, value)


def _batch_member(index: int) -> str | None:
    """The folder of the `index`-th trial of the batch this call evaluates, or None outside a batch."""
    if isinstance(index, bool) or not isinstance(index, int):
        raise TypeError(f"expyrun.log: index must be an integer (a position in configs), not {index!r}")
    from expyrun.current import trials

    members = trials()
    if len(members) <= 1:
        return None
    if not 0 <= index < len(members):
        raise IndexError(f"expyrun.log: index {index} is not a position in this batch of {len(members)} configs")
    trial = members[index]
    key = getattr(trial, "_trial_id", id(trial))
    folder = _trial_dirs.get(key)
    if folder is None:
        folder = _trial_dirs[key] = str(trial.user_attrs.get("run_dir") or "") or None
    return folder


_trial_dirs: dict[int, str | None] = {}


def _started(run_dir: str) -> float:
    """When the run started (`time` counts from it): its record's `started_at`, else now.

    The record is `run.json` (its owner, `run/record.py`, writes `started_at` before the run's code
    starts). It is opened here by name, not through its owner, because `run/` writes through this
    layer: track/ imports nothing above it. Like the owner's reader, it trusts nothing of the file.
    """
    import json
    import time

    try:
        with open(os.path.join(run_dir, "run.json"), "rb") as file:
            record = json.load(file)
    except (OSError, ValueError, RecursionError):  # none yet, or unreadable: time counts from now
        record = None
    started = record.get("started_at") if isinstance(record, dict) else None
    if isinstance(started, str):
        from datetime import datetime

        try:
            return datetime.fromisoformat(started).timestamp()
        except ValueError:
            pass
    return time.time()


def _after_fork() -> None:
    global _mutex
    _mutex = threading.Lock()
    for writer in _writers.values():
        writer.reset_after_fork()


os.register_at_fork(after_in_child=_after_fork)
