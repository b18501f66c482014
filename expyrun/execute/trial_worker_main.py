"""A trial worker process: a fresh interpreter that runs prepared trial folders one after another.

Started by `expyrun.execute.trial_workers.WorkerPool` (never forked from the driver, whose other
threads may hold locks), it reads JSON lines on a private pipe: first a hello naming the runner
(`module:Class`, built once with the hello's `init`; for a study it opens its own storage), then
one task per trial (or per batch of trials, run in the batch's folder). For each task it points
fds 1 and 2 at pipes of its tee (`execute/trial_log.py`: the plain run's, forked with the first
task), which copies them to the task folder's `outputs.log` and to the worker's own fds 1 and 2
(the study's, which reach expyrun's streams; a sweep's `reuse_workers`: expyrun's), enters that
folder, calls the runner, flushes Python and C stdio, puts everything back, waits until the tee
says the log is complete and answers one JSON line on its other private pipe.
Both pipes are close-on-exec, so nothing the entry point starts inherits them, and a process the
entry point forks never answers in its place.

The entry-point module is imported once per worker (by the first trial), so heavy imports and a
CUDA context are paid once; module-level state lives on from one trial to the next of a worker.

When the driver ends the worker (end of file on its commands) or Ctrl-C stops it, the worker does
plain Python's exit steps once, as a run process does (`run/shutdown.py`): `threading` exit hooks
(pools), user threads waited for at most `EXIT_GRACE_S`, then the `atexit` functions the entry
point registered (a file flushed, an upload finished). Plain Python would run them at this
process's exit; `os._exit` skips them. Bounded: the pool SIGKILLs a worker still there 5 s after
closing it (`WorkerPool.close`). A worker stopped by SIGTERM (a study stopped) skips them, as plain
Python killed by SIGTERM does.
"""

from __future__ import annotations

import contextlib
import faulthandler
import importlib
import json
import os
import signal
import sys
import traceback
from pathlib import Path
from typing import Any, NoReturn

from expyrun.execute.parent_death import stop_with_parent
from expyrun.execute.trial_log import TaskOutput
from expyrun.run.child import Terminated, flush_all, until_stopped
from expyrun.run.resume import set_retry_environment
from expyrun.run.status import SIGNAL_EXIT, signal_exit
from expyrun.track.files import METRICS_ENV, METRICS_FILE

EXIT_GRACE_S = 3.0  # at most, for threads a trial left (`EXPYRUN_EXIT_GRACE` lower: that); the pool waits 5 s


def _on_sigterm(_signum: int, _frame: Any) -> None:
    raise Terminated


def _load(name: str) -> Any:
    module, _, attribute = name.partition(":")
    return getattr(importlib.import_module(module), attribute)


