"""The run child: a forked process, leader of its own process group, that calls the entry point.

Its exit code tells the launcher what happened (0 completed, 1 failed, 130/143 interrupted) and
a pipe carries the return value or the exception as one JSON document.
"""

from __future__ import annotations

import contextlib
import faulthandler
import json
import os
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from expyrun.errors import Quiet
from expyrun.run.entry_point import ConfigMismatch
from expyrun.run.shutdown import exit_grace, note_start, shut_down
from expyrun.run.shutdown import flush_all as flush_all  # where trial runners import it from
from expyrun.run.status import SIGNAL_EXIT
from expyrun.track.files import METRICS_ENV, METRICS_FILE

if TYPE_CHECKING:  # run.command (a command run's program, ~0.4 ms to import) only where one is executed
    from expyrun.run.command import ExecSpec

    Body = Callable[[], Any] | ExecSpec  # the entry point (or driver) to call, or a program to exec


class Terminated(BaseException):
    """SIGTERM inside the run: unwinds the entry point like KeyboardInterrupt does for SIGINT."""


def start(body: Body, run_dir: Path, cwd: Path, output: tuple[int, int], environment: dict[str, str],
          from_snapshot: bool, terminal: int | None = None, no_stdin: bool = False,
          close_inherited: bool = False) -> tuple[int, int]:  # fmt: skip
    """Fork the run child to call `body()`; returns its pid (also its process group) and the result pipe.

    `output`: the write ends its fds 1 and 2 become (the tee's pipes). `environment`: variables set
    for the run. `from_snapshot`: the code is imported from the run folder, which must stay as it was
    copied. `terminal`: a terminal whose foreground the run takes, so `input()` and Ctrl-Z work.
    `no_stdin`: stdin is /dev/null (runs executing side by side: a read from a terminal they do not
    own would stop them with SIGTTIN for good; they read end of file instead).
    `close_inherited`: every other inherited descriptor is closed (a child the shared tee forks would
    otherwise hold the other runs' pipes and logs and the tee's socket and report pipe for its life).
    The result pipe is not inherited by programs the run executes, and only the run process itself
    writes to it: a process the entry point forks never reports a result of its own.
    """
    result_read, result_write = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.close(result_read)
            reset_signals()
            os.setpgid(0, 0)
            if terminal is not None:
                take_terminal(terminal, os.getpgrp())
            if no_stdin:
                null = os.open(os.devnull, os.O_RDONLY)
                os.dup2(null, 0)
                os.close(null)
            os.dup2(output[0], 1)
            os.dup2(output[1], 2)
            for fd in set(output):
                os.close(fd)
            if close_inherited:
                from expyrun.run.descriptors import close_all_but

                close_all_but({0, 1, 2, result_write})
            os.environ.update(environment)
            if not callable(body):  # an ExecSpec
                _exec(body, run_dir, cwd, result_write)
            code = _run(body, run_dir, cwd, result_write, from_snapshot)
        finally:
            os._exit(code)
    os.close(result_write)
    with contextlib.suppress(PermissionError, ProcessLookupError):
        os.setpgid(pid, pid)  # also here: no race with a signal sent right after the fork
    return pid, result_read


def _exec(spec: ExecSpec, run_dir: Path, cwd: Path, result_fd: int) -> NoReturn:
    """Become the program of a command run (or a `__python__` bootstrap); when it cannot be started,
    say why on stderr and exit 127."""
    os.chdir(run_dir)
    environment = {**os.environ, "EXPYRUN_CWD": str(cwd), "EXPYRUN_RUN_DIR": str(run_dir), **spec.environment}
    environment[METRICS_ENV] = str(run_dir / METRICS_FILE)  # what any program may append to (SPEC 11.1)
    if spec.reports:
        os.set_inheritable(result_fd, True)
        environment["EXPYRUN_RESULT_FD"] = str(result_fd)
    if spec.payload is not None:
        payload = os.memfd_create("expyrun-entry", 0)
        os.write(payload, spec.payload)
        os.lseek(payload, 0, os.SEEK_SET)
        environment["EXPYRUN_PAYLOAD_FD"] = str(payload)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execvpe(spec.argv[0], list(spec.argv), environment)
    except OSError as error:
        os.write(2, f"expyrun: cannot run {spec.argv[0]}: {error.strerror}\n".encode())
        os._exit(127)


def reset_signals() -> None:
    """In a forked process: the default dispositions, not the launcher's handlers (which would
    swallow Ctrl-Z or SIGHUP) nor its wake-up pipe."""
    signal.set_wakeup_fd(-1)
    for signum in (signal.SIGTSTP, signal.SIGCHLD, signal.SIGHUP, signal.SIGTTIN, signal.SIGTTOU, signal.SIGCONT):
        signal.signal(signum, signal.SIG_DFL)


