"""Launching a resolved config: run folder, files, snapshot, then the entry point in a child.

Processes: the launcher (this process) supervises; a forked tee writes `outputs.log`; a forked
run child, leader of its own process group, imports and calls the entry point. The launcher
forwards SIGINT/SIGTERM to the run's group, records git state and frozen requirements while the
run works, and writes `run.json` at start and end.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from expyrun import console
from expyrun.config import ResolvedConfig
from expyrun.run import child
from expyrun.run.capture import LOG_FILE, start_tee
from expyrun.run.entry_point import call_entry_point
from expyrun.run.prepare import prepare_run
from expyrun.run.record import RUN_FILE, now

SIGNAL_EXIT = {signal.SIGINT: 130, signal.SIGTERM: 143}


class _Interrupted(BaseException):
    def __init__(self, signum: int) -> None:
        self.signum = signum


@dataclass
class Outcome:
    status: str
    exit_code: int
    result: Any = None
    exception: dict[str, str] | None = None


def launch(
    resolved: ResolvedConfig,
    debug: bool,
    argv: list[str],
    config_file: Path | None = None,
    body: Callable[[Path, Path], Any] | None = None,
    record_fields: dict[str, Any] | None = None,
) -> int:
    """Run `resolved` in a new run folder; returns the exit code.

    `body(run_dir, import_root)` is what the run child does: by default, call the entry point.
    """
    cwd = Path.cwd()
    prepared = prepare_run(resolved, debug, argv, cwd, record_fields)
    run_dir, record = prepared.run_dir, prepared.record
    console.info(f"run folder: {run_dir}")

    received: list[int] = []
    state: dict[str, int] = {}

    def on_signal(signum: int, _frame: Any) -> None:
        received.append(signum)
        pid = state.get("child")
        if pid is None:
            raise _Interrupted(signum)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL if len(received) > 2 else signum)

    previous = {sig: signal.signal(sig, on_signal) for sig in SIGNAL_EXIT}
    started = time.monotonic()
    tee = None
    try:
        tee = start_tee(run_dir / LOG_FILE)
        if body is None:
            work = partial(call_entry_point, resolved.run, prepared.import_root, resolved.user_config())
        else:
            work = partial(body, run_dir, prepared.import_root)
        pid, result_fd = child.start(work, run_dir, cwd, from_snapshot=not debug)
        state["child"] = pid
        tee.watch(pid)
        try:
            _record_environment(record, resolved.run.code, run_dir, debug, config_file)
            prepared.write_record()
        except Exception as error:  # the run is already working: a missing record is not a reason to stop it
            console.warning(f"could not record the environment: {type(error).__name__}: {error}")
        outcome = _wait(pid, result_fd, received)
    except _Interrupted as interruption:
        outcome = Outcome("interrupted", SIGNAL_EXIT[signal.Signals(interruption.signum)])
    except Exception as error:
        outcome = Outcome("failed", 1, exception={"type": type(error).__name__, "message": str(error)})
        console.error(resolved.scrub(f"{type(error).__name__}: {error}"))
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if tee is not None:
            tee.stop()

    if tee is not None and tee.log_error is not None:
        record["log_error"] = tee.log_error
        console.warning(f"{run_dir / LOG_FILE} is incomplete: {tee.log_error}")
    outcome.exception, outcome.result = resolved.scrub(outcome.exception), resolved.scrub(outcome.result)
    record.update(
        status=outcome.status,
        ended_at=now(),
        duration_s=round(time.monotonic() - started, 3),
        exit_code=outcome.exit_code,
        exception=outcome.exception,
        result=outcome.result,
    )
    prepared.release_reserve()
    try:
        prepared.write_record()
    except OSError as error:
        console.error(f"cannot write {run_dir / RUN_FILE}: {error.strerror} (was the run folder removed?)")
    _report(outcome, run_dir)
    return outcome.exit_code


def _record_environment(
    record: dict[str, Any], code: Path, run_dir: Path, debug: bool, config_file: Path | None
) -> None:
    """Git state and frozen requirements, gathered while the run already works."""
    from expyrun.run.git_state import git_state, write_diff

    if not debug:
        from expyrun.run.freeze import FROZEN_FILE, requirement_drift, write_frozen_requirements

        write_frozen_requirements(run_dir)
        stored = config_file.parent / FROZEN_FILE if config_file is not None else None
        if stored is not None and stored.is_file() and stored != run_dir / FROZEN_FILE:
            drift = requirement_drift(stored)
            if drift:
                console.warning(
                    f"installed packages differ from {stored} ({len(drift)}): "
                    + "; ".join(drift[:20])
                    + (" ..." if len(drift) > 20 else "")
                )
    state = git_state(code)
    if state is not None:
        record["git"] = state.as_record()
        if state.dirty:
            write_diff(code, run_dir)


def _wait(pid: int, result_fd: int, received: list[int]) -> Outcome:
    payload = b""
    with os.fdopen(result_fd, "rb") as stream:
        payload = stream.read()
    _, status = os.waitpid(pid, 0)
    message: dict[str, Any] = json.loads(payload) if payload.strip() else {}
    if received:
        _stop_group(pid)
        return Outcome("interrupted", SIGNAL_EXIT[signal.Signals(received[0])])
    if os.WIFSIGNALED(status):
        name = signal.Signals(os.WTERMSIG(status)).name
        return Outcome("failed", 1, exception={"type": "Signal", "message": f"the run was killed by {name}"})
    code = os.WEXITSTATUS(status)
    if code == 0:
        return Outcome("completed", 0, result=message.get("result"))
    if code in (130, 143):
        _stop_group(pid)
        return Outcome("interrupted", code)
    return Outcome("failed", 1, exception=message.get("exception"))


def _stop_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def _report(outcome: Outcome, run_dir: Path) -> None:
    if outcome.status == "completed":
        console.info(f"completed: {run_dir}")
    elif outcome.status == "interrupted":
        console.warning(f"interrupted: {run_dir}")
    else:
        exception = outcome.exception or {}
        console.error(f"run failed ({exception.get('type', 'error')}: {exception.get('message', '')}): {run_dir}")
    sys.stderr.flush()