def _line_buffered() -> None:
    """Python's streams line buffered whatever PYTHONUNBUFFERED says: `print` and `os.write` reach
    the log in the order they were made."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(AttributeError, ValueError):
            stream.reconfigure(line_buffering=True)  # type: ignore[union-attr]


def run_task(runner: Any, task: dict[str, Any], me: int, output: TaskOutput) -> tuple[dict[str, Any], str | None]:
    """One trial in its folder, its output through `output`'s tee; returns the reply and the signal
    that interrupted it, if any."""
    run_dir = Path(task["run_dir"])
    handlers = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    tee = output.begin(run_dir)  # its log, and the worker's own fds 1 and 2 (the study's, or expyrun's)
    home = os.getcwd()
    interrupted = None
    try:
        os.chdir(run_dir)
        os.environ["EXPYRUN_RUN_DIR"] = str(run_dir)
        set_retry_environment(run_dir)  # EXPYRUN_RETRY_OF of a retried trial (SPEC 14)
        os.environ[METRICS_ENV] = str(run_dir / METRICS_FILE)  # what programs the task starts may append to
        try:
            reply, interrupted = until_stopped(lambda: runner(task["payload"]))
        except Exception as error:  # the runner itself failed (storage gone...): this trial fails
            traceback.print_exc()
            reply = {"state": "FAIL", "error": {"type": type(error).__name__, "message": str(error)}}
        if interrupted is not None:
            message = f"the trial was stopped by {interrupted}"
            reply = {"state": "FAIL", "interrupted": interrupted, "error": {"type": "Interrupted", "message": message}}
    finally:
        if os.getpid() != me:  # a process the entry point forked came back up here: it never answers
            flush_all()
            os._exit(0)
        os.chdir(home)
        signal.signal(signal.SIGINT, handlers[0])  # the entry point may have changed them
        signal.signal(signal.SIGTERM, handlers[1])
        log_error = output.end(tee)  # the log complete (or given up on after LOG_GRACE_S)
    if log_error is not None:
        reply["log_error"] = log_error
    return reply, interrupted


def serve(commands_fd: int, replies_fd: int) -> int:
    stop_with_parent(os.getppid())  # a study process killed outright: its trial stops as on SIGTERM
    os.set_inheritable(commands_fd, False)
    os.set_inheritable(replies_fd, False)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _on_sigterm)
    faulthandler.enable()  # a segfault's traceback goes to fd 2: the trial's log
    _line_buffered()
    me = os.getpid()
    output = TaskOutput()  # the tee, forked with the first task
    commands = os.fdopen(commands_fd, "r", encoding="utf-8")
    replies = os.fdopen(replies_fd, "w", encoding="utf-8", buffering=1)
    try:
        line = commands.readline()
        if not line:
            return 0
        hello = json.loads(line)
        if hello.get("no_bytecode"):  # the code runs from a run folder's snapshot: leave it as copied
            sys.dont_write_bytecode = True
        runner: Any = None
        failure = None
        try:
            runner = _load(hello["runner"])(hello.get("init", {}))
        except Exception as error:
            from expyrun.run.tracebacks import print_user_traceback

            print_user_traceback()  # the entry module's own import error, as plain Python shows it
            failure = {"type": type(error).__name__, "message": f"the trial worker could not start: {error}"}
        for line in commands:
            task = json.loads(line)
            if runner is None:
                replies.write(json.dumps({"state": "FAIL", "error": failure}) + "\n")
                return 1
            reply, interrupted = run_task(runner, task, me, output)
            replies.write(json.dumps(reply, default=str) + "\n")
            if interrupted is not None:  # the study is stopping: so does its worker
                return signal_exit(interrupted)
        return 0
    except KeyboardInterrupt:
        return SIGNAL_EXIT[signal.SIGINT]
    except Terminated:
        return SIGNAL_EXIT[signal.SIGTERM]
    except BrokenPipeError:  # the driver is gone
        return 1
    finally:
        output.close()  # the tee ends once the last task's log is complete


def start(commands_fd: int, replies_fd: int) -> NoReturn:
    """Serve until the driver closes the commands pipe; `os._exit`, not `sys.exit`: threads a trial
    left behind must not keep the worker alive."""
    code = serve(commands_fd, replies_fd)
    if code in (0, SIGNAL_EXIT[signal.SIGINT]):
        code = _exit_steps(code)
    flush_all()
    os._exit(code)


def _exit_steps(code: int) -> int:
    """Plain Python's exit steps (`atexit` functions included), threads waited for a bounded time;
    `code`, or that of a stop signal received meanwhile."""
    from expyrun.run.shutdown import exit_grace, shut_down

    try:
        shut_down(min(exit_grace(), EXIT_GRACE_S))
    except KeyboardInterrupt:
        return SIGNAL_EXIT[signal.SIGINT]
    except Terminated:
        return SIGNAL_EXIT[signal.SIGTERM]
    except Exception:  # an atexit function's own failure is printed by atexit; anything else here too
        traceback.print_exc()
    return code
