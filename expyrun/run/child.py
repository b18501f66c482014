"""The run child: a forked process, leader of its own process group, that calls the entry point.

Its exit code tells the launcher what happened (0 completed, 1 failed, 130/143 interrupted) and
a pipe carries the return value or the exception as one JSON document.
"""

from __future__ import annotations

import atexit
import contextlib
import faulthandler
import json
import os
import signal
import sys
import threading
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from expyrun.run.entry_point import ConfigMismatch


class Terminated(BaseException):
    """SIGTERM inside the run: unwinds the entry point like KeyboardInterrupt does for SIGINT."""


Body = Callable[[], Any]


def start(body: Body, run_dir: Path, cwd: Path, from_snapshot: bool) -> tuple[int, int]:
    """Fork the run child to call `body()`; returns its pid (also its process group) and the result pipe.

    `from_snapshot`: the code is imported from the run folder, which must stay as it was copied.
    """
    result_read, result_write = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        os.close(result_read)
        code = 1
        try:
            os.setpgid(0, 0)
            code = _run(body, run_dir, cwd, result_write, from_snapshot)
        finally:
            os._exit(code)
    os.close(result_write)
    with contextlib.suppress(PermissionError, ProcessLookupError):
        os.setpgid(pid, pid)  # also here: no race with a signal sent right after the fork
    return pid, result_read


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


def _run(body: Body, run_dir: Path, cwd: Path, result_fd: int, from_snapshot: bool) -> int:
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _on_sigterm)
    faulthandler.enable()
    os.chdir(run_dir)
    if from_snapshot:  # no __pycache__ in the run folder, whatever PYTHONDONTWRITEBYTECODE says
        sys.dont_write_bytecode = True
    os.environ["EXPYRUN_CWD"] = str(cwd)
    os.environ["EXPYRUN_RUN_DIR"] = str(run_dir)
    if os.isatty(1):
        os.environ.setdefault("PYTHONUNBUFFERED", "1")
    threading.Thread(target=_flush_periodically, daemon=True, name="expyrun-flush").start()
    message: dict[str, Any] = {}
    try:
        message["result"] = jsonable(body())
        code = 0
    except KeyboardInterrupt:
        traceback.print_exc()
        code = 130
    except Terminated:
        sys.stderr.write("expyrun: the run was terminated (SIGTERM)\n")
        code = 143
    except ConfigMismatch as error:
        sys.stderr.write(f"expyrun: {error}\n")
        message["exception"] = {"type": "ConfigMismatch", "message": str(error)}
        code = 1
    except SystemExit as error:
        code = 0 if error.code in (None, 0) else 1
        if code:
            message["exception"] = {"type": "SystemExit", "message": str(error.code)}
    except BaseException as error:
        traceback.print_exc()
        message["exception"] = {"type": type(error).__name__, "message": str(error)}
        code = 1
    _finish()
    with os.fdopen(result_fd, "w") as stream:
        json.dump(message, stream, default=str)
    return code


def _finish() -> None:
    """What interpreter exit would do: join user threads, run atexit handlers, flush."""
    for thread in threading.enumerate():
        if thread is not threading.current_thread() and not thread.daemon:
            thread.join()
    atexit._run_exitfuncs()
    flush_all()


def flush_all() -> None:
    """Flush Python's streams and C `stdio` buffers: `os._exit` skips both, and a C extension's
    `printf` into a pipe sits in a block buffer until libc's exit would have flushed it."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(ValueError, OSError):
            stream.flush()
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).fflush(None)