def take_terminal(terminal: int, pgid: int) -> None:
    """Make `pgid` the terminal's foreground group (SIGTTOU ignored meanwhile, as shells do)."""
    previous = signal.signal(signal.SIGTTOU, signal.SIG_IGN)
    try:
        os.tcsetpgrp(terminal, pgid)
    except OSError:  # not our terminal after all: the run goes on in the background
        pass
    finally:
        signal.signal(signal.SIGTTOU, previous)


def until_stopped(call: Callable[[], Any]) -> tuple[Any, str | None]:
    """`(call(), None)`, or `(None, "SIGINT" | "SIGTERM")` when one of them stopped it, after its
    traceback or a line on stderr: how a trial executed in a reused process says it was stopped."""
    try:
        return call(), None
    except KeyboardInterrupt:
        _print_traceback()
        return None, "SIGINT"
    except Terminated:
        _write_stderr("expyrun: the trial was terminated (SIGTERM)\n")
        return None, "SIGTERM"


def _on_sigterm(_signum: int, _frame: Any) -> None:
    raise Terminated


def _flush_periodically() -> None:
    """Block-buffered output reaches the log within 0.1 s, so a SIGKILL loses next to nothing."""
    event = threading.Event()
    while not event.wait(0.1):
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(ValueError, OSError):
                stream.flush()


def jsonable(value: Any) -> Any:
    """The value as run.json can hold it: itself, or a numpy-like `.tolist()`/`.item()`; else None."""
    candidates = [lambda: value, getattr(value, "tolist", None), getattr(value, "item", None)]
    for candidate in candidates:
        if candidate is None:
            continue
        try:
            converted = candidate()
            json.dumps(converted)
        except Exception:  # not convertible this way: try the next
            continue
        return converted
    return None


def _run(body: Callable[[], Any], run_dir: Path, cwd: Path, result_fd: int, from_snapshot: bool) -> int:
    owner = os.getpid()
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _on_sigterm)
    faulthandler.enable()
    os.chdir(run_dir)
    if from_snapshot:  # no __pycache__ in the run folder, whatever PYTHONDONTWRITEBYTECODE says
        sys.dont_write_bytecode = True
    os.environ["EXPYRUN_CWD"] = str(cwd)
    os.environ["EXPYRUN_RUN_DIR"] = str(run_dir)
    os.environ[METRICS_ENV] = str(run_dir / METRICS_FILE)  # for programs the run starts (SPEC 11.1)
    for stream in (sys.stdout, sys.stderr):  # fds 1 and 2 are pipes now: keep the order lines were written
        with contextlib.suppress(AttributeError, ValueError):
            stream.reconfigure(line_buffering=True)  # type: ignore[union-attr]  # (a replaced stream may lack it)
    threading.Thread(target=_flush_periodically, daemon=True, name="expyrun-flush").start()
    note_start()  # what the run loads from here on may write through C stdio, not what the launcher did
    message: dict[str, Any] = {}
    try:
        message["result"] = jsonable(body())
        code = 0
    except KeyboardInterrupt:
        _print_traceback()
        code = SIGNAL_EXIT[signal.SIGINT]
    except Terminated:
        _write_stderr("expyrun: the run was terminated (SIGTERM)\n")
        code = SIGNAL_EXIT[signal.SIGTERM]
    except ConfigMismatch as error:  # or SignatureMismatch: one line, no traceback
        _write_stderr(f"expyrun: {error}\n")
        message["exception"] = {"type": type(error).__name__, "message": str(error)}
        code = 1
    except SystemExit as error:
        code = 0 if error.code in (None, 0) else 1
        if code:
            if not isinstance(error.code, int):  # as the interpreter does: the message goes to stderr
                _write_stderr(f"{error.code}\n")
            message["exception"] = {"type": "SystemExit", "message": str(error.code)}
    except BaseException as error:
        _print_traceback()
        message["exception"] = {"type": type(error).__name__, "message": str(error)}
        code = 1
    if os.getpid() != owner:  # a process the entry point forked, ending here: it reports nothing
        os._exit(code)
    stopped = _finish()
    if stopped is not None:  # a stop signal came while it waited for the exit steps: an interruption
        return stopped
    with os.fdopen(result_fd, "w") as stream:
        json.dump(message, stream, default=str)
    return code


def _print_traceback() -> None:
    """The traceback on stderr, if there still is one (an entry point may have closed fd 2)."""
    if isinstance(sys.exc_info()[1], Quiet):
        return
    with contextlib.suppress(Exception):
        from expyrun.run.tracebacks import print_user_traceback

        print_user_traceback()


def _write_stderr(text: str) -> None:
    with contextlib.suppress(Exception):
        sys.stderr.write(text)
        sys.stderr.flush()


def _finish() -> int | None:
    """What interpreter exit would do (exit hooks, user threads, atexit, flushes), never waiting
    for a thread without a bound; the exit code when a signal stopped it meanwhile."""
    try:
        shut_down(exit_grace())
    except KeyboardInterrupt:
        return SIGNAL_EXIT[signal.SIGINT]
    except Terminated:
        return SIGNAL_EXIT[signal.SIGTERM]
    return None
